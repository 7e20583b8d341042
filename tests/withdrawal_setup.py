"""What the withdrawal tests share: amounts and addresses, a runtime whose mail reaches the
test's SMTP sink and whose network fees are fixed, the owner's mailed code, and earnings
owed to a provider."""

from __future__ import annotations

import asyncio
from typing import Any

from smtp_sink import SmtpSink

from agent_server.events.mail_delivery import MailSender
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.runtime import Runtime
from agent_server.services import limits
from billing.ledger import AccountRef, credit, debit, open_account, post, system_account
from billing.models import AccountKind, TransactionKind
from billing.wallet_funds import balances
from wallets.network_fees import FixedFees

USDC = 1_000_000
# 10 gwei x 65,000 gas = 650,000 gwei = 0.00065 ETH = 1.95 USD at 3,000 USD: 1.95 USDC.
TOKEN_FEE = 1_950_000
ETH_ADDRESS = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
OWNER = "owner@example.com"


def withdrawal_runtime(database_url: str, db: Database, sink: SmtpSink, **settings: Any) -> Runtime:
    """A runtime on ``db`` mailing through ``sink``, with gas at 10 gwei and 5 sat/vB."""
    runtime = Runtime(
        settings=Settings(database_url=database_url, smtp_url=sink.url, **settings), db=db
    )
    runtime.network_fees = FixedFees(gas_price_wei=10 * 10**9, btc_sat_per_vbyte=5)
    return runtime


async def owner_set_limits(db: Database, agent_id: int, **values: int | None) -> None:
    """Set the agent's limits as its signed-in owner would (``daily``, ``withdraw_daily``...),
    committed."""
    async with db.uow() as uow:
        await limits.owner_set(
            uow,
            agent_id,
            limits.Change(**values, given=frozenset(values)),
        )
        await uow.commit()


async def usdc_balance(db: Database, agent_id: int) -> int:
    """The agent's USDC wallet balance in base units (0 without one)."""
    async with db.uow() as uow:
        return (await balances(uow, agent_id)).get("USDC", 0)


async def mailed_code(runtime: Runtime, sink: SmtpSink, email: str) -> str:
    """Send the queued mail, then the code in the newest message to ``email``."""
    assert await MailSender(runtime.db, runtime.settings).run_once() >= 1
    return await asyncio.to_thread(sink.latest_code, email)


async def credit_earnings(
    uow: UnitOfWork,
    amount: int,
    *,
    specialist_id: int | None = None,
    agent_id: int | None = None,
    reference: str = "test:earned",
) -> AccountRef:
    """``amount`` USDC owed to a specialist or a provider agent, as paid-out sessions leave
    it: moved from revenue to their payable account (returned), in the caller's
    transaction."""
    payable = await open_account(
        uow, AccountKind.PAYABLE, "USDC", specialist_id=specialist_id, agent_id=agent_id
    )
    revenue = await system_account(uow, AccountKind.REVENUE, "USDC")
    await post(
        uow,
        kind=TransactionKind.PAYOUT,
        reference=reference,
        legs=[debit(revenue, amount), credit(payable, amount)],
        currency="USDC",
        amount=amount,
    )
    return payable
