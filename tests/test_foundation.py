"""The foundation: migrations on both backends, health endpoints, request ids in logs."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from mcp_support import make_agent
from sqlalchemy import select

from agent_server.accounts.models import Agent, AgentKey
from agent_server.accounts.service import delete_agent
from agent_server.app import create_app
from agent_server.booking.availability import ALL_BLOCKS, ScheduleSpec, start_blocks
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.schedules import ScheduleOwner, create_schedule, parse_schedule_input
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.kernel.store.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade_async,
)
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


async def test_the_key_history_migration_records_each_agents_current_key(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    settings = Settings(database_url=database_url)
    plain, _ = await make_agent(db, settings)
    rotated, _ = await make_agent(db, settings)
    closed, _ = await make_agent(db, settings)
    async with db.uow() as uow:
        agents = {a: await uow.session.get(Agent, a) for a in (plain, rotated, closed)}
        created = agents[plain].created_at  # type: ignore[union-attr]
        agents[rotated].api_key_created_at = created + timedelta(hours=1)  # type: ignore[union-attr]
        prefixes = {a: agent.api_key_prefix for a, agent in agents.items()}  # type: ignore[union-attr]
        await uow.commit()
    clock.advance(timedelta(hours=2))
    await delete_agent(db.uow(), closed)
    await db.engine.dispose()

    try:
        await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0012")
    finally:
        await upgrade_async(database_url)

    async with db.uow() as uow:
        rows = (await uow.session.scalars(select(AgentKey).order_by(AgentKey.agent_id))).all()
        await uow.commit()
    assert [
        (k.agent_id, k.prefix, k.issued_at, k.issued_by, k.revoked_at, k.revoked_reason)
        for k in rows
    ] == [
        (plain, prefixes[plain], created, "migration", None, None),
        (rotated, prefixes[rotated], created + timedelta(hours=1), "migration", None, None),
        (closed, "", created, "migration", created + timedelta(hours=2), "closed"),
    ]


async def test_the_start_blocks_migration_gives_existing_schedules_their_blocks(
    db: Database, database_url: str
) -> None:
    """Schedules stored before ``start_blocks`` existed get the blocks their hours (weekly
    and overrides, in their own zone) give: a search by days and hours skips them only where
    they have no slot."""
    weekly = {"mon": [["09:00", "17:00"]]}
    async with db.uow() as uow:
        person = Specialist(
            name="Ada",
            email="ada@example.com",
            timezone="UTC",
            created_at=db.clock.now(),
            updated_at=db.clock.now(),
        )
        uow.session.add(person)
        await uow.session.flush()
        owner = ScheduleOwner.specialist(person.id)
        await uow.commit()
    raws = [
        {"timezone": "Europe/Berlin", "weekly_hours": weekly, "price_amount": 1},
        {
            "timezone": "Asia/Kolkata",
            "weekly_hours": {"sat": [["22:30", "24:00"]]},
            "overrides": {"2026-03-04": [["06:00", "07:00"]]},
            "slot_minutes": 30,
            "price_amount": 1,
        },
        {"timezone": "UTC", "weekly_hours": {}, "price_amount": 1},
    ]
    async with db.uow() as uow:
        made = [await create_schedule(uow, owner, parse_schedule_input(raw)) for raw in raws]
        ids = [s.id for s in made]
        await uow.commit()
    await db.engine.dispose()

    try:
        await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0015")
    finally:
        await upgrade_async(database_url)

    async with db.uow() as uow:
        rows = (await uow.session.scalars(select(Schedule).order_by(Schedule.id))).all()
        await uow.commit()
    assert [r.id for r in rows] == ids
    blocks = [r.start_blocks for r in rows]
    assert blocks == [start_blocks(ScheduleSpec.from_row(r)) for r in rows]
    assert blocks[0] == sum(1 << i for i in (2, 3, 4, 5))  # Monday 07:00-16:00 UTC
    assert blocks[1] not in (0, ALL_BLOCKS) and blocks[2] == 0
