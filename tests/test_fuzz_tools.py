"""Fuzzing every MCP tool through the SDK's in-memory client, on both backends.

Arguments come from each tool's input schema as ``tools/list`` serves it
(``fuzz_support.arguments_for``): mostly valid, so calls reach the services and the
database, mixed with hostile values. Whatever comes in, a caller gets a result or one of
SPEC's error codes (``agent_server.kernel.errors.ERROR_CODES``), never an internal error.

The examples are derandomized (the same ones every run) and bounded:
``AGENT_SERVER_FUZZ_EXAMPLES`` (default 60 per tool and backend) raises the count for a
longer local run, and ``AGENT_SERVER_FUZZ_RANDOM=1`` draws new examples each run.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fuzz_support import arguments_for, attacks_for
from hypothesis import HealthCheck, given, note, settings
from hypothesis.strategies import SearchStrategy
from mcp import Client
from mcp_support import make_agent
from proof_support import Connection, LoopThread
from sqlalchemy import text

from agent_server.booking.demo import load_demo_data
from agent_server.booking.schedules import get_availability
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ERROR_CODES
from agent_server.kernel.store import Database, make_engine
from agent_server.mcp.server import build_mcp_server
from agent_server.mcp.tools import REGISTRY
from agent_server.runtime import Runtime
from billing import balances

EXAMPLES = int(os.environ.get("AGENT_SERVER_FUZZ_EXAMPLES", "60"))
PROOF = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("AGENT_SERVER_FUZZ_RANDOM") != "1",
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
)
USDC = 1_000_000


@dataclass
class Target:
    """The server under fuzzing: an agent's open client, and real ids to aim at."""

    runtime: Runtime
    me: Connection
    ids: dict[str, list[int]]
    agent_id: int = 0
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def close(self) -> None:
        await self.me.close()
        await self.runtime.close()


def _client(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def _ok(connection: Connection, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await connection.call(tool, arguments)
    assert not result.is_error, (tool, result.structured_content)
    return dict(result.structured_content or {})


async def _setup(url: str, start: FakeClock) -> Target:
    """Demo specialists; this agent and another, each with a schedule and bookings."""
    unlimited = 10**9
    settings_ = Settings(
        database_url=url,
        rate_limit_default=unlimited,
        rate_limits={"search-specialists": unlimited, "book-slot": unlimited},
        start_watchers=False,
        start_worker=False,
    )
    runtime = Runtime(settings=settings_, db=Database(make_engine(url), start))
    await load_demo_data(runtime.db, 12, seed=4)
    ids: dict[str, list[int]] = {"booking": [], "schedule": [], "specialist": list(range(1, 13))}
    connections = []
    agent_ids = []
    for name in ("me", "other"):
        agent_id, key = await make_agent(runtime.db, settings_, funds=100_000 * USDC)
        agent_ids.append(agent_id)
        connection = Connection(lambda key=key: _client(runtime, key))  # type: ignore[misc]
        connections.append(connection)
        made = await _ok(
            connection,
            "create-schedule",
            {
                "timezone": "Europe/Berlin",
                "weekly_hours": {d: [["09:00", "17:00"]] for d in ("mon", "wed", "fri")},
                "price_amount": 5 * USDC,
                "price_currency": "USDC",
                "private": name == "me",
                "idempotency_key": f"fuzz-setup-{name}",
            },
        )
        ids["schedule"].append(int(made["schedule"]["id"]))
    async with runtime.db.uow() as uow:
        now = uow.clock.now()
        free = []
        for schedule_id in [1, 2, 3, ids["schedule"][1]]:
            free += await get_availability(uow, schedule_id, now, now + timedelta(days=10))
    for index, slot in enumerate(free[:6]):
        connection = connections[index % 2]
        booked = await _ok(
            connection,
            "book-slot",
            {"slot_id": slot.slot_id, "idempotency_key": f"fuzz-{index:04d}"},
        )
        ids["booking"].append(int(booked["booking"]["id"]))
    await connections[1].close()
    ids["schedule"] += [1, 2, 3]
    return Target(runtime, connections[0], ids, agent_id=agent_ids[0])


def test_no_tool_input_makes_an_internal_error(database_url: str, clock: FakeClock) -> None:
    loop = LoopThread()
    target = loop.run(_setup(database_url, clock))
    try:
        client_tools = loop.run(_tools(target))
        schemas = {tool["name"]: tool["inputSchema"] for tool in client_tools}
        assert set(schemas) == set(REGISTRY.specs), "every served tool is fuzzed"
        failures: dict[str, str] = {}
        reached: dict[str, Counter[str]] = {}
        for name, schema in sorted(schemas.items()):
            strategy = arguments_for(
                schema,
                target.ids,
                changes_schema=schemas["create-schedule"] if name == "update-schedule" else None,
            )
            try:
                reached[name] = _fuzz(loop, target, name, strategy)
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"[:3000]
        assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
        # The strategies reach past validation on every tool (else the fuzzing proves little).
        shallow = [
            n
            for n, counts in reached.items()
            if not any(v for k, v in counts.items() if k != "VALIDATION_ERROR")
        ]
        assert shallow == [], {n: dict(reached[n]) for n in shallow}
    finally:
        loop.run(target.close())
        loop.close()


def _fuzz(
    loop: LoopThread, target: Target, name: str, strategy: SearchStrategy[dict[str, Any]]
) -> Counter[str]:
    """Run ``name`` on every example; the outcomes by code ("ok" for a success)."""
    outcomes: Counter[str] = Counter()

    @PROOF
    @given(arguments=strategy)
    def call(arguments: dict[str, Any]) -> None:
        note(f"{name} {arguments!r:.2000}")
        result = loop.run(target.me.call(name, arguments))
        body = result.structured_content or {}
        if not result.is_error:
            outcomes["ok"] += 1
            return
        code = body.get("error", {}).get("code")
        outcomes[str(code)] += 1
        assert code in ERROR_CODES, body
        text = result.content[0].text  # type: ignore[union-attr]
        assert "Traceback" not in text, text

    call()
    return outcomes


async def _tools(target: Target) -> list[dict[str, Any]]:
    async with Client(build_mcp_server(target.runtime, api_key_source=lambda: None)) as client:
        listed = (await client.list_tools()).tools
    return [{"name": t.name, "inputSchema": t.input_schema} for t in listed]


# Rows a refused call must leave as they were (with the caller's balances). A call refused
# after validation may have held and released its price (ledger rows, same balance); one
# refused by validation has not even done that.
WATCHED_TABLES = (
    "schedules",
    "bookings",
    "booking_changes",
    "billing_escrows",
    "outbox_events",
    "deposit_addresses",
)
LEDGER_TABLES = ("ledger_transactions", "ledger_entries", "billing_holds")
ATTACKS = settings(PROOF, max_examples=max(EXAMPLES // 3, 10))


async def _state(target: Target) -> tuple[Any, ...]:
    async with target.runtime.db.uow() as uow:
        counts = [
            (await uow.session.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in (*WATCHED_TABLES, *LEDGER_TABLES)
        ]
        money = await balances(uow, target.agent_id)
        await uow.commit()
    return (*counts, sorted(money.items()))


def test_a_hostile_value_in_any_field_is_refused_by_name_and_changes_nothing(
    database_url: str, clock: FakeClock
) -> None:
    """Each tool, one field at a time: NUL and other control characters, lone surrogates,
    integers beyond 64 bits, dates at the ends of the calendar, naive times, non-canonical
    time zones, deep and huge free-form objects. A refusal names a field and leaves the rows
    and the balance as they were; no answer is an internal error."""
    loop = LoopThread()
    target = loop.run(_setup(database_url, clock))
    try:
        schemas = {t["name"]: t["inputSchema"] for t in loop.run(_tools(target))}
        refused: dict[str, int] = {}
        failures: dict[str, str] = {}
        for name, schema in sorted(schemas.items()):
            strategy = attacks_for(schema, target.ids)
            if strategy.is_empty:
                continue
            try:
                refused[name] = _attack(loop, target, name, strategy)
            except Exception as exc:
                failures[name] = f"{type(exc).__name__}: {exc}"[:3000]
        assert failures == {}, "\n\n".join(f"{k}: {v}" for k, v in failures.items())
        assert set(refused) == {n for n, s in schemas.items() if s.get("properties")}
        assert all(refused.values()), refused
    finally:
        loop.run(target.close())
        loop.close()


def _attack(
    loop: LoopThread,
    target: Target,
    name: str,
    strategy: SearchStrategy[tuple[str, dict[str, Any]]],
) -> int:
    """Run ``name`` on every attack; how many were refused with VALIDATION_ERROR."""
    refusals = 0

    @ATTACKS
    @given(attack=strategy)
    def call(attack: tuple[str, dict[str, Any]]) -> None:
        nonlocal refusals
        field, arguments = attack
        note(f"{name} {field}={arguments.get(field)!r:.300}")
        before = loop.run(_state(target))
        result = loop.run(target.me.call(name, arguments))
        if not result.is_error:
            return
        error = (result.structured_content or {}).get("error", {})
        assert error.get("code") in ERROR_CODES, error
        text_out = result.content[0].text  # type: ignore[union-attr]
        assert "Traceback" not in text_out and len(text_out) < 20_000, text_out[:2000]
        after = loop.run(_state(target))
        kept = len(WATCHED_TABLES)
        assert (after[:kept], after[-1]) == (before[:kept], before[-1]), (name, field, error)
        if error["code"] == "VALIDATION_ERROR":
            assert after == before, (name, field, error)
            refusals += 1
            assert error["details"]["fields"], error

    call()
    return refusals
