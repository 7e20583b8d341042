"""Render deploy/nginx.conf.template: the reverse proxy's configuration.

``python scripts/proxy_config.py`` prints the configuration compose.yaml mounts (the servers
``server-1:8000`` and ``server-2:8000``, listening on 8080); ``render`` gives the same
configuration for other addresses (the plain-process twin in tests/test_deployment.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf.template"
COMPOSE_SERVERS = ("server-1:8000", "server-2:8000")
COMPOSE_LISTEN = "8080"


def render(
    servers: tuple[str, ...] = COMPOSE_SERVERS,
    listen: str = COMPOSE_LISTEN,
    temp_dir: str = "/tmp",  # noqa: S108 - inside the proxy container
    pid_file: str = "/tmp/nginx.pid",  # noqa: S108
) -> str:
    """The configuration proxying ``listen`` to ``servers`` (``host:port`` each)."""
    lines = "\n".join(f"        server {s} max_fails=1 fail_timeout=10s;" for s in servers)
    return (
        TEMPLATE.read_text()
        .replace("@SERVERS@", lines)
        .replace("@LISTEN@", listen)
        .replace("@TEMP_DIR@", temp_dir)
        .replace("@PID_FILE@", pid_file)
    )


if __name__ == "__main__":
    sys.stdout.write(render())
