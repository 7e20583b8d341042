"""Helpers shared by the billing tests: agents, funding, deposits and ledger audits."""

from __future__ import annotations

import secrets
from collections import defaultdict

from sqlalchemy import func, select

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.kernel.store import Database
from billing.models import AccountKind, LedgerAccount, LedgerEntry
from billing.wallet_funds import adjust_balance
from wallets.models import Deposit, DepositStatus


async def make_agent(db: Database, *, currency: str | None = None, name: str = "agent") -> int:
    """An active, verified agent; its id."""
    async with db.uow() as uow:
        now = uow.clock.now()
        token = secrets.token_hex(8)
        agent = Agent(
            name=name,
            email=f"{name}-{token}@example.com",
            email_verified=True,
            status=AgentStatus.ACTIVE.value,
            api_key_hash=secrets.token_hex(32),
            api_key_prefix="as_" + token[:6],
            profile={},
            created_at=now,
            updated_at=now,
        )
        if currency is not None:
            agent.currency = currency
        uow.session.add(agent)
        await uow.flush()
        await uow.commit()
        return agent.id


async def fund(db: Database, agent_id: int, currency: str, amount: int) -> None:
    """An operator credit of ``amount`` base units."""
    async with db.uow() as uow:
        await adjust_balance(
            uow, agent_id=agent_id, currency=currency, amount=amount, reason="test funding"
        )
        await uow.commit()


async def audit_ledger(db: Database) -> None:
    """Every transaction sums to zero per currency and every wallet's cached balance equals
    the sum of its entries."""
    async with db.uow() as uow:
        sums = await uow.session.execute(
            select(
                LedgerEntry.transaction_id,
                LedgerEntry.currency,
                func.sum(LedgerEntry.debit) - func.sum(LedgerEntry.credit),
            ).group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
        )
        unbalanced = [row for row in sums if row[2] != 0]
        assert unbalanced == []
        per_account: dict[int, int] = defaultdict(int)
        for account_id, net in await uow.session.execute(
            select(
                LedgerEntry.account_id, func.sum(LedgerEntry.credit) - func.sum(LedgerEntry.debit)
            ).group_by(LedgerEntry.account_id)
        ):
            per_account[account_id] = int(net)
        wallets = (
            await uow.session.execute(
                select(LedgerAccount).where(LedgerAccount.kind == AccountKind.WALLET.value)
            )
        ).scalars()
        for wallet in wallets:
            assert wallet.balance is not None and wallet.balance >= 0
            assert wallet.balance == per_account[wallet.id], wallet.key


async def make_schedule(
    db: Database,
    *,
    price_amount: int = 0,
    price_currency: str = "USD",
    capacity: int = 1,
    auto_accept: bool = True,
) -> int:
    """A specialist's schedule open 09:00-17:00 UTC every day, hourly slots; its id."""
    from datetime import date

    from agent_server.booking.models import Schedule, Specialist

    async with db.uow() as uow:
        now = uow.clock.now()
        specialist = Specialist(
            name="Ada Specialist",
            timezone="UTC",
            email=f"ada-{secrets.token_hex(6)}@example.com",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(specialist)
        await uow.flush()
        hours = {
            day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        }
        schedule = Schedule(
            specialist_id=specialist.id,
            timezone="UTC",
            weekly_hours=hours,
            start_date=date(2026, 1, 1),
            slot_minutes=60,
            price_amount=price_amount,
            price_currency=price_currency,
            price_usd_micros=price_amount if price_currency == "USD" else 0,
            capacity=capacity,
            auto_accept=auto_accept,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(schedule)
        await uow.flush()
        await uow.commit()
        return schedule.id


async def count_rows(db: Database) -> dict[str, int]:
    """Rows in every billing table, to prove that a refused call wrote nothing."""
    from billing.models import (
        Escrow,
        FreeQuotaUse,
        Hold,
        IdempotencyKey,
        LedgerTransaction,
        UsageRecord,
    )

    counts = {}
    async with db.uow() as uow:
        for model in (
            LedgerTransaction,
            LedgerEntry,
            Hold,
            Escrow,
            UsageRecord,
            FreeQuotaUse,
            IdempotencyKey,
            LedgerAccount,
        ):
            counts[model.__tablename__] = (
                await uow.session.execute(select(func.count()).select_from(model))
            ).scalar_one()
    return counts


async def wallet_balance(db: Database, agent_id: int, currency: str) -> int:
    from billing.wallet_funds import balances

    async with db.uow() as uow:
        return (await balances(uow, agent_id)).get(currency, 0)


async def pending_deposit(db: Database, agent: int, currency: str, amount: int) -> Deposit:
    """A deposit seen on chain (``amount`` in the chain's unit), waiting for confirmations."""
    async with db.uow() as uow:
        deposit = Deposit(
            network="eip155:31337",
            tx_hash="0x" + secrets.token_hex(32),
            position=0,
            agent_id=agent,
            address="0x" + "11" * 20,
            currency=currency,
            amount=amount,
            block_number=12,
            block_hash="0x" + "cd" * 32,
            status=DepositStatus.PENDING.value,
            seen_at=uow.clock.now(),
        )
        uow.session.add(deposit)
        await uow.flush()
        await uow.commit()
    return deposit
