"""Two ``agent-server serve`` processes on a PostgreSQL database of their own, for the tests
that send the same change through both at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from db_support import PG_ADMIN_URL
from mcp_support import start_serve
from smtp_sink import free_port
from soak import drop_database, fresh_database, server_env


@contextmanager
def two_servers(logs: Path, **env: str) -> Iterator[dict[str, Any]]:
    """The database's ``url``, the servers' ``bases`` and the folder of their ``logs``; the
    worker is off unless ``env`` (extra settings for both) says otherwise. Both servers are
    stopped and the database dropped afterwards."""
    name, url = asyncio.run(fresh_database(PG_ADMIN_URL))
    settings = dict(server_env(url), AGENT_SERVER_START_WORKER="false", **env)
    procs = []
    try:
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            procs.append(
                start_serve(dict(settings, AGENT_SERVER_PORT=str(port)), port, logs / f"{i}.log")
            )
        yield {"url": url, "bases": [f"http://127.0.0.1:{p}" for p in ports], "logs": logs}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        asyncio.run(drop_database(PG_ADMIN_URL, name))
