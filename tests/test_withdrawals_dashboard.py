"""Withdrawals on the dashboard: the owner quotes, requests, confirms the new address with the
mailed code and cancels; the operator approves from the queue (who, when, why shown); a
specialist requests a payout; the owner closes the agent's account."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import pytest
from mcp_support import make_agent
from smtp_sink import SmtpSink
from sqlalchemy import update
from withdrawal_setup import (
    ETH_ADDRESS,
    OWNER,
    TOKEN_FEE,
    USDC,
    credit_earnings,
    mailed_code,
    withdrawal_runtime,
)

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.dashboard.sessions import SESSION_COOKIE, csrf_token, request_code, verify_code
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from agent_server.services import withdrawals as svc
from billing.wallet_funds import balances


@pytest.fixture
def runtime(database_url: str, db: Database, sink: SmtpSink) -> Runtime:
    return withdrawal_runtime(
        database_url,
        db,
        sink,
        operator_emails=["ops@example.com"],
        withdrawal_cooling_off=timedelta(hours=1),
        withdrawal_approval_usd_micros=100 * USDC,
        start_watchers=False,
        start_worker=False,
    )


async def _session(runtime: Runtime, sink: SmtpSink, email: str) -> tuple[dict[str, str], str]:
    await request_code(runtime.db, runtime.settings, email)
    code = await asyncio.to_thread(sink.latest_code, email)
    token = await verify_code(runtime.db, runtime.settings, email, code)
    return {SESSION_COOKIE: token}, csrf_token(runtime.settings, token)


def _web(runtime: Runtime, cookies: dict[str, str]) -> httpx.AsyncClient:
    app = create_app(runtime)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000", cookies=cookies
    )


def _status(page: str, public_id: str) -> str:
    found = re.search(rf'id="{public_id}".*?data-field="status">([a-z_]+)<', page, re.S)
    assert found, page[:3000]
    return found.group(1)


async def test_owner_requests_confirms_and_the_operator_approves(
    runtime: Runtime, sink: SmtpSink, clock: FakeClock
) -> None:
    db = runtime.db
    agent_id, _ = await make_agent(db, runtime.settings, funds=500 * USDC)
    async with db.uow() as uow:
        await uow.session.execute(
            update(Agent).where(Agent.id == agent_id).values(owner_email=OWNER)
        )
        await uow.commit()
    cookies, csrf = await _session(runtime, sink, OWNER)
    base = f"/agents/{agent_id}/withdrawals"
    form = {"csrf_token": csrf, "currency": "USDC", "amount": "150", "address": ETH_ADDRESS}
    async with _web(runtime, cookies) as web:
        quoted = await web.post(base, data={**form, "action": "quote"})
        assert quoted.status_code == 200
        assert 'data-field="fee">1.95 USDC' in quoted.text
        assert 'data-field="total">151.95 USDC' in quoted.text
        key = re.search(r'name="request_key" value="(\d+)"', quoted.text)
        assert key
        asked = await web.post(
            base, data={**form, "action": "request", "request_key": key.group(1)}
        )
        assert asked.status_code == 303 and asked.headers["location"].endswith("done=code")
        # The same form sent twice (a reload) is one withdrawal.
        await web.post(base, data={**form, "action": "request", "request_key": key.group(1)})
        async with db.uow() as uow:
            assert (await balances(uow, agent_id))["USDC"] == 500 * USDC - 150 * USDC - TOKEN_FEE
            rows = await svc.list_for(uow, svc.Owner(agent_id=agent_id), before=None, limit=5)
            address_id, wid = rows[0].address_id, rows[0].public_id
        assert len(rows) == 1
        page = (await web.get(base)).text
        assert _status(page, wid) == "awaiting_confirmation"
        code = await mailed_code(runtime, sink, OWNER)
        wrong = await web.post(
            f"/agents/{agent_id}/withdrawal-addresses/{address_id}/confirm",
            data={"csrf_token": csrf, "code": "000000" if code != "000000" else "111111"},
        )
        assert wrong.status_code == 422 and "tries left" in wrong.text
        right = await web.post(
            f"/agents/{agent_id}/withdrawal-addresses/{address_id}/confirm",
            data={"csrf_token": csrf, "code": code},
        )
        assert right.status_code == 303
        assert "usable from" in (await web.get(base)).text
    clock.advance(timedelta(hours=1))
    async with db.uow() as uow:
        assert await svc.release_due(uow) == 1
        await uow.commit()

    ops_cookies, ops_csrf = await _session(runtime, sink, "ops@example.com")
    async with _web(runtime, ops_cookies) as web:
        queue = (await web.get("/operator/withdrawals")).text
        assert _status(queue, wid) == "awaiting_approval"
        approved = await web.post(
            f"/operator/withdrawals/{wid}/approve",
            data={"csrf_token": ops_csrf, "note": "checked with the owner by phone"},
        )
        assert approved.status_code == 303
        queue = (await web.get("/operator/withdrawals")).text
        assert "by dashboard:ops@example.com" in queue and "checked with the owner" in queue
        # The owner's pages are not the operator's, and the operator's are not the owner's.
        assert (await web.get(base)).status_code == 404
    async with _web(runtime, cookies) as web:
        assert (await web.get("/operator/withdrawals")).status_code == 403
        assert _status((await web.get(base)).text, wid) == "approved"
        cancelled = await web.post(f"{base}/{wid}/cancel", data={"csrf_token": csrf})
        assert cancelled.status_code == 303
        assert _status((await web.get(base)).text, wid) == "cancelled"
    async with db.uow() as uow:
        assert (await balances(uow, agent_id))["USDC"] == 500 * USDC


async def test_a_specialist_requests_a_payout_and_an_owner_closes_an_account(
    runtime: Runtime, sink: SmtpSink
) -> None:
    from events_support import specialist

    db = runtime.db
    specialist_id = await specialist(db)
    async with db.uow() as uow:
        payable = await credit_earnings(uow, 40 * USDC, specialist_id=specialist_id)
        await uow.commit()
        email = await svc.owner_email(uow, svc.Owner(specialist_id=specialist_id))
    cookies, csrf = await _session(runtime, sink, email)
    async with _web(runtime, cookies) as web:
        done = await web.post(
            "/specialist/payouts",
            data={
                "csrf_token": csrf,
                "currency": "USDC",
                "amount": "30",
                "address": ETH_ADDRESS,
                "action": "request",
                "request_key": "specialist-payout-1",
            },
        )
        assert done.status_code == 303, done.text
        page = (await web.get("/specialist/payouts")).text
        assert "payout" in page and "awaiting_confirmation" in page
        too_much = await web.post(
            "/specialist/payouts",
            data={
                "csrf_token": csrf,
                "currency": "USDC",
                "amount": "30",
                "address": ETH_ADDRESS,
                "action": "request",
                "request_key": "specialist-payout-2",
            },
        )
        assert too_much.status_code == 422 and "you are owed" in too_much.text
    async with db.uow() as uow:
        left = await svc.payable_balance(uow, payable, lock=False)
    assert left == 10 * USDC - TOKEN_FEE

    agent_id, _ = await make_agent(db, runtime.settings, funds=7 * USDC)
    async with db.uow() as uow:
        await uow.session.execute(
            update(Agent).where(Agent.id == agent_id).values(owner_email=OWNER)
        )
        await uow.commit()
    cookies, csrf = await _session(runtime, sink, OWNER)
    async with _web(runtime, cookies) as web:
        refused = await web.post(f"/agents/{agent_id}/close", data={"csrf_token": csrf})
        assert refused.status_code == 422 and "7.00 USDC" in refused.text
        closed = await web.post(
            f"/agents/{agent_id}/close", data={"csrf_token": csrf, "forfeit": "yes"}
        )
        assert closed.status_code == 303
    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None and agent.deleted_at is not None
        assert (await balances(uow, agent_id))["USDC"] == 0
