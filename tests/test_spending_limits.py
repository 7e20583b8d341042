"""An owner's controls over an agent's money: daily and monthly caps on every surface (MCP
lowers only; REST raises with the code mailed to the owner, a real SMTP sink), a per-call
max_price refused before any charge, refunds credited back against the caps, and the owner's
low-balance threshold for balance.low. The clock is a FakeClock across day and month ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from billing_support import make_schedule
from mcp import Client
from mcp_support import body, call_ok, error_code, make_agent
from smtp_sink import SmtpSink
from sqlalchemy import func, select
from withdrawal_setup import owner_set_limits, usdc_balance, withdrawal_runtime

from agent_server.app import create_app
from agent_server.booking.availability import make_slot_id
from agent_server.events.mail_delivery import MailSender
from agent_server.events.models import OutboxEvent
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from agent_server.services.withdrawals import Owner, owner_email
from billing.models import LedgerTransaction

USDC = 1_000_000
SEARCH = 10_000  # search-specialists, USD micro-dollars


@pytest.fixture
async def runtime(database_url: str, db: Database, sink: SmtpSink) -> AsyncIterator[Runtime]:
    yield withdrawal_runtime(database_url, db, sink)


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def _transactions(db: Database) -> int:
    async with db.uow() as uow:
        return int(
            (await uow.session.execute(select(func.count(LedgerTransaction.id)))).scalar_one()
        )


async def _search(client: Client, **extra: Any) -> Any:
    return await client.call_tool("search-specialists", {"q": "tax", **extra})


async def test_daily_and_monthly_caps_refuse_and_reset_across_day_and_month_ends(
    runtime: Runtime, clock: FakeClock
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=10 * USDC)
    clock.set(datetime(2026, 3, 30, 22, 0, tzinfo=UTC))
    await owner_set_limits(db, agent_id, daily=3 * SEARCH, monthly=5 * SEARCH)
    async with client_for(runtime, key) as client:
        for _ in range(3):
            await call_ok(client, "search-specialists", {"q": "tax"})
        refused = await _search(client)
        assert error_code(refused) == "SPENDING_CAP"
        error = body(refused)["error"]
        assert error["details"]["cap"] == "daily"
        assert error["details"]["resets_at"] == "2026-03-31T00:00:00+00:00"
        clock.set(datetime(2026, 3, 31, 0, 0, 1, tzinfo=UTC))  # the next UTC day
        for _ in range(2):
            await call_ok(client, "search-specialists", {"q": "tax"})
        refused = await _search(client)
        assert error_code(refused) == "SPENDING_CAP"
        assert body(refused)["error"]["details"]["cap"] == "monthly"
        assert body(refused)["error"]["details"]["resets_at"] == "2026-04-01T00:00:00+00:00"
        seen = await call_ok(client, "get-spending-limits", {})
        assert seen["spent_today_usd_micros"] == 2 * SEARCH
        assert seen["spent_this_month_usd_micros"] == 5 * SEARCH
        clock.set(datetime(2026, 4, 1, 0, 0, 1, tzinfo=UTC))  # the next month
        await call_ok(client, "search-specialists", {"q": "tax"})
        seen = await call_ok(client, "get-spending-limits", {})
    assert seen["spent_today_usd_micros"] == seen["spent_this_month_usd_micros"] == SEARCH
    assert seen["month_resets_at"] == "2026-05-01T00:00:00Z" or seen["month_resets_at"].startswith(
        "2026-05-01T00:00:00"
    )
    assert await usdc_balance(db, agent_id) == 10 * USDC - 6 * SEARCH


async def test_over_mcp_an_agent_lowers_its_caps_but_cannot_raise_or_remove_them(
    runtime: Runtime,
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=USDC)
    await owner_set_limits(db, agent_id, daily=50_000, monthly=None)
    async with client_for(runtime, key) as client:
        lowered = await call_ok(
            client,
            "set-spending-limits",
            {"daily_cap_usd_micros": 20_000, "monthly_cap_usd_micros": 100_000},
        )
        assert lowered["daily_cap_usd_micros"] == 20_000
        assert lowered["monthly_cap_usd_micros"] == 100_000
        for raise_ in ({"daily_cap_usd_micros": 20_001}, {"monthly_cap_usd_micros": None}):
            refused = await client.call_tool("set-spending-limits", raise_)
            assert error_code(refused) == "FORBIDDEN"
            error = body(refused)["error"]
            assert "owner" in error["message"]
            assert "dashboard" in error["next_step"]
            assert "/api/agent/spending-limits/confirm" in error["next_step"]
        # A refused raise changed nothing: the lower cap still holds.
        seen = await call_ok(client, "get-spending-limits", {})
        assert (seen["daily_cap_usd_micros"], seen["monthly_cap_usd_micros"]) == (20_000, 100_000)
        await call_ok(client, "search-specialists", {"q": "tax"})
        await call_ok(client, "search-specialists", {"q": "tax"})
        assert error_code(await _search(client)) == "SPENDING_CAP"


async def _rest(runtime: Runtime) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://t"
    )


async def _mailed_code(runtime: Runtime, sink: SmtpSink, agent_id: int) -> str:
    assert await MailSender(runtime.db, runtime.settings).run_once() >= 1
    async with runtime.db.uow() as uow:
        to = await owner_email(uow, Owner(agent_id=agent_id))
    return sink.latest_code(to)


async def test_rest_raises_only_with_the_code_mailed_to_the_owner(
    runtime: Runtime, sink: SmtpSink, clock: FakeClock
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=USDC)
    await owner_set_limits(db, agent_id, daily=50_000, monthly=None)
    auth = {"Authorization": f"Bearer {key}"}
    path = "/api/agent/spending-limits"
    async with await _rest(runtime) as web:
        lowered = await web.put(path, json={"daily_cap_usd_micros": 40_000}, headers=auth)
        assert lowered.status_code == 200, lowered.text
        assert lowered.json()["daily_cap_usd_micros"] == 40_000
        assert lowered.json()["code_sent"] is False

        # No raise waiting: a code alone does nothing.
        nothing = await web.post(f"{path}/confirm", json={"code": "123456"}, headers=auth)
        assert nothing.status_code == 422
        assert nothing.json()["error"]["details"]["fields"][0]["field"] == "code"

        asked = await web.put(path, json={"daily_cap_usd_micros": 90_000}, headers=auth)
        assert asked.status_code == 202, asked.text
        assert asked.json()["code_sent"] is True and asked.json()["raise_pending"] is True
        assert asked.json()["daily_cap_usd_micros"] == 40_000  # not raised yet
        assert "code" not in asked.text.lower().replace("code_sent", "")
        code = await _mailed_code(runtime, sink, agent_id)
        wrong = await web.post(
            f"{path}/confirm",
            json={"code": "000000" if code != "000000" else "111111"},
            headers=auth,
        )
        assert wrong.status_code == 422
        assert (await web.get(path, headers=auth)).json()["daily_cap_usd_micros"] == 40_000

        clock.advance(runtime.settings.withdrawal_code_ttl + timedelta(seconds=1))
        expired = await web.post(f"{path}/confirm", json={"code": code}, headers=auth)
        assert expired.status_code == 422
        assert "expired" in expired.json()["error"]["message"]
        assert (await web.get(path, headers=auth)).json()["daily_cap_usd_micros"] == 40_000

        asked = await web.put(
            path,
            json={"daily_cap_usd_micros": 90_000, "monthly_cap_usd_micros": None},
            headers=auth,
        )
        assert asked.status_code == 202
        code = await _mailed_code(runtime, sink, agent_id)
        done = await web.post(f"{path}/confirm", json={"code": code}, headers=auth)
        assert done.status_code == 200, done.text
        assert done.json()["daily_cap_usd_micros"] == 90_000
        assert done.json()["monthly_cap_usd_micros"] is None
        assert done.json()["raise_pending"] is False
        again = await web.post(f"{path}/confirm", json={"code": code}, headers=auth)
        assert again.status_code == 422  # used once


async def test_max_price_refuses_a_dearer_call_before_any_charge(runtime: Runtime) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=100 * USDC)
    schedule = await make_schedule(db, price_amount=40 * USDC, price_currency="USD")
    slot = make_slot_id(schedule, datetime(2026, 3, 5, 10, 0, tzinfo=UTC))
    async with client_for(runtime, key) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for paid in ("search-specialists", "view-profile", "create-schedule", "book-slot"):
            assert "max_price" in tools[paid].input_schema["properties"], paid
        assert "max_price" not in tools["get-wallet"].input_schema.get("properties", {})
        before = (await usdc_balance(db, agent_id), await _transactions(db))

        refused = await _search(client, max_price=SEARCH - 1)
        assert error_code(refused) == "VALIDATION_ERROR"
        error = body(refused)["error"]
        assert error["details"]["price_usd_micros"] == SEARCH
        assert error["details"]["fields"][0]["field"] == "max_price"
        assert "$0.01" in error["message"] or "0.01" in error["message"]
        booking = {"slot_id": slot, "idempotency_key": "max-price-book"}
        refused = await client.call_tool("book-slot", {**booking, "max_price": 40 * USDC + 49_999})
        assert error_code(refused) == "VALIDATION_ERROR"
        assert body(refused)["error"]["details"]["price_usd_micros"] == 40 * USDC + 50_000
        bad = await _search(client, max_price="lots")
        assert error_code(bad) == "VALIDATION_ERROR"
        free = await client.call_tool("get-wallet", {"max_price": 1})
        assert error_code(free) == "VALIDATION_ERROR"  # a free tool takes no max_price
        assert (await usdc_balance(db, agent_id), await _transactions(db)) == before

        searched = await call_ok(client, "search-specialists", {"q": "tax", "max_price": SEARCH})
        assert searched["receipt"]["price_usd"]["amount"] == SEARCH
        booked = await call_ok(client, "book-slot", {**booking, "max_price": 40 * USDC + 50_000})
        assert booked["receipt"]["escrowed"]["text"] == "40.00 USDC"
    assert await usdc_balance(db, agent_id) == 100 * USDC - SEARCH - 40 * USDC - 50_000


async def test_a_refund_is_credited_back_against_the_caps(runtime: Runtime) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=100 * USDC)
    await owner_set_limits(db, agent_id, daily=41 * USDC, monthly=None)
    schedule = await make_schedule(db, price_amount=40 * USDC, price_currency="USD")
    slots = [make_slot_id(schedule, datetime(2026, 3, 5, h, 0, tzinfo=UTC)) for h in (10, 11)]
    async with client_for(runtime, key) as client:
        booked = await call_ok(
            client, "book-slot", {"slot_id": slots[0], "idempotency_key": "refund-cap-1"}
        )
        seen = await call_ok(client, "get-spending-limits", {})
        assert seen["spent_today_usd_micros"] == 40 * USDC + 50_000
        refused = await client.call_tool(
            "book-slot", {"slot_id": slots[1], "idempotency_key": "refund-cap-2"}
        )
        assert error_code(refused) == "SPENDING_CAP"
        cancelled = await call_ok(
            client,
            "cancel-booking",
            {"booking_id": booked["booking"]["id"], "reason_code": "no_time"},
        )
        assert cancelled["refunded"]["amount"] == 40 * USDC  # more than a day ahead: all of it
        seen = await call_ok(client, "get-spending-limits", {})
        assert seen["spent_today_usd_micros"] == 50_000  # the booking fee stays spent
        await call_ok(client, "book-slot", {"slot_id": slots[1], "idempotency_key": "refund-cap-3"})


async def _low_events(db: Database, agent_id: int) -> list[dict[str, Any]]:
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(OutboxEvent.payload)
            .where(OutboxEvent.agent_id == agent_id, OutboxEvent.type == "balance.low")
            .order_by(OutboxEvent.id)
        )
        return [dict(p) for (p,) in rows.all()]


async def test_the_owners_low_balance_threshold_fires_balance_low_once_when_crossed(
    runtime: Runtime,
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=1_025_000)
    async with client_for(runtime, key) as client:
        set_ = await call_ok(client, "set-spending-limits", {"balance_low_usd_micros": 1_015_000})
        assert set_["balance_low_usd_micros"] == 1_015_000
        await call_ok(client, "search-specialists", {"q": "tax"})  # 1.015: not below
        assert await _low_events(db, agent_id) == []
        await call_ok(client, "search-specialists", {"q": "tax"})  # 1.005: crossed
        await call_ok(client, "search-specialists", {"q": "tax"})  # 0.995: still below
    events = await _low_events(db, agent_id)
    assert len(events) == 1
    data = events[0].get("data", events[0])
    assert data["threshold_usd"] == {"amount": 1_015_000, "currency": "USD", "text": "1.015 USD"}
    assert data["balance"]["amount"] == 1_005_000


async def test_max_price_limits_a_withdrawals_fee_before_any_money_moves(runtime: Runtime) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=30 * USDC)
    ask = {
        "currency": "USDC",
        "amount": 10 * USDC,
        "address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "idempotency_key": "max-price-withdrawal",
    }
    async with client_for(runtime, key) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "max_price" in tools["request-withdrawal"].input_schema["properties"]
        before = (await usdc_balance(db, agent_id), await _transactions(db))
        refused = await client.call_tool("request-withdrawal", {**ask, "max_price": USDC})
        assert error_code(refused) == "VALIDATION_ERROR"
        assert body(refused)["error"]["details"]["price_usd_micros"] == 1_950_000  # the fee
        assert (await usdc_balance(db, agent_id), await _transactions(db)) == before
        listed = await call_ok(client, "list-withdrawals", {})
        assert listed["withdrawals"] == []
        placed = await call_ok(client, "request-withdrawal", {**ask, "max_price": 2 * USDC})
    assert placed["fee"]["text"] == "1.95 USDC"
    assert await usdc_balance(db, agent_id) == 30 * USDC - 10 * USDC - 1_950_000
