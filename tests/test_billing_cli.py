"""``agent-server admin credit|debit``: operator adjustments with a recorded reason."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from billing_support import make_agent, wallet_balance
from sqlalchemy import select, update

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.kernel.store import Database
from billing.models import LedgerTransaction

CLI = str(Path(sys.executable).with_name("agent-server"))


async def admin(database_url: str, *args: str) -> tuple[int, str]:
    env = dict(os.environ, AGENT_SERVER_DATABASE_URL=database_url, AGENT_SERVER_LOG_LEVEL="ERROR")
    process = await asyncio.create_subprocess_exec(
        CLI,
        "admin",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def test_an_operator_credits_and_debits_with_a_reason_and_never_overdraws(
    db: Database, database_url: str
) -> None:
    agent = await make_agent(db)
    async with db.uow() as uow:
        await uow.session.execute(
            update(Agent).where(Agent.id == agent).values(status=AgentStatus.PENDING_DEPOSIT.value)
        )
        await uow.commit()
    code, out = await admin(database_url, "credit", str(agent), "usdc", "25.5", "--reason", "promo")
    assert code == 0, out
    assert "credited 25.50 USDC" in out and "agent activated" in out
    code, out = await admin(
        database_url, "debit", str(agent), "USDC", "30", "--reason", "chargeback"
    )
    assert code == 1 and "error:" in out
    code, out = await admin(
        database_url, "debit", str(agent), "USDC", "0.5", "--reason", "chargeback", "--actor", "ops"
    )
    assert code == 0 and "balance 25.00 USDC" in out, out
    assert await wallet_balance(db, agent, "USDC") == 25_000_000
    async with db.uow() as uow:
        memos = (
            (
                await uow.session.execute(
                    select(LedgerTransaction.memo).order_by(LedgerTransaction.id)
                )
            )
            .scalars()
            .all()
        )
        status = (
            await uow.session.execute(select(Agent.status).where(Agent.id == agent))
        ).scalar_one()
    assert memos[0].startswith("promo (by ") and memos[1] == "chargeback (by ops)"
    assert status == AgentStatus.ACTIVE.value
