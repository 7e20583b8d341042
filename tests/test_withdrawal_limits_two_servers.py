"""An owner's daily withdrawal limit holds when one agent's requests race through two
``agent-server serve`` processes sharing one PostgreSQL database.

Twelve requests of 10 USDC against a limit of 25 USD, half to each server, half of those as the
MCP tool ``request-withdrawal`` over streamable HTTP and half as ``POST /api/agent/withdrawals``,
all sent at once: exactly two are placed, the other ten are refused with ``SPENDING_CAP``
naming the daily withdrawal limit, and the wallet and the pending-withdrawal account hold
exactly what the two moved (amount and fee, base units).

While they are sent, another transaction holds the withdrawal address's row, which every
request locks after it has checked the limit and before it commits; it lets go only once all
twelve are waiting in the database. So all twelve are in flight together, and a limit checked
without the caps row's lock (read, then write) would let every one of them through.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import httpx
import httpx2
import pytest
from billing_support import audit_ledger
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support import body, make_agent
from soak import PEPPER
from sqlalchemy import func, select, text
from two_servers import two_servers
from withdrawal_setup import ETH_ADDRESS, USDC, owner_set_limits, usdc_balance

from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from billing.ledger import account_balance_from_entries, system_account
from billing.models import AccountKind
from wallets.destinations import check_destination
from wallets.withdrawal_models import Withdrawal, WithdrawalAddress

N = 12
LIMIT = 25 * USDC  # USD micro-dollars; USDC is worth one USD on the servers' static rates
AMOUNT = 10 * USDC
PLACED = LIMIT // AMOUNT
FUNDS = 1_000 * USDC
WITHDRAWALS = "/api/agent/withdrawals"


@pytest.fixture(scope="module")
def served(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two serve processes on a PostgreSQL database of their own (``pg_url`` only decides
    whether PostgreSQL is there: skipped without it, failed under CI)."""
    logs = tmp_path_factory.mktemp("withdrawal-limits")
    # The held address row keeps the requests waiting a moment on purpose: no lock timeout
    # may end one of them on a busy machine.
    with two_servers(logs, AGENT_SERVER_DATABASE_LOCK_TIMEOUT="60") as served:
        yield served


@pytest.fixture
async def db(served: dict[str, Any]) -> AsyncIterator[Database]:
    database = Database(make_engine(served["url"]))
    yield database
    await database.dispose()


async def _usable_address(db: Database, settings: Settings, agent_id: int) -> int:
    """The agent's ETH_ADDRESS for USDC, confirmed by its owner and past its cooling-off."""
    dest = check_destination("USDC", ETH_ADDRESS, btc_network=settings.btc_network)
    async with db.uow() as uow:
        since = uow.clock.now() - timedelta(days=2)
        row = WithdrawalAddress(
            owner=f"agent:{agent_id}",
            agent_id=agent_id,
            currency="USDC",
            network=dest.network,
            address=dest.address,
            label="",
            code_tries=0,
            confirmed_at=since,
            usable_after=since + timedelta(days=1),
            created_at=since,
        )
        uow.session.add(row)
        await uow.flush()
        await uow.commit()
        return row.id


async def _waiting_on_locks(db: Database) -> int:
    async with db.engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        )
    return int(found or 0)


async def _pending(db: Database) -> int:
    """What the pending-withdrawal account holds in USDC (credits less debits)."""
    async with db.uow() as uow:
        account = await system_account(uow, AccountKind.WITHDRAWING, "USDC")
        held = await account_balance_from_entries(uow, account.id)
        await uow.commit()
    return held


def _outcome(reply: Any) -> tuple[str, dict[str, Any]]:
    """``placed`` with the withdrawal, or the error's code with the error, from an MCP
    result or a REST response alike."""
    if isinstance(reply, httpx.Response):
        data = reply.json()
        assert reply.status_code in (201, 402), (reply.status_code, data)
        if reply.status_code == 201:
            return "placed", data["withdrawal"]
        return str(data["error"]["code"]), data["error"]
    data = body(reply)
    if not reply.is_error:
        return "placed", data["withdrawal"]
    return str(data["error"]["code"]), data["error"]


@pytest.mark.postgres
async def test_twelve_requests_through_two_servers_pass_a_withdrawal_limit_once(
    served: dict[str, Any], db: Database
) -> None:
    settings = Settings(database_url=served["url"], secret_pepper=PEPPER)
    agent_id, key = await make_agent(db, settings, funds=FUNDS)
    await owner_set_limits(db, agent_id, withdraw_daily=LIMIT)
    address_id = await _usable_address(db, settings, agent_id)
    auth = {"Authorization": f"Bearer {key}"}
    bases: list[str] = served["bases"]

    async with AsyncExitStack() as stack:
        rest = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=b, headers=auth, timeout=60))
            for b in bases
        ]
        quoted = await rest[0].post(
            f"{WITHDRAWALS}/quote", json={"currency": "USDC", "amount": AMOUNT}
        )
        assert quoted.status_code == 200, quoted.text
        fee = int(quoted.json()["fee"]["amount"])
        assert fee > 0
        mcp = []
        for b in bases:
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=auth, timeout=60))
            mcp.append(
                await stack.enter_async_context(
                    Client(streamable_http_client(f"{b}/mcp", http_client=http))
                )
            )

        def send(i: int) -> Any:
            """Request i: to server i % 2, over MCP for i // 2 even and REST for odd."""
            ask = {
                "currency": "USDC",
                "amount": AMOUNT,
                "address": ETH_ADDRESS,
                "idempotency_key": f"two-servers-{i:02d}",
            }
            if (i // 2) % 2 == 0:
                return mcp[i % 2].call_tool("request-withdrawal", ask)
            return rest[i % 2].post(WITHDRAWALS, json=ask)

        async with db.uow() as holder:
            await holder.session.get(WithdrawalAddress, address_id, with_for_update=True)
            racing = asyncio.gather(*(send(i) for i in range(N)))
            waiting = 0
            for _ in range(300):
                waiting = await _waiting_on_locks(db)
                if waiting >= N:
                    break
                await asyncio.sleep(0.05)
            await holder.commit()
        replies = await racing
    # Every request reached the database and waited there while the others did too.
    assert waiting >= N, (waiting, replies)

    outcomes = [_outcome(r) for r in replies]
    placed = [w for code, w in outcomes if code == "placed"]
    refused = [e for code, e in outcomes if code != "placed"]
    assert len(placed) == PLACED, [code for code, _ in outcomes]
    assert {code for code, _ in outcomes} == {"placed", "SPENDING_CAP"}
    for error in refused:
        details = error["details"]
        assert details["limit"] == "daily_withdrawal_limit_usd_micros", error
        assert details["field"] == "amount"
        assert details["limit_usd_micros"] == LIMIT
        assert details["withdrawn_usd_micros"] == PLACED * AMOUNT
        assert details["remaining_usd_micros"] == LIMIT - PLACED * AMOUNT
    assert len({w["id"] for w in placed}) == PLACED
    assert {(w["status"], w["amount"]["amount"], w["fee"]["amount"]) for w in placed} == {
        ("approved", AMOUNT, fee)
    }

    moved = PLACED * (AMOUNT + fee)
    assert await usdc_balance(db, agent_id) == FUNDS - moved
    assert await _pending(db) == moved
    async with db.uow() as uow:
        rows = await uow.session.scalar(
            select(func.count()).select_from(Withdrawal).where(Withdrawal.agent_id == agent_id)
        )
        await uow.commit()
    assert rows == PLACED
    await audit_ledger(db)
