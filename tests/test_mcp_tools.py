"""MCP tools through the SDK's in-memory client: contract, gate, meter, errors, booking flow."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from db_support import SYNCHRONOUS_COMMIT
from mcp import Client
from mcp_support import SPEC_TOOLS, body, call_ok, error_code, make_agent

from agent_server.accounts.models import AgentStatus
from agent_server.booking.demo import load_demo_data
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ERROR_CODES, RateLimited
from agent_server.kernel.store import Database, UnitOfWork, direct_rows
from agent_server.mcp.receipts import receipt_body
from agent_server.mcp.results import JsonOutput, failure, prepared
from agent_server.mcp.server import build_mcp_server
from agent_server.mcp.tools import REGISTRY
from agent_server.runtime import Runtime
from billing.meter import Receipt as MeterReceipt
from billing.prices import load_price_list

USDC = 1_000_000  # base units per USDC


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield Runtime(settings=Settings(database_url=database_url), db=db)


# Arguments whose name and constraints say all there is to say.
SELF_EVIDENT = {
    "booking_id",
    "schedule_id",
    "cursor",
    "limit",
    "city",
    "currency",
    "text",
    "reason",
    "reason_code",
}
# Characters of the compact tools/list answer with every tool: about 6k tokens in each
# conversation.
TOOLS_LIST_BUDGET = 24_000


def client_for(runtime: Runtime, key: str | None, **options: Any) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key, **options))


async def test_tools_list_is_the_spec_with_schemas_annotations_and_prices(
    runtime: Runtime,
) -> None:
    prices = load_price_list()
    async with client_for(runtime, None) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == SPEC_TOOLS
    for tool in tools:
        assert tool.description and len(tool.description) > 50, tool.name
        price = prices.for_tool(tool.name)
        # Each top-level field and its type; nothing required, so an error body conforms too.
        out = tool.output_schema
        assert out is not None and set(out) == {"type", "properties"}, tool.name
        assert out["type"] == "object" and out["properties"], tool.name
        assert all(set(p) == {"type"} for p in out["properties"].values()), tool.name
        assert ("receipt" in out["properties"]) == price.paid, tool.name
        assert tool.input_schema["type"] == "object"
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert "title" not in prop and "$ref" not in prop, (tool.name, name)
            assert "description" in prop or name in SELF_EVIDENT, (tool.name, name)
        # A free tool says nothing about its price (the server instructions: no Price line,
        # free); a paid one says it in its description and its metadata.
        assert ("\nPrice: " in tool.description) == price.paid, tool.name
        if price.paid:
            meta = (tool.meta or {})["agent-server/price"]
            assert meta["price_usd_micros"] == price.price_usd_micros
            assert meta.get("free_per_month", 0) == price.free_per_month
            assert "max_price" in tool.input_schema["properties"], tool.name
        else:
            assert tool.meta is None, tool.name
        # What a client reads from the hints, a missing one meaning the spec's default.
        spec = REGISTRY.specs[tool.name]
        ann = tool.annotations
        assert ann is not None, tool.name
        read_only = bool(ann.read_only_hint)
        assert read_only == spec.read_only, tool.name
        assert (ann.open_world_hint is not False) == spec.open_world, tool.name
        if not read_only:
            assert (ann.destructive_hint is not False) == spec.destructive, tool.name
            assert bool(ann.idempotent_hint) == spec.idempotent, tool.name
    by_name = {t.name: t for t in tools}
    for read in ("search-specialists", "view-profile", "get-wallet", "list-bookings", "quote"):
        assert by_name[read].annotations.read_only_hint is True  # type: ignore[union-attr]
    for write in ("book-slot", "create-schedule", "cancel-booking", "delete-schedule"):
        assert not by_name[write].annotations.read_only_hint  # type: ignore[union-attr]
    # A writer that destroys nothing says so; one that does is left at the spec's default.
    assert by_name["book-slot"].annotations.destructive_hint is False  # type: ignore[union-attr]
    assert by_name["cancel-booking"].annotations.destructive_hint in (None, True)  # type: ignore[union-attr]
    assert by_name["book-slot"].annotations.idempotent_hint is True  # type: ignore[union-attr]
    assert by_name["search-specialists"].annotations.open_world_hint is False  # type: ignore[union-attr]
    assert "idempotency_key" in by_name["book-slot"].input_schema["required"]


async def test_tools_list_fits_its_budget(runtime: Runtime) -> None:
    async with client_for(runtime, None) as client:
        listed = await client.list_tools()
    tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools]
    size = len(json.dumps({"tools": tools}, separators=(",", ":")))
    largest = sorted((len(json.dumps(t, separators=(",", ":"))), t["name"]) for t in tools)
    where = ", ".join(f"{name} {chars}" for chars, name in reversed(largest[-5:]))
    assert size <= TOOLS_LIST_BUDGET, f"tools/list is {size} characters; largest: {where}"


async def test_toolsets_and_read_only_choose_what_is_served(runtime: Runtime) -> None:
    async with client_for(runtime, None, toolsets=["wallet"]) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {
        "get-wallet",
        "get-deposit-address",
        "list-transactions",
        "get-usage",
        "quote",
        "request-withdrawal",
        "list-withdrawals",
        "cancel-withdrawal",
        "get-spending-limits",
        "set-spending-limits",
    }
    async with client_for(runtime, None, read_only=True) as client:
        tools = (await client.list_tools()).tools
    assert tools and all(t.annotations and t.annotations.read_only_hint for t in tools)
    assert "book-slot" not in {t.name for t in tools}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("unknown", "UNAUTHORIZED"),
        ("unverified", "EMAIL_NOT_VERIFIED"),
        ("unfunded", "ACCOUNT_INACTIVE"),
        ("suspended", "ACCOUNT_INACTIVE"),
        ("banned", "ACCOUNT_INACTIVE"),
    ],
)
async def test_every_tool_refuses_callers_the_gate_stops(
    runtime: Runtime, state: str, expected: str
) -> None:
    settings = runtime.settings
    if state == "unknown":
        key = "as_live_" + "x" * 43
    else:
        status = {
            "unverified": AgentStatus.ACTIVE,
            "unfunded": AgentStatus.PENDING_DEPOSIT,
            "suspended": AgentStatus.SUSPENDED,
            "banned": AgentStatus.BANNED,
        }[state]
        _, key = await make_agent(
            runtime.db, settings, status=status, verified=state != "unverified"
        )
    async with client_for(runtime, key) as client:
        tools = (await client.list_tools()).tools
        assert len(tools) == len(SPEC_TOOLS)
        for tool in tools:
            result = await client.call_tool(tool.name, {})
            assert error_code(result) == expected, tool.name
            assert "Next step:" in result.content[0].text  # type: ignore[union-attr]
    async with runtime.db.uow() as uow:
        from sqlalchemy import func, select

        from billing.models import LedgerTransaction, UsageRecord

        assert await uow.session.scalar(select(func.count()).select_from(UsageRecord)) == 0
        assert await uow.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0


async def test_bad_arguments_get_validation_errors_naming_each_field(runtime: Runtime) -> None:
    _, key = await make_agent(runtime.db, runtime.settings, funds=10 * USDC)
    async with client_for(runtime, key) as client:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("search-specialists", {"timezone": "Mars/Olympus"}, "timezone"),
            ("search-specialists", {"limit": 500}, "limit"),
            ("search-specialists", {"bogus": 1}, "bogus"),
            ("book-slot", {"slot_id": "nonsense", "idempotency_key": "k-12345678"}, "slot_id"),
            ("book-slot", {"slot_id": "1-20260302T0900Z"}, "idempotency_key"),
            (
                "create-schedule",
                {"timezone": "Nowhere/City", "idempotency_key": "k-12345678"},
                "timezone",
            ),
            (
                "create-schedule",
                {"timezone": "UTC", "slot_minutes": 5, "idempotency_key": "k-12345678"},
                "slot_minutes",
            ),
            ("get-usage", {"period": "2026-13"}, "period"),
            ("view-profile", {"specialist_id": -3}, "specialist_id"),
        ]
        for tool, arguments, field in cases:
            result = await client.call_tool(tool, arguments)
            assert error_code(result) == "VALIDATION_ERROR", (tool, arguments)
            entries = body(result)["error"]["details"]["fields"]
            fields = [f["field"] for f in entries]
            assert any(f == field or f.startswith(field) for f in fields), (tool, fields)
            # The text names each field with the reason, and the next step.
            text = result.content[0].text  # type: ignore[union-attr]
            for entry in entries:
                assert f"- {entry['field']}: {entry['message']}" in text, text
            assert "Next step: Fix the arguments" in text, text
        wallet = await call_ok(client, "get-wallet", {})
    assert wallet["wallets"][0]["balance"] == {
        "amount": 10 * USDC,
        "currency": "USDC",
        "text": "10.00 USDC",
    }


async def _text_of(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return str(result.content[0].text)  # type: ignore[union-attr]


def _usdc(data: dict[str, Any]) -> int:
    return int(next(w for w in data["wallets"] if w["currency"] == "USDC")["balance"]["amount"])


async def test_find_and_book_in_two_calls_with_escrow_idempotency_and_refund(
    runtime: Runtime, clock: FakeClock
) -> None:
    await load_demo_data(runtime.db, 40, seed=11)
    agent_id, key = await make_agent(runtime.db, runtime.settings, funds=500 * USDC)
    async with client_for(runtime, key) as client:
        found = await call_ok(client, "search-specialists", {"limit": 10, "sort": "next_available"})
        assert found["receipt"]["price_usd"]["amount"] == 10_000
        assert found["receipt"]["amount"] == {
            "amount": 10_000,
            "currency": "USDC",
            "text": "0.01 USDC",
        }
        assert len(json.dumps(found, separators=(",", ":"), ensure_ascii=False)) <= 8000
        text = await _text_of(client, "search-specialists", {"limit": 10})
        assert len(text) <= 8000 and "USDC" in text.splitlines()[0]
        hit = next(i for i in found["items"] if any(s["slots"] for s in i["schedules"]))
        schedule = next(s for s in hit["schedules"] if s["slots"])
        slot_id = next(iter(schedule["slots"]))

        before = _usdc(await call_ok(client, "get-wallet", {}))
        quote = await call_ok(client, "quote", {"tool": "book-slot", "slot_id": slot_id})
        booked = await call_ok(
            client, "book-slot", {"slot_id": slot_id, "idempotency_key": "booking-0001"}
        )
        receipt = booked["receipt"]
        assert (
            receipt["amount"]["amount"] + receipt["escrowed"]["amount"] == quote["amount"]["amount"]
        )
        after = _usdc(await call_ok(client, "get-wallet", {}))
        assert before - after == quote["amount"]["amount"]

        again = await call_ok(
            client, "book-slot", {"slot_id": slot_id, "idempotency_key": "booking-0001"}
        )
        assert again["booking"]["id"] == booked["booking"]["id"]
        assert _usdc(await call_ok(client, "get-wallet", {})) == after

        other = await client.call_tool(
            "book-slot", {"slot_id": slot_id, "idempotency_key": "booking-0001", "topic": "x"}
        )
        assert error_code(other) == "IDEMPOTENCY_MISMATCH"

        taken = await client.call_tool(
            "book-slot", {"slot_id": slot_id, "idempotency_key": "booking-0002"}
        )
        if schedule["capacity"] == 1:
            assert error_code(taken) == "BOOKING_CONFLICT"
            assert "next_available_slot" in body(taken)["error"]["details"]
        else:  # a group session: a second seat of the same slot
            seat = body(taken)["receipt"]
            after -= seat["amount"]["amount"] + seat["escrowed"]["amount"]

        cancelled = await call_ok(
            client,
            "cancel-booking",
            {"booking_id": booked["booking"]["id"], "reason_code": "no_time"},
        )
        assert cancelled["booking"]["status"] == "canceled"
        escrowed = receipt["escrowed"]["amount"]
        refunded = cancelled["refunded"]["amount"]
        assert refunded in (escrowed, -(-escrowed // 2))
        final = _usdc(await call_ok(client, "get-wallet", {}))
        assert final == after + refunded

        usage = await call_ok(client, "get-usage", {"period": clock.now().strftime("%Y-%m")})
        by_tool = {u["tool"]: u for u in usage["usage"]}
        assert by_tool["search-specialists"]["paid_calls"] == 2  # the page, then its text
        assert by_tool["book-slot"]["calls"] == (1 if schedule["capacity"] == 1 else 2)
        history = await call_ok(client, "list-transactions", {})
        assert sum(t["balance_change"]["amount"] for t in history["transactions"]) == final
    assert agent_id


async def test_view_profile_free_quota_then_paid_and_unknown_id(
    runtime: Runtime, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[tools.view-profile]\nprice_usd = "0.02"\nfree_per_month = 2\n'
        '[tools.search-specialists]\nprice_usd = "0.01"\n'
    )
    rt = Runtime(settings=runtime.settings.model_copy(update={"price_list": prices}), db=runtime.db)
    await load_demo_data(rt.db, 3, seed=3)
    _, key = await make_agent(rt.db, rt.settings, funds=5 * USDC)
    async with client_for(rt, key) as client:
        receipts = [
            (await call_ok(client, "view-profile", {"specialist_id": 1}))["receipt"]
            for _ in range(3)
        ]
        assert [r["free"] for r in receipts] == [True, True, False]
        assert receipts[2]["amount"]["amount"] == 20_000
        missing = await client.call_tool("view-profile", {"specialist_id": 999_999})
        assert error_code(missing) == "NOT_FOUND"
        profile = await call_ok(client, "view-profile", {"specialist_id": 2})
        assert profile["profile"]["email"]


async def test_own_schedule_lifecycle_and_insufficient_funds(
    runtime: Runtime, clock: FakeClock
) -> None:
    _, poor = await make_agent(runtime.db, runtime.settings, funds=50_000)  # 0.05 USDC
    weekly = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    args = {"timezone": "Europe/Berlin", "weekly_hours": weekly, "idempotency_key": "sched-0001"}
    async with client_for(runtime, poor) as client:
        refused = await client.call_tool("create-schedule", args)
        assert error_code(refused) == "INSUFFICIENT_FUNDS"
        details = body(refused)["error"]["details"]
        assert details["deposit_address"]
        assert _usdc(await call_ok(client, "get-wallet", {})) == 50_000
        assert (await call_ok(client, "list-schedules", {}))["total"] == 0

    _, rich = await make_agent(runtime.db, runtime.settings, funds=5 * USDC)
    async with client_for(runtime, rich) as client:
        made = await call_ok(client, "create-schedule", args)
        again = await call_ok(client, "create-schedule", args)
        assert again["schedule"]["id"] == made["schedule"]["id"]
        assert _usdc(await call_ok(client, "get-wallet", {})) == 5 * USDC - 100_000
        sid = made["schedule"]["id"]
        start = (clock.now() + timedelta(days=1)).isoformat()
        free = await call_ok(client, "get-availability", {"schedule_id": sid, "start": start})
        [own_slots] = free["schedules"]
        assert own_slots["schedule_id"] == sid and own_slots["slots"]
        assert own_slots["timezone"] == args["timezone"]
        updated = await call_ok(
            client, "update-schedule", {"schedule_id": sid, "changes": {"slot_minutes": 30}}
        )
        assert updated["schedule"]["slot_minutes"] == 30
        own = await client.call_tool(
            "book-slot",
            {"slot_id": next(iter(own_slots["slots"])), "idempotency_key": "own-000001"},
        )
        assert error_code(own) == "FORBIDDEN"
        deleted = await call_ok(client, "delete-schedule", {"schedule_id": sid})
        assert deleted["schedule"]["deleted"] is True


async def test_a_slot_is_priced_and_booked_only_where_its_schedule_is_seen(
    runtime: Runtime, clock: FakeClock
) -> None:
    weekly = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    base = {"timezone": "UTC", "weekly_hours": weekly, "price_currency": "USDC"}
    start = (clock.now() + timedelta(days=2)).isoformat()
    _, owner_key = await make_agent(runtime.db, runtime.settings, funds=50 * USDC)
    _, key = await make_agent(runtime.db, runtime.settings, funds=50 * USDC)
    slots: dict[str, str] = {}
    async with client_for(runtime, owner_key) as owner:
        for name, extra in (
            ("hidden", {"private": True, "price_amount": 3 * USDC}),
            ("free", {"private": False, "price_amount": 0}),
            ("gone", {"private": False, "price_amount": 4 * USDC}),
        ):
            made = await call_ok(
                owner, "create-schedule", {**base, **extra, "idempotency_key": f"sched-{name}"}
            )
            sid = made["schedule"]["id"]
            free = await call_ok(owner, "get-availability", {"schedule_id": sid, "start": start})
            slots[name] = next(iter(free["schedules"][0]["slots"]))
        # The owner sees its private schedule's price; its own slots it cannot book.
        own = await call_ok(owner, "quote", {"tool": "book-slot", "slot_id": slots["hidden"]})
        fee = (await call_ok(owner, "quote", {"tool": "book-slot"}))["amount"]["amount"]
        assert own["amount"]["amount"] == fee + 3 * USDC
        gone_id = int(slots["gone"].split("-")[0])
        await call_ok(owner, "delete-schedule", {"schedule_id": gone_id})
    async with client_for(runtime, key) as client:
        before = _usdc(await call_ok(client, "get-wallet", {}))
        unknown = f"{gone_id + 100}-{slots['gone'].split('-', 1)[1]}"
        for slot in (slots["hidden"], slots["gone"], unknown):
            quoted = await client.call_tool("quote", {"tool": "book-slot", "slot_id": slot})
            assert error_code(quoted) == "NOT_FOUND", slot
            booked = await client.call_tool(
                "book-slot", {"slot_id": slot, "idempotency_key": f"try-{slot}"}
            )
            assert error_code(booked) == "NOT_FOUND", slot
            assert body(booked)["error"]["details"]["schedule_id"] == int(slot.split("-")[0])
        assert _usdc(await call_ok(client, "get-wallet", {})) == before
        # A free slot costs the call's fee alone, and escrows nothing.
        quoted = await call_ok(client, "quote", {"tool": "book-slot", "slot_id": slots["free"]})
        assert quoted["amount"]["amount"] == fee
        booked = await call_ok(
            client, "book-slot", {"slot_id": slots["free"], "idempotency_key": "free-0001"}
        )
        assert booked["receipt"]["escrowed"] is None
        assert _usdc(await call_ok(client, "get-wallet", {})) == before - fee


async def test_a_booking_retried_after_its_schedule_left_gets_the_first_answer(
    runtime: Runtime, clock: FakeClock
) -> None:
    weekly = {d: [["00:00", "24:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    made = {"timezone": "UTC", "weekly_hours": weekly, "private": False, "price_currency": "USDC"}
    start = (clock.now() + timedelta(days=2)).isoformat()
    _, owner_key = await make_agent(runtime.db, runtime.settings, funds=50 * USDC)
    _, key = await make_agent(runtime.db, runtime.settings, funds=50 * USDC)
    slots: list[str] = []
    async with client_for(runtime, owner_key) as owner:
        for n in (1, 2):
            sid = (
                await call_ok(
                    owner,
                    "create-schedule",
                    {**made, "price_amount": n * USDC, "idempotency_key": f"schedule-{n}"},
                )
            )["schedule"]["id"]
            free = await call_ok(owner, "get-availability", {"schedule_id": sid, "start": start})
            slots.append(next(iter(free["schedules"][0]["slots"])))
    async with client_for(runtime, key) as client:
        first = await call_ok(
            client, "book-slot", {"slot_id": slots[0], "idempotency_key": "retry-0001"}
        )
        paid = _usdc(await call_ok(client, "get-wallet", {}))
        async with client_for(runtime, owner_key) as owner:
            gone = int(slots[0].split("-")[0])
            await call_ok(owner, "delete-schedule", {"schedule_id": gone})
        # The same call again: its first answer, though its slot can no longer be priced.
        again = await call_ok(
            client, "book-slot", {"slot_id": slots[0], "idempotency_key": "retry-0001"}
        )
        assert again["booking"] == first["booking"]
        # A new key on the schedule that left: not found, and the key is not taken by it.
        missing = await client.call_tool(
            "book-slot", {"slot_id": slots[0], "idempotency_key": "retry-0002"}
        )
        assert error_code(missing) == "NOT_FOUND"
        other = await call_ok(
            client, "book-slot", {"slot_id": slots[1], "idempotency_key": "retry-0002"}
        )
        assert other["booking"]["slot_id"] == slots[1]
        escrowed = other["receipt"]["amount"]["amount"] + other["receipt"]["escrowed"]["amount"]
        assert _usdc(await call_ok(client, "get-wallet", {})) == paid - escrowed


async def test_no_tool_answers_with_an_internal_error_for_odd_input(runtime: Runtime) -> None:
    await load_demo_data(runtime.db, 5, seed=5)
    _, key = await make_agent(runtime.db, runtime.settings, funds=5 * USDC)
    odd: list[Any] = [None, -1, 0, 2**70, "", "ü" * 5000, "' OR 1=1 --", [], {}, 1.5, True]
    async with client_for(runtime, key) as client:
        tools = (await client.list_tools()).tools
        for tool in tools:
            props = list(tool.input_schema.get("properties", {}))
            for name in props:
                for value in odd:
                    result = await client.call_tool(tool.name, {name: value})
                    if result.is_error:
                        assert error_code(result) in ERROR_CODES, (tool.name, name, value)


async def _searcher_limited_to(runtime: Runtime, calls: int) -> tuple[Runtime, str]:
    """A runtime allowing ``calls`` searches a minute, a small catalogue, a funded key."""
    limited = {"rate_limits": {"search-specialists": calls}}
    rt = Runtime(settings=runtime.settings.model_copy(update=limited), db=runtime.db)
    await load_demo_data(rt.db, 3, seed=3)
    _, key = await make_agent(rt.db, rt.settings, funds=5 * USDC)
    return rt, key


async def test_rate_limit_counts_every_admitted_call_and_charges_only_successes(
    runtime: Runtime,
) -> None:
    """A read tool's count rides in the call's own transaction; failed calls count too."""
    rt, key = await _searcher_limited_to(runtime, 4)
    async with client_for(rt, key) as client:
        await call_ok(client, "search-specialists", {})
        bad = await client.call_tool("search-specialists", {"price_min": 9, "price_max": 1})
        assert error_code(bad) == "VALIDATION_ERROR"
        wrong = await client.call_tool("search-specialists", {"cursor": "not-a-cursor"})
        assert error_code(wrong) == "VALIDATION_ERROR"
        await call_ok(client, "search-specialists", {"sort": "price"})
        limited = await client.call_tool("search-specialists", {})
        assert error_code(limited) == "RATE_LIMITED"
        details = body(limited)["error"]["details"]
        assert details["limit"] == 4 and 1 <= details["retry_after"] <= 60
        usage = await call_ok(client, "get-usage", {})
    searches = [t for t in usage["usage"] if t["tool"] == "search-specialists"]
    assert searches[0]["calls"] == searches[0]["paid_calls"] == 2  # successes, charged once


async def test_concurrent_calls_never_pass_the_rate_limit(runtime: Runtime) -> None:
    rt, key = await _searcher_limited_to(runtime, 5)
    async with client_for(rt, key) as client:
        results = await asyncio.gather(
            *(client.call_tool("search-specialists", {}) for _ in range(12))
        )
    codes = [error_code(r) if r.is_error else "OK" for r in results]
    assert codes.count("OK") == 5
    assert codes.count("RATE_LIMITED") == 7


def test_a_rate_limited_result_says_whether_the_caller_or_the_server_was_too_busy() -> None:
    over = failure(RateLimited("Rate limit reached.", {"retry_after": 12, "limit": 60}))
    assert over.content[0].text.endswith(  # type: ignore[union-attr]
        "Next step: Too many calls; retry after 12 seconds."
    )
    # The meter's answer to a call that lost its payment reservation twice (no limit passed).
    busy = failure(RateLimited("Too busy to finish.", {"retry_after": 60, "tool": "book-slot"}))
    assert busy.content[0].text.endswith(  # type: ignore[union-attr]
        "Next step: The server is busy; retry after 60 seconds."
    )
    assert busy.structured_content == {
        "error": {
            "code": "RATE_LIMITED",
            "status": 429,
            "message": "Too busy to finish.",
            "details": {"retry_after": 60, "tool": "book-slot"},
            "next_step": "The server is busy; retry after 60 seconds.",
        }
    }


def test_an_answer_rendered_once_gets_the_call_receipt_in_front() -> None:
    answer = {"items": [{"name": "Zoë", "rating": 4.5}], "next_cursor": None}
    receipt = receipt_body(
        MeterReceipt("c1", "search-specialists", 10_000, "USDC", 10_000, 990_000, rate=1_000_000)
    )
    assert receipt is not None
    sent = prepared(JsonOutput(answer, "1 specialist"), receipt, has_receipt=True)
    assert sent.structured_content == {"receipt": receipt, **answer}
    assert list(sent.structured_content) == ["receipt", "items", "next_cursor"]
    assert sent.content[0].text == (  # type: ignore[union-attr]
        "Charged 0.01 USDC for search-specialists, call_id c1; balance 0.99 USDC.\n1 specialist"
    )
    assert answer == {"items": [{"name": "Zoë", "rating": 4.5}], "next_cursor": None}
    free = prepared(JsonOutput({}, "nothing"), None, has_receipt=True)
    assert free.structured_content == {"receipt": None}
    assert free.content[0].text == "nothing"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("currency", "fee", "balance", "escrowed", "texts"),
    [
        ("USDC", 10_000, 990_000, 25_000_000, ("0.01 USDC", "0.99 USDC", "25.00 USDC")),
        ("USDT", 50_000, 1, 0, ("0.05 USDT", "0.000001 USDT", None)),
        ("ETH", 16_667, 1_500_000_000, 1_250_000, ("0.000016667 ETH", "1.50 ETH", "0.00125 ETH")),
        ("BTC", 15, 100_000_000, 60_000, ("0.00000015 BTC", "1.00 BTC", "0.0006 BTC")),
    ],
)
def test_every_money_figure_of_a_receipt_is_amount_currency_and_text(
    currency: str, fee: int, balance: int, escrowed: int, texts: tuple[str, str, str | None]
) -> None:
    rate = 65_000 * 1_000_000 if currency == "BTC" else 1_000_000
    meter_receipt = MeterReceipt(
        "c1", "book-slot", 10_000, currency, fee, balance, rate=rate, escrowed=escrowed
    )
    receipt = receipt_body(meter_receipt)
    assert receipt is not None
    fee_text, balance_text, escrow_text = texts
    assert receipt["amount"] == {"amount": fee, "currency": currency, "text": fee_text}
    assert receipt["balance_after"] == {
        "amount": balance,
        "currency": currency,
        "text": balance_text,
    }
    if escrow_text is None:
        assert receipt["escrowed"] is None
    else:
        assert receipt["escrowed"] == {
            "amount": escrowed,
            "currency": currency,
            "text": escrow_text,
        }
    assert receipt["price_usd"] == {"amount": 10_000, "currency": "USD", "text": "0.01 USD"}
    assert receipt["rate"]["currency"] == "USD" and receipt["rate"]["amount"] == rate
    # No bare integer is left beside a currency: every figure reads by itself.
    assert "currency" not in receipt and "price_usd_micros" not in receipt
    line = prepared(JsonOutput({}, "done"), receipt, has_receipt=True).content[0].text  # type: ignore[union-attr]
    assert f"Charged {fee_text} for book-slot" in line and f"balance {balance_text}" in line
    assert (f"{escrow_text} into escrow" in line) if escrow_text else "escrow" not in line


def test_a_free_call_receipt_has_no_wallet_figures() -> None:
    receipt = receipt_body(MeterReceipt("c2", "view-profile", 0, None, 0, None, free=True))
    assert receipt is not None
    assert (receipt["amount"], receipt["balance_after"], receipt["escrowed"]) == (None, None, None)
    assert receipt["free"] is True and receipt["price_usd"]["text"] == "0.00 USD"
    text = prepared(JsonOutput({}, "profile"), receipt, has_receipt=True).content[0].text  # type: ignore[union-attr]
    assert text.startswith("Free (monthly quota) for view-profile, call_id c2.")


def _record_commit_waits(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Each tool's ``synchronous_commit`` as its handler's transaction commits (where
    PostgreSQL reads it), as the calls made after this happen."""
    seen: dict[str, str] = {}
    handlers: dict[int, tuple[UnitOfWork, str]] = {}  # the handler's unit of work, by id
    for name, spec in list(REGISTRY.specs.items()):

        async def recording(ctx: Any, args: Any, _spec: Any = spec, _name: str = name) -> Any:
            handlers[id(ctx.uow)] = (ctx.uow, _name)
            return await _spec.handler(ctx, args)

        monkeypatch.setitem(REGISTRY.specs, name, dataclasses.replace(spec, handler=recording))
    commit = UnitOfWork.commit

    async def committing(uow: UnitOfWork) -> None:
        held = handlers.get(id(uow))
        if held is not None and held[0] is uow:
            ((seen[held[1]],),) = await direct_rows(uow, SYNCHRONOUS_COMMIT, {})
        await commit(uow)

    monkeypatch.setattr(UnitOfWork, "commit", committing)
    return seen


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_only_read_only_calls_commit_without_waiting_for_the_disk(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load_demo_data(runtime.db, 3, seed=3)
    _, key = await make_agent(runtime.db, runtime.settings, funds=5 * USDC)
    seen = _record_commit_waits(monkeypatch)
    weekly = {"mon": [["09:00", "17:00"]]}
    made = {"timezone": "UTC", "weekly_hours": weekly, "idempotency_key": "sched-wait-1"}
    async with client_for(runtime, key) as client:
        await call_ok(client, "search-specialists", {})
        await call_ok(client, "get-wallet", {})
        schedule = (await call_ok(client, "create-schedule", made))["schedule"]
        await call_ok(client, "list-schedules", {})
        changes = {"schedule_id": schedule["id"], "changes": {"slot_minutes": 30}}
        await call_ok(client, "update-schedule", changes)
    assert seen == {
        "search-specialists": "off",
        "get-wallet": "off",
        "create-schedule": "on",  # a write with a hold: transactions of its own
        "list-schedules": "off",
        "update-schedule": "on",  # a write without a hold: the read tools' path
    }


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_durable_read_charges_make_read_calls_wait_too(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable = runtime.settings.model_copy(update={"durable_read_charges": True})
    rt = Runtime(settings=durable, db=runtime.db)
    _, key = await make_agent(rt.db, rt.settings, funds=5 * USDC)
    seen = _record_commit_waits(monkeypatch)
    async with client_for(rt, key) as client:
        await call_ok(client, "get-wallet", {})
    assert seen == {"get-wallet": "on"}
