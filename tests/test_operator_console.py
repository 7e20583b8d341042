"""The operator console on both backends, through the served app: revenue by day and tool from
the ledger's charges, deposits waiting for confirmations, a failed webhook retried once,
agents found by search, an agent's detail; none of it for anyone but an operator."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from mcp_support import make_agent
from pydantic import SecretStr
from smtp_sink import SmtpSink
from sqlalchemy import select

from agent_server.accounts.keys import shown_prefix
from agent_server.accounts.models import Agent, AgentKey
from agent_server.accounts.service import delete_agent, hash_api_key
from agent_server.accounts.status import StatusAction, change_status
from agent_server.app import create_app
from agent_server.dashboard.sessions import csrf_token, request_code, verify_code
from agent_server.dashboard.web import SESSION_COOKIE
from agent_server.events.models import OutboxEvent, OutboxStatus
from agent_server.events.outbox import BALANCE_LOW, emit
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from billing.ledger import credit, debit, open_wallet, post, system_account
from billing.models import AccountKind, TransactionKind
from wallets.models import Deposit, DepositStatus

OPERATOR = "ops@example.com"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


class Console:
    def __init__(self, http: httpx.AsyncClient, settings: Settings, db: Database) -> None:
        self.http, self.settings, self.db = http, settings, db

    async def session_for(self, email: str) -> tuple[str, str]:
        smtp: SmtpSink = self.http._smtp  # type: ignore[attr-defined]
        before = len(smtp.to(email))
        await request_code(self.db, self.settings, email)
        while len(smtp.to(email)) <= before:
            await asyncio.sleep(0.01)
        code = await asyncio.to_thread(smtp.latest_code, email)
        token = await verify_code(self.db, self.settings, email, code)
        return token, csrf_token(self.settings, token)


@pytest.fixture
async def console(db: Database, database_url: str, smtp: SmtpSink) -> AsyncIterator[Console]:
    settings = Settings(
        database_url=database_url,
        smtp_url=smtp.url,
        secret_pepper=SecretStr("console-test-pepper"),
        operator_emails=[OPERATOR],
        start_watchers=False,
        start_worker=False,
    )
    app = create_app(Runtime(settings, db))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        http._smtp = smtp  # type: ignore[attr-defined]
        yield Console(http, settings, db)


async def _charge(db: Database, agent_id: int, tool: str, amount: int, ref: str) -> None:
    async with db.uow() as uow:
        wallet = await open_wallet(uow, agent_id, "USDC")
        revenue = await system_account(uow, AccountKind.REVENUE, "USDC")
        await post(
            uow,
            kind=TransactionKind.CHARGE.value,
            reference=ref,
            legs=[debit(wallet, amount), credit(revenue, amount)],
            currency="USDC",
            amount=amount,
            agent_id=agent_id,
            tool=tool,
        )
        await uow.commit()


def _rows(html: str, table: str) -> list[str]:
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    rows = body.split("<tr")[2:]
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", "<tr" + row)).strip() for row in rows]


async def test_the_console_shows_the_ledger_the_deposits_and_retries_a_failed_webhook(
    console: Console,
) -> None:
    db, http, settings = console.db, console.http, console.settings
    rich, _ = await make_agent(db, settings, funds=10_000_000)
    other, _ = await make_agent(db, settings, funds=10_000_000)
    await _charge(db, rich, "search-specialists", 10_000, "c1")
    await _charge(db, rich, "search-specialists", 10_000, "c2")
    await _charge(db, other, "view-profile", 20_000, "c3")
    async with db.uow() as uow:
        now = uow.clock.now()
        for i, status in enumerate([DepositStatus.PENDING, DepositStatus.CREDITED]):
            uow.session.add(
                Deposit(
                    network="eip155:31337",
                    tx_hash=f"0x{i + 7:064x}",
                    position=0,
                    agent_id=rich,
                    address="0x" + "cd" * 20,
                    currency="USDC",
                    amount=2_500_000,
                    block_number=40 + i,
                    block_hash=f"0x{i:064x}",
                    status=status.value,
                    seen_at=now,
                )
            )
        event_id = await emit(uow, type=BALANCE_LOW, agent_id=rich, data={"balance": "0.01"})
        await uow.commit()
    async with db.uow() as uow:
        event = await uow.session.scalar(
            select(OutboxEvent).where(OutboxEvent.event_id == event_id)
        )
        assert event is not None
        event.status, event.attempts, event.last_status_code = OutboxStatus.FAILED.value, 3, 503
        await change_status(uow, other, StatusAction.SUSPEND, actor="cli:ops", reason="chargeback")
        await uow.commit()

    # Not for owners, nor for anyone signed out.
    token, csrf = await console.session_for(OPERATOR)
    assert (await http.get("/operator", headers={"Accept": "text/html"})).status_code in (
        303,
        401,
    )
    http.cookies.set(SESSION_COOKIE, token)

    page = await http.get("/operator")
    assert page.status_code == 200, page.text
    day = now.strftime("%Y-%m-%d")
    revenue = _rows(page.text, "revenue")
    assert f"{day} search-specialists 2 0.02 USDC" in revenue
    assert f"{day} view-profile 1 0.02 USDC" in revenue
    assert len(revenue) == 2
    waiting = _rows(page.text, "waiting-deposits")
    assert len(waiting) == 1 and "2.50 USDC" in waiting[0] and "block 40" in waiting[0]
    failed = _rows(page.text, "failed-webhooks")
    assert len(failed) == 1 and event_id in failed[0] and "HTTP 503" in failed[0]
    assert 'href="/operator/disputes"' in page.text
    assert 'href="/operator/withdrawals"' in page.text

    # Retry: the event is pending again with its attempts counted afresh; a second retry of
    # the same form finds nothing failed and changes nothing.
    retried = await http.post(
        f"/operator/webhooks/{event_id}/retry", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert retried.status_code == 303
    async with db.uow() as uow:
        event = await uow.session.scalar(
            select(OutboxEvent).where(OutboxEvent.event_id == event_id)
        )
        assert event is not None
        assert (event.status, event.attempts) == (OutboxStatus.PENDING.value, 0)
        assert event.next_attempt_at <= uow.clock.now()
    again = await http.post(
        f"/operator/webhooks/{event_id}/retry",
        data={"csrf_token": csrf},
        headers={"Accept": "application/json"},
    )
    assert again.status_code == 404
    assert "retried or delivered already" in again.text
    forged = await http.post(f"/operator/webhooks/{event_id}/retry", data={"csrf_token": "x"})
    assert forged.status_code in (400, 403)
    page = await http.get("/operator")
    assert 'id="failed-webhooks"' not in page.text

    # Search by any part of the name or email, in any case; the filter by status still holds.
    async with db.uow() as uow:
        emails = {a: (await uow.session.get(Agent, a)).email for a in (rich, other)}  # type: ignore[union-attr]
        await uow.commit()
    found = await http.get("/operator/agents", params={"q": emails[other][6:14].upper()})
    assert f'data-id="{other}"' in found.text and f'data-id="{rich}"' not in found.text
    none = await http.get("/operator/agents", params={"q": "%"})
    assert 'id="operator-agents"' not in none.text
    suspended = await http.get("/operator/agents", params={"q": "agent-", "status": "suspended"})
    assert f'data-id="{other}"' in suspended.text and f'data-id="{rich}"' not in suspended.text

    # One agent's detail: history, balances, deposits, usage-free agent, key.
    detail = await http.get(f"/operator/agents/{other}")
    assert detail.status_code == 200
    history = _rows(detail.text, "status-history")
    assert len(history) == 1 and "active → suspended" in history[0] and "chargeback" in history[0]
    assert "9.98 USDC" in re.sub(r"<[^>]+>", "", detail.text)
    rich_page = await http.get(f"/operator/agents/{rich}")
    deposits = _rows(rich_page.text, "agent-deposits")
    assert len(deposits) == 2 and any("pending" in d for d in deposits)
    assert (
        await http.get("/operator/agents/999999", headers={"Accept": "text/html"})
    ).status_code == 404


async def test_owners_cannot_open_the_console(console: Console) -> None:
    agent_id, _ = await make_agent(console.db, console.settings)
    async with console.db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        agent.owner_email = "owner@example.com"
        await uow.commit()
    token, csrf = await console.session_for("owner@example.com")
    console.http.cookies.set(SESSION_COOKIE, token)
    for path in ("/operator", f"/operator/agents/{agent_id}"):
        assert (await console.http.get(path)).status_code == 403, path
    refused = await console.http.post("/operator/webhooks/evt_x/retry", data={"csrf_token": csrf})
    assert refused.status_code == 403


async def test_the_agent_page_lists_the_keys_issued_and_revoked(
    console: Console, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    http, db, settings = console.http, console.db, console.settings
    registered = await http.post(
        "/api/agent/register", json={"name": "Key keeper", "email": "keeper@example.com"}
    )
    assert registered.status_code == 201, registered.text
    first = registered.json()["api_key"]
    agent_id = registered.json()["agent_id"]
    async with db.uow() as uow:
        keys = (
            await uow.session.scalars(select(AgentKey).where(AgentKey.agent_id == agent_id))
        ).all()
        assert [(k.prefix, k.issued_by, k.revoked_at) for k in keys] == [
            (shown_prefix(first), "registration", None)
        ]
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        agent.owner_email = "keeper-owner@example.com"
        await uow.commit()

    rotated = await http.post(
        "/api/agent/regenerate-key", headers={"Authorization": f"Bearer {first}"}
    )
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["api_key"]
    assert rotated.json()["api_key_prefix"] == shown_prefix(second)

    token, csrf = await console.session_for("keeper-owner@example.com")
    http.cookies.set(SESSION_COOKIE, token)
    page = await http.post(
        f"/agents/{agent_id}/key",
        data={"csrf_token": csrf, "replaces": shown_prefix(second)},
    )
    assert page.status_code == 200, page.text
    third = re.search(r'id="new-key"[^>]*value="([^"]+)"', page.text)
    assert third is not None
    third_key = third.group(1)
    again = await http.post(
        f"/agents/{agent_id}/key",
        data={"csrf_token": csrf, "replaces": shown_prefix(second)},
        follow_redirects=False,
    )
    assert again.status_code == 303  # the form sent twice keeps the key it made

    async with db.uow() as uow:
        keys = (
            await uow.session.scalars(
                select(AgentKey).where(AgentKey.agent_id == agent_id).order_by(AgentKey.id)
            )
        ).all()
        hash_now = (await uow.session.get(Agent, agent_id)).api_key_hash  # type: ignore[union-attr]
        await uow.commit()
    assert [(k.prefix, k.issued_by, k.revoked_reason) for k in keys] == [
        (shown_prefix(first), "registration", "regenerated"),
        (shown_prefix(second), "owner", "regenerated"),
        (shown_prefix(third_key), "owner", None),
    ]
    assert keys[0].revoked_at == keys[1].issued_at and keys[1].revoked_at == keys[2].issued_at
    assert keys[2].revoked_at is None

    token, _ = await console.session_for(OPERATOR)
    http.cookies.set(SESSION_COOKIE, token)
    detail = await http.get(f"/operator/agents/{agent_id}")
    assert detail.status_code == 200
    rows = _rows(detail.text, "agent-keys")
    assert len(rows) == 3
    assert rows[0].startswith(shown_prefix(third_key)) and "owner" in rows[0]
    assert "in use" in rows[0]
    assert rows[1].startswith(shown_prefix(second)) and rows[1].endswith("regenerated")
    assert rows[2].startswith(shown_prefix(first)) and "registration" in rows[2]
    assert rows[2].endswith("regenerated")
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    for secret in (first, second, third_key, hash_now, hash_api_key(settings, first)):
        assert secret not in detail.text and secret not in logged

    # Closing the account revokes the live key.
    await delete_agent(db.uow(), agent_id)
    closed = _rows((await http.get(f"/operator/agents/{agent_id}")).text, "agent-keys")
    assert len(closed) == 3 and closed[0].endswith("closed") and "in use" not in closed[0]
