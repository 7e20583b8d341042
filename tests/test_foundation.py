"""The foundation: migrations on both backends, health endpoints, request ids in logs."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agent_server.app import create_app
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.kernel.store.migrate import current_revision, head_revision
from agent_server.models import metadata
from agent_server.runtime import Runtime


async def test_migrations_reach_head_and_match_the_models(db: Database) -> None:
    assert await current_revision(db.engine) == head_revision()

    def diff(sync_conn):  # type: ignore[no-untyped-def]
        return compare_metadata(MigrationContext.configure(sync_conn), metadata)

    async with db.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


async def _client(database_url: str) -> tuple[httpx.AsyncClient, Runtime]:
    runtime = Runtime.create(Settings(database_url=database_url))
    app = create_app(runtime)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return client, runtime


async def test_health_and_readiness_on_a_migrated_database(database_url: str) -> None:
    client, runtime = await _client(database_url)
    async with client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["revision"] == head_revision()
    await runtime.close()


async def test_readiness_fails_when_migrations_are_missing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    client, runtime = await _client(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    async with client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"] == "migrations pending"
    await runtime.close()


async def test_request_ids_and_traceparent_reach_every_log_line(
    tmp_path,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    from agent_server.kernel.logs import configure_logging, get_logger

    configure_logging("INFO", "json")
    client, runtime = await _client(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    app = client._transport.app  # type: ignore[attr-defined]

    @app.get("/log-probe")
    async def probe() -> dict[str, str]:
        get_logger("probe").info("probe.hit")
        logging.getLogger("stdlib.probe").warning("stdlib line")
        return {"ok": "yes"}

    # Ahead of the catch-all mount of the MCP app.
    app.router.routes.insert(0, app.router.routes.pop())

    async with client:
        response = await client.get("/log-probe", headers={"traceparent": incoming})
        generated = await client.get("/log-probe", headers={"traceparent": "garbage"})
    await runtime.close()
    assert response.headers["traceparent"] == incoming
    assert generated.headers["traceparent"].startswith("00-")
    assert generated.headers["traceparent"] != incoming
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    hits = [x for x in lines if x.get("event") in ("probe.hit", "stdlib line")]
    assert len(hits) == 4
    first = [x for x in hits if x["traceparent"] == incoming]
    assert len(first) == 2
    assert all(x["request_id"] == response.headers["x-request-id"] for x in first)
