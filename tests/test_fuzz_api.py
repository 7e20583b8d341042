"""schemathesis over the whole REST API, as an active, funded agent with data, next to another
agent: no input makes a server error, and no answer shows the other agent's private data.

``test_api_contract.py`` fuzzes the same document as a newly registered agent, checking the
error bodies and the response schemas; this run reaches what only an agent with money,
bookings, events and deliveries has, and looks for leaks across agents while it does.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from accounts_support import settings_for
from db_support import START
from db_support import truncate_all as _truncate_all
from hypothesis import HealthCheck, settings
from mcp import Client
from mcp_support import make_agent
from schemathesis.schemas import BaseSchema
from sqlalchemy import select, update
from webhook_receiver import Receiver

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.booking.demo import load_demo_data
from agent_server.booking.schedules import get_availability
from agent_server.clock import FakeClock
from agent_server.events.models import OutboxEvent
from agent_server.events.worker import DeliveryWorker, WorkerConfig
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from agent_server.store import Database, make_engine
from wallets.models import DepositAddressRecord

USDC = 1_000_000


def _document_app() -> Any:
    unused = Path(tempfile.mkdtemp()) / "never-opened.db"
    return create_app(Runtime.create(settings_for(f"sqlite+aiosqlite:///{unused}")))


whole = schemathesis.openapi.from_asgi("/api/openapi.json", _document_app())


async def _booked(runtime: Runtime, key: str, slot: str, topic: str) -> None:
    async with Client(build_mcp_server(runtime, api_key_source=lambda: key)) as client:
        result = await client.call_tool(
            "book-slot", {"slot_id": slot, "idempotency_key": f"fuzz-{slot}", "topic": topic}
        )
        assert not result.is_error, result.structured_content
        await client.call_tool("search-specialists", {})


# Sign-up, key rotation and deletion would end the caller's session after one example; the
# newly registered agent of test_api_contract.py fuzzes those.
EXCLUDED = (
    ("POST", "/agent/register"),
    ("POST", "/agent/verify-email"),
    ("POST", "/agent/resend-verification"),
    ("POST", "/agent/regenerate-key"),
    ("PATCH", "/agent/me"),
    ("DELETE", "/agent/me"),
)
schema: BaseSchema = whole
for method, path in EXCLUDED:
    schema = schema.exclude(method=method, path=path)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> dict[str, Any]:
    """Agents A (the caller) and B, both active and funded, each with a booking, their
    events delivered to a receiver; built once per backend."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("fuzz-api") / "test.db"
        shutil.copyfile(sqlite_template, path)
        url = f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
        await _truncate_all(url)
    clock = FakeClock(START)
    config = settings_for(url, webhook_allow_private=True)
    setup = Runtime(settings=config, db=Database(make_engine(url), clock))
    try:
        await load_demo_data(setup.db, 4, seed=6)
        async with setup.db.uow() as uow:
            now = uow.clock.now()
            free = await get_availability(uow, 1, now, now + timedelta(days=7))
        _, a_key = await make_agent(setup.db, config, funds=500 * USDC)
        b_id, b_key = await make_agent(setup.db, config, funds=500 * USDC)
        await _booked(setup, a_key, free[0].slot_id, "topic-of-a")
        await _booked(setup, b_key, free[1].slot_id, "topic-of-agent-b-2b7e")
        with Receiver() as receiver:
            async with setup.db.uow() as uow:
                await uow.session.execute(update(Agent).values(callback_url=receiver.url))
                await uow.commit()
            worker = DeliveryWorker(setup.db, WorkerConfig.from_settings(config))
            while await worker.run_once():
                pass
        async with setup.db.uow() as uow:
            markers: list[str] = ["topic-of-agent-b-2b7e"]
            for query in (
                select(DepositAddressRecord.address).where(DepositAddressRecord.agent_id == b_id),
                select(OutboxEvent.event_id).where(OutboxEvent.agent_id == b_id),
                select(Agent.email).where(Agent.id == b_id),
            ):
                markers += (await uow.session.scalars(query)).all()
    finally:
        await setup.close()
    return {"url": url, "settings": config, "clock": clock, "key": a_key, "markers": markers}


@pytest.fixture
def target(world: dict[str, Any]) -> dict[str, Any]:
    """The app on a database handle of its own (schemathesis runs it on its own loop)."""
    db = Database(make_engine(world["url"]), world["clock"])
    return {**world, "app": create_app(Runtime(settings=world["settings"], db=db))}


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_an_active_agent_cannot_make_the_api_fail_or_leak(
    case: Any, target: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {target['key']}"}
    response = case.call(headers=headers, app=target["app"])
    assert response.status_code < 500, (response.status_code, response.text[:2000])
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "status", "message", "details"}
    leaked = [m for m in target["markers"] if m in response.text]
    assert leaked == [], (case.method, case.path, leaked)
