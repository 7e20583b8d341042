"""schemathesis over the whole REST API, as an active, funded agent with data, next to another
agent: no input makes a server error, and no answer shows the other agent's private data.

``test_api_contract.py`` fuzzes the same document as a newly registered agent, checking the
error bodies and the response schemas; this run reaches what only an agent with money,
bookings, events and deliveries has, and looks for leaks across agents while it does.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from accounts_support import settings_for
from db_support import START
from db_support import truncate_all as _truncate_all
from fuzz_support import hostile_for, one_field
from hypothesis import HealthCheck, given, note, settings
from mcp import Client
from mcp_support import make_agent
from proof_support import LoopThread
from schemathesis.schemas import BaseSchema
from sqlalchemy import select, text, update
from webhook_receiver import Receiver

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.booking.demo import load_demo_data
from agent_server.booking.schedules import get_availability
from agent_server.events.models import OutboxEvent
from agent_server.events.worker import DeliveryWorker, WorkerConfig
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database, make_engine
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from billing import balances
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
    return {**world, "db": db, "app": create_app(Runtime(settings=world["settings"], db=db))}


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


# --- one hostile value at a time ----------------------------------------------------------------

# Rows a refused request must leave as they were (with the caller's profile and balances).
WATCHED_TABLES = (
    "agents",
    "schedules",
    "bookings",
    "outbox_events",
    "deposit_addresses",
    "webhook_secrets",
    "calendar_tokens",
    "billing_spending_caps",
)


def _document() -> dict[str, Any]:
    """The OpenAPI document with its component references in the form fuzz_support reads."""
    raw = json.dumps(whole.raw_schema).replace("#/components/schemas/", "#/$defs/")
    document: dict[str, Any] = json.loads(raw)
    document["$defs"] = document.get("components", {}).get("schemas", {})
    return document


def _targets(document: dict[str, Any], method: str, path: str) -> dict[str, list[Any]]:
    """``{"location name": hostile values}`` for each parameter and body property."""
    operation = document["paths"][path][method]
    out: dict[str, list[Any]] = {}
    for parameter in operation.get("parameters", []):
        values = hostile_for(parameter["name"], parameter.get("schema", {}), document)
        plain = [v for v in values if not isinstance(v, dict | list)]
        if plain:
            out[f"{parameter['in']} {parameter['name']}"] = plain
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    body = content.get("schema", {})
    while "$ref" in body:
        body = document["$defs"][body["$ref"].removeprefix("#/$defs/")]
    for name, schema in body.get("properties", {}).items():
        out[f"body {name}"] = hostile_for(name, schema, document)
    return out


async def _rest_state(db: Database, key_agent: int) -> tuple[Any, ...]:
    async with db.uow() as uow:
        counts = [
            (await uow.session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in WATCHED_TABLES
        ]
        agent = await uow.session.get(Agent, key_agent)
        assert agent is not None
        profile = (agent.name, agent.description, agent.callback_url, agent.updated_at)
        money = sorted((await balances(uow, key_agent)).items())
        await uow.commit()
    return (*counts, profile, money)


def test_a_hostile_value_in_any_parameter_or_body_field_is_refused_and_changes_nothing(
    target: dict[str, Any],
) -> None:
    """Every operation of the REST API, one parameter or body field at a time, with NUL and
    other control characters, integers past 64 bits, dates at the ends of the calendar and
    deep objects, on otherwise valid requests drawn by schemathesis: no server error, and a
    refusal changes no rows, no profile and no balance."""
    document = _document()
    loop = LoopThread()
    headers = {"Authorization": f"Bearer {target['key']}"}
    me = loop.run(_whoami(target["app"], headers))
    # That call ran the app outside its lifespan, on this loop: close the connection it pooled
    # here, so no later loop (schemathesis runs each call on a loop of its own) is handed one
    # whose socket this loop's thread still reads.
    loop.run(target["db"].dispose())
    db = Database(make_engine(target["url"]), target["clock"])
    attacked: dict[str, int] = {}
    try:
        for result in whole.get_all_operations():
            operation = result.ok()
            targets = _targets(document, operation.method.lower(), operation.path)
            if targets:
                label = f"{operation.method.upper()} {operation.path}"
                attacked[label] = _attack(loop, db, target, headers, me, operation, targets)
        assert attacked and all(attacked.values()), attacked
    finally:
        loop.run(db.dispose())
        loop.close()


def _attack(
    loop: LoopThread,
    db: Database,
    target: dict[str, Any],
    headers: dict[str, str],
    me: int,
    operation: Any,
    targets: dict[str, list[Any]],
) -> int:
    """Send ``operation`` with drawn attacks (about eight per field, at most 120); how many
    requests were sent."""
    sent = 0

    @settings(
        max_examples=min(8 * len(targets), 120),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), attack=one_field(targets))
    def call(case: Any, attack: tuple[str, Any]) -> None:
        nonlocal sent
        (location, name), value = attack[0].split(" ", 1), attack[1]
        if location == "body":
            if not isinstance(case.body, dict):
                return
            case.body = {**case.body, name: value}
        elif location == "query":
            case.query = {**(case.query or {}), name: str(value)}
        elif location == "path":
            case.path_parameters = {**(case.path_parameters or {}), name: str(value)}
        else:
            return
        note(f"{operation.method} {operation.path} {location}.{name}={value!r:.200}")
        before = loop.run(_rest_state(db, me))
        response = case.call(headers=headers, app=target["app"])
        assert response.status_code < 500, (response.status_code, response.text[:2000])
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"code", "status", "message", "details"}
            after = loop.run(_rest_state(db, me))
            assert after == before, (operation.path, location, name)
        sent += 1

    call()
    return sent


async def _whoami(app: Any, headers: dict[str, str]) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = await client.get("/api/agent/me", headers=headers)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["agent"]["id"])
