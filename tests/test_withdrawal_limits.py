"""The owner's last controls over money out: daily and monthly withdrawal limits on every
surface (MCP lowers only; REST raises with the code mailed to the owner; the signed-in owner on
the dashboard), enforced to the base unit and settled by the database when two requests race;
a forfeit on closing that the API key alone cannot make; the owner's codes going to the
owner's address, which the key cannot change. Real SMTP sink, FakeClock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from alembic import command
from mcp import Client
from mcp_support import body, call_ok, error_code, make_agent
from smtp_sink import SmtpSink
from sqlalchemy import func, inspect, select, text, update
from withdrawal_setup import owner_set_limits, usdc_balance, withdrawal_runtime

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.dashboard.sessions import SESSION_COOKIE, csrf_token, request_code, verify_code
from agent_server.events.mail_delivery import MailSender
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import SpendingCapReached
from agent_server.kernel.store import Database
from agent_server.kernel.store.migrate import alembic_config, upgrade_async
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from agent_server.services import withdrawals as svc
from billing.ledger import account_balance_from_entries, system_account
from billing.models import AccountKind, LedgerTransaction, SpendingCap
from wallets.withdrawal_models import Withdrawal

USDC = 1_000_000  # one USDC in base units, and one USD in micro-dollars at the test rate
TOKEN_FEE = 1_950_000
ETH_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
OWNER = "owner@example.com"
LIMITS = "/api/agent/spending-limits"


@pytest.fixture
async def runtime(database_url: str, db: Database, sink: SmtpSink) -> AsyncIterator[Runtime]:
    yield withdrawal_runtime(
        database_url,
        db,
        sink,
        withdrawal_approval_usd_micros=1_000 * USDC,
        start_watchers=False,
        start_worker=False,
    )


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


def _rest(runtime: Runtime, cookies: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)),
        base_url="http://127.0.0.1:8000",
        cookies=cookies,
    )


async def _agent(runtime: Runtime, funds: int, owner: str | None = OWNER) -> tuple[int, str]:
    agent_id, key = await make_agent(runtime.db, runtime.settings, funds=funds)
    if owner is not None:
        async with runtime.db.uow() as uow:
            await uow.session.execute(
                update(Agent).where(Agent.id == agent_id).values(owner_email=owner)
            )
            await uow.commit()
    return agent_id, key


async def _withdrawals(db: Database, agent_id: int) -> int:
    async with db.uow() as uow:
        return int(
            await uow.session.scalar(
                select(func.count()).select_from(Withdrawal).where(Withdrawal.agent_id == agent_id)
            )
            or 0
        )


async def _mailed(runtime: Runtime, sink: SmtpSink, to: str) -> str:
    assert await MailSender(runtime.db, runtime.settings).run_once() >= 1
    return await asyncio.to_thread(sink.latest_code, to)


def _ask(amount: int, key: str) -> dict[str, Any]:
    return {"currency": "USDC", "amount": amount, "address": ETH_ADDRESS, "idempotency_key": key}


# --- enforcement --------------------------------------------------------------------------


async def test_withdrawal_limits_refuse_past_the_limit_to_the_base_unit(
    runtime: Runtime, clock: FakeClock
) -> None:
    db = runtime.db
    clock.set(datetime(2026, 3, 31, 20, 0, tzinfo=UTC))
    agent_id, key = await _agent(runtime, 200 * USDC)
    await owner_set_limits(db, agent_id, withdraw_daily=25 * USDC, withdraw_monthly=40 * USDC)
    async with client_for(runtime, key) as client:
        first = await call_ok(client, "request-withdrawal", _ask(10 * USDC, "limit-one"))
        before = (await usdc_balance(db, agent_id), await _withdrawals(db, agent_id))
        refused = await client.call_tool(
            "request-withdrawal", _ask(15 * USDC + 1, "limit-over-by-one")
        )
        assert error_code(refused) == "SPENDING_CAP"
        details = body(refused)["error"]["details"]
        assert details["field"] == "amount"
        assert details["limit"] == "daily_withdrawal_limit_usd_micros"
        assert (details["limit_usd_micros"], details["withdrawn_usd_micros"]) == (
            25 * USDC,
            10 * USDC,
        )
        assert details["remaining_usd_micros"] == 15 * USDC
        assert details["resets_at"].startswith("2026-04-01T00:00:00")
        assert "owner" in details["next_step"] and "dashboard" in details["next_step"]
        # Nothing moved: no withdrawal, no ledger step, the same balance.
        assert (await usdc_balance(db, agent_id), await _withdrawals(db, agent_id)) == before

        await call_ok(client, "request-withdrawal", _ask(15 * USDC, "limit-exactly"))
        seen = await call_ok(client, "get-spending-limits", {})
        assert seen["withdrawn_today_usd_micros"] == 25 * USDC
        assert seen["daily_withdrawal_limit_usd_micros"] == 25 * USDC
        # A cancelled withdrawal no longer counts: its amount can be withdrawn again.
        await call_ok(client, "cancel-withdrawal", {"withdrawal_id": first["withdrawal"]["id"]})
        await call_ok(client, "request-withdrawal", _ask(10 * USDC, "limit-after-cancel"))
        assert (await call_ok(client, "get-spending-limits", {}))["withdrawn_today_usd_micros"] == (
            25 * USDC
        )

        # The next UTC day (a new month too): both reset.
        clock.set(datetime(2026, 4, 1, 0, 0, 1, tzinfo=UTC))
        await call_ok(client, "request-withdrawal", _ask(25 * USDC, "limit-next-day"))
        clock.set(datetime(2026, 4, 2, 9, 0, tzinfo=UTC))
        refused = await client.call_tool("request-withdrawal", _ask(15 * USDC + 1, "limit-month"))
        assert error_code(refused) == "SPENDING_CAP"
        details = body(refused)["error"]["details"]
        assert details["limit"] == "monthly_withdrawal_limit_usd_micros"
        assert details["resets_at"].startswith("2026-05-01T00:00:00")
        await call_ok(client, "request-withdrawal", _ask(15 * USDC, "limit-month-exact"))
    # Fees are charged on top and do not count against the limit.
    assert await usdc_balance(db, agent_id) == 200 * USDC - 65 * USDC - 4 * TOKEN_FEE


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_two_concurrent_requests_cannot_both_pass_the_limit(runtime: Runtime) -> None:
    db = runtime.db
    agent_id, _ = await _agent(runtime, 100 * USDC)
    await owner_set_limits(db, agent_id, withdraw_daily=25 * USDC)
    terms = svc.Terms.of(runtime.settings, runtime.billing, runtime.network_fees)
    owner = svc.Owner(agent_id=agent_id)

    async def request(n: int) -> str:
        try:
            async with db.uow() as uow:
                await svc.request(
                    uow,
                    terms,
                    owner,
                    kind=svc.WithdrawalKind.WITHDRAWAL,
                    currency="USDC",
                    amount=15 * USDC,
                    address=ETH_ADDRESS,
                    request_key=f"race-{n}",
                )
                await uow.commit()
        except SpendingCapReached:
            return "refused"
        return "placed"

    async def waiting_on_locks() -> int:
        async with db.engine.connect() as conn:
            found = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        return int(found or 0)

    # Both requests start while another transaction holds the caps row, so both are in
    # flight at once; the database lets them through one after the other.
    async with db.uow() as blocker:
        await blocker.session.get(SpendingCap, agent_id, with_for_update=True)
        racing = asyncio.gather(request(1), request(2))
        for _ in range(500):
            if await waiting_on_locks() >= 2:
                break
            await asyncio.sleep(0.01)
        await blocker.commit()
    outcomes = sorted(await racing)
    assert outcomes == ["placed", "refused"]
    assert await _withdrawals(db, agent_id) == 1
    assert await usdc_balance(db, agent_id) == 100 * USDC - 15 * USDC - TOKEN_FEE


# --- who changes the limits ---------------------------------------------------------------


async def test_over_mcp_an_agent_lowers_its_withdrawal_limits_but_cannot_raise_them(
    runtime: Runtime,
) -> None:
    agent_id, key = await _agent(runtime, 100 * USDC)
    async with client_for(runtime, key) as client:
        added = await call_ok(
            client,
            "set-spending-limits",
            {"daily_withdrawal_limit_usd_micros": 20 * USDC},
        )
        assert added["daily_withdrawal_limit_usd_micros"] == 20 * USDC
        lowered = await call_ok(
            client,
            "set-spending-limits",
            {
                "daily_withdrawal_limit_usd_micros": 5 * USDC,
                "monthly_withdrawal_limit_usd_micros": 50 * USDC,
            },
        )
        assert lowered["daily_withdrawal_limit_usd_micros"] == 5 * USDC
        assert lowered["monthly_withdrawal_limit_usd_micros"] == 50 * USDC
        for looser in (
            {"daily_withdrawal_limit_usd_micros": 5 * USDC + 1},
            {"monthly_withdrawal_limit_usd_micros": None},
        ):
            refused = await client.call_tool("set-spending-limits", looser)
            assert error_code(refused) == "FORBIDDEN"
            error = body(refused)["error"]
            assert error["details"]["fields"] == list(looser)
            assert "/api/agent/spending-limits/confirm" in error["details"]["next_step"]
        seen = await call_ok(client, "get-spending-limits", {})
        assert (
            seen["daily_withdrawal_limit_usd_micros"],
            seen["monthly_withdrawal_limit_usd_micros"],
        ) == (5 * USDC, 50 * USDC)
        refused = await client.call_tool("request-withdrawal", _ask(5 * USDC + 1, "over-lowered"))
        assert error_code(refused) == "SPENDING_CAP"
    assert await _withdrawals(runtime.db, agent_id) == 0


async def test_rest_raises_a_withdrawal_limit_only_with_the_owners_code(
    runtime: Runtime, sink: SmtpSink
) -> None:
    agent_id, key = await _agent(runtime, 100 * USDC)
    await owner_set_limits(runtime.db, agent_id, withdraw_daily=10 * USDC)
    auth = {"Authorization": f"Bearer {key}"}
    async with _rest(runtime) as web:
        shown = (await web.get(LIMITS, headers=auth)).json()
        assert shown["daily_withdrawal_limit_usd_micros"] == 10 * USDC
        assert shown["withdrawn_today_usd_micros"] == 0
        asked = await web.put(
            LIMITS, json={"daily_withdrawal_limit_usd_micros": 30 * USDC}, headers=auth
        )
        assert asked.status_code == 202, asked.text
        assert asked.json()["code_sent"] is True and asked.json()["raise_pending"] is True
        assert asked.json()["daily_withdrawal_limit_usd_micros"] == 10 * USDC  # not yet
        code = await _mailed(runtime, sink, OWNER)  # the owner's mailbox, not the agent's
        wrong = "000000" if code != "000000" else "111111"
        for left in (4, 3, 2, 1, 0):
            refused = await web.post(f"{LIMITS}/confirm", json={"code": wrong}, headers=auth)
            assert refused.status_code == 422
            assert f"{left} tries left" in refused.json()["error"]["message"]
        # Five wrong tries used the code up: the right one no longer raises anything.
        late = await web.post(f"{LIMITS}/confirm", json={"code": code}, headers=auth)
        assert late.status_code == 422 and "too often" in late.json()["error"]["message"]
        assert (await web.get(LIMITS, headers=auth)).json()[
            "daily_withdrawal_limit_usd_micros"
        ] == 10 * USDC

        asked = await web.put(
            LIMITS, json={"daily_withdrawal_limit_usd_micros": 30 * USDC}, headers=auth
        )
        assert asked.status_code == 202
        code = await _mailed(runtime, sink, OWNER)
        done = await web.post(f"{LIMITS}/confirm", json={"code": code}, headers=auth)
        assert done.status_code == 200, done.text
        assert done.json()["daily_withdrawal_limit_usd_micros"] == 30 * USDC
        placed = await web.post(
            "/api/agent/withdrawals", json=_ask(29 * USDC, "raised-limit"), headers=auth
        )
        assert placed.status_code == 201, placed.text
        over = await web.post(
            "/api/agent/withdrawals", json=_ask(USDC + 1, "past-the-raised-limit"), headers=auth
        )
        assert over.status_code == 402
        assert over.json()["error"]["details"]["limit"] == "daily_withdrawal_limit_usd_micros"


async def _owner_session(runtime: Runtime, sink: SmtpSink) -> tuple[dict[str, str], str]:
    await request_code(runtime.db, runtime.settings, OWNER)
    code = await asyncio.to_thread(sink.latest_code, OWNER)
    token = await verify_code(runtime.db, runtime.settings, OWNER, code)
    return {SESSION_COOKIE: token}, csrf_token(runtime.settings, token)


async def test_the_signed_in_owner_raises_and_removes_withdrawal_limits_on_the_dashboard(
    runtime: Runtime, sink: SmtpSink
) -> None:
    agent_id, key = await _agent(runtime, 100 * USDC)
    await owner_set_limits(
        runtime.db, agent_id, withdraw_daily=5 * USDC, withdraw_monthly=50 * USDC
    )
    async with client_for(runtime, key) as client:
        await call_ok(client, "request-withdrawal", _ask(4 * USDC, "before-dashboard"))
    cookies, csrf = await _owner_session(runtime, sink)
    caps = {"csrf_token": csrf, "daily_cap": "", "monthly_cap": "", "balance_low": ""}
    async with _rest(runtime, cookies) as web:
        page = (await web.get(f"/agents/{agent_id}")).text
        assert 'name="withdraw_daily" inputmode="decimal" value="5.00"' in page
        assert "Withdrawn or pending today $4.00, this month $4.00" in page
        bad = await web.post(f"/agents/{agent_id}/caps", data={**caps, "withdraw_daily": "x"})
        assert bad.status_code == 422 and 'id="withdraw-daily-error"' in bad.text
        saved = await web.post(
            f"/agents/{agent_id}/caps",
            data={**caps, "withdraw_daily": "20.5", "withdraw_monthly": ""},
        )
        assert saved.status_code == 303, saved.text
    async with client_for(runtime, key) as client:
        seen = await call_ok(client, "get-spending-limits", {})
        assert seen["daily_withdrawal_limit_usd_micros"] == 20_500_000
        assert seen["monthly_withdrawal_limit_usd_micros"] is None
        await call_ok(client, "request-withdrawal", _ask(15_500_000, "after-dashboard"))
        over = await client.call_tool("request-withdrawal", _ask(USDC + 1, "one-more-unit"))
        assert error_code(over) == "SPENDING_CAP"
        await call_ok(client, "request-withdrawal", _ask(USDC, "up-to-the-limit"))


# --- closing with a forfeit -----------------------------------------------------------------


async def test_the_api_key_alone_cannot_forfeit_a_balance(runtime: Runtime, sink: SmtpSink) -> None:
    db = runtime.db
    agent_id, key = await _agent(runtime, 30 * USDC)
    auth = {"Authorization": f"Bearer {key}"}
    async with _rest(runtime) as web:
        asked = await web.delete("/api/agent/me?remaining=forfeit", headers=auth)
        assert asked.status_code == 202, asked.text
        assert "code=" in asked.json()["message"]
        assert (await web.get("/api/agent/me", headers=auth)).status_code == 200
        code = await _mailed(runtime, sink, OWNER)
        wrong = "000000" if code != "000000" else "111111"
        refused = await web.delete(f"/api/agent/me?remaining=forfeit&code={wrong}", headers=auth)
        assert refused.status_code == 422
        assert refused.json()["error"]["details"]["fields"][0]["field"] == "code"
        assert "4 tries left" in refused.json()["error"]["message"]
        # Asking again while the code is live mails nothing new and keeps the tries counted.
        again = await web.delete("/api/agent/me?remaining=forfeit", headers=auth)
        assert again.status_code == 202
        assert await MailSender(db, runtime.settings).run_once() == 0
        assert await usdc_balance(db, agent_id) == 30 * USDC
        assert (await web.get("/api/agent/me", headers=auth)).status_code == 200

        closed = await web.delete(f"/api/agent/me?remaining=forfeit&code={code}", headers=auth)
        assert closed.status_code == 200, closed.text
        assert (await web.get("/api/agent/me", headers=auth)).status_code == 401
    assert await usdc_balance(db, agent_id) == 0
    async with db.uow() as uow:
        forfeited = await uow.session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(
                LedgerTransaction.agent_id == agent_id,
                LedgerTransaction.memo.like("forfeited%"),
            )
        )
    assert forfeited == 1


async def test_the_owner_forfeits_on_the_dashboard_without_a_code(
    runtime: Runtime, sink: SmtpSink
) -> None:
    agent_id, _ = await _agent(runtime, 30 * USDC)
    cookies, csrf = await _owner_session(runtime, sink)
    async with _rest(runtime, cookies) as web:
        closed = await web.post(
            f"/agents/{agent_id}/close", data={"csrf_token": csrf, "forfeit": "yes"}
        )
        assert closed.status_code == 303, closed.text
    assert await usdc_balance(runtime.db, agent_id) == 0
    async with runtime.db.uow() as uow:
        forfeited = await system_account(uow, AccountKind.FORFEITED, "USDC")
        held = await account_balance_from_entries(uow, forfeited.id)
        await uow.commit()
    assert held == 30 * USDC


# --- where the owner's codes go -------------------------------------------------------------


async def test_codes_go_to_the_owner_and_the_key_cannot_change_the_owner(
    runtime: Runtime, sink: SmtpSink
) -> None:
    agent_id, key = await _agent(runtime, 30 * USDC)
    async with runtime.db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        own_email = agent.email
        await uow.commit()
    auth = {"Authorization": f"Bearer {key}"}
    async with _rest(runtime) as web:
        taken = await web.patch(
            "/api/agent/me", json={"owner_email": "thief@example.net"}, headers=auth
        )
        assert taken.status_code == 403
        assert taken.json()["error"]["details"]["field"] == "owner_email"
        same = await web.patch("/api/agent/me", json={"owner_email": OWNER}, headers=auth)
        assert same.status_code == 200, same.text
        placed = await web.post(
            "/api/agent/withdrawals", json=_ask(5 * USDC, "to-owner"), headers=auth
        )
        assert placed.status_code == 201 and placed.json()["code_sent"] is True
    assert await MailSender(runtime.db, runtime.settings).run_once() == 1
    assert await asyncio.to_thread(sink.latest_code, OWNER)
    assert sink.to(own_email) == [] and sink.to("thief@example.net") == []


async def test_without_an_owner_the_agents_own_address_gets_the_code(
    runtime: Runtime, sink: SmtpSink
) -> None:
    agent_id, key = await _agent(runtime, 30 * USDC, owner=None)
    async with runtime.db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None and agent.owner_email is None
        own_email = agent.email
        await uow.commit()
    async with client_for(runtime, key) as client:
        placed = await call_ok(client, "request-withdrawal", _ask(5 * USDC, "self-owned"))
    assert placed["code_sent"] is True
    assert await _mailed(runtime, sink, own_email)


# --- the migration --------------------------------------------------------------------------


async def test_the_withdrawal_limits_migration_keeps_the_caps_and_starts_without_limits(
    runtime: Runtime, database_url: str
) -> None:
    db = runtime.db
    agent_id, _ = await _agent(runtime, 0)
    await owner_set_limits(db, agent_id, daily=7 * USDC, withdraw_daily=3 * USDC)
    await db.engine.dispose()
    try:
        await asyncio.to_thread(command.downgrade, alembic_config(database_url), "0013")
        async with db.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("billing_spending_caps")}
            )
        assert "withdraw_daily_usd_micros" not in columns
        assert "forfeit_code_hash" not in columns
    finally:
        await db.engine.dispose()
        await upgrade_async(database_url)
    async with db.uow() as uow:
        row = await uow.session.get(SpendingCap, agent_id)
        assert row is not None
        kept = (
            row.daily_usd_micros,
            row.withdraw_daily_usd_micros,
            row.withdraw_monthly_usd_micros,
            row.forfeit_code_hash,
            row.forfeit_code_tries,
        )
        await uow.commit()
    assert kept == (7 * USDC, None, None, None, 0)
