"""The ledger: deposits credited once, reversals that never overdraw, and a database that
refuses unbalanced or edited transactions."""

from __future__ import annotations

from typing import Any

import pytest
from billing_support import audit_ledger, fund, make_agent
from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from agent_server.kernel.errors import InsufficientFunds, ValidationFailed
from agent_server.kernel.store import Database
from billing import adjust_balance, balances, credit_deposit, open_wallet, reverse_deposit
from billing.ledger import LedgerError, credit, debit, post, system_account
from billing.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction


async def test_a_deposit_is_credited_once_however_often_it_is_reported(db: Database) -> None:
    agent = await make_agent(db)
    ids = []
    for _ in range(3):
        async with db.uow() as uow:
            ids.append(
                await credit_deposit(
                    uow,
                    agent_id=agent,
                    currency="USDC",
                    amount=25_000_000,
                    usd_micros=25_000_000,
                    reference="eth:1:0xabc:0",
                )
            )
            await uow.commit()
    assert len(set(ids)) == 1
    async with db.uow() as uow:
        assert await balances(uow, agent) == {"USDC": 25_000_000}
    await audit_ledger(db)


async def test_reversing_a_spent_deposit_records_the_shortfall_without_overdrawing(
    db: Database,
) -> None:
    agent = await make_agent(db)
    async with db.uow() as uow:
        await credit_deposit(
            uow,
            agent_id=agent,
            currency="USDT",
            amount=10_000_000,
            usd_micros=10_000_000,
            reference="r1",
        )
        await uow.commit()
    async with db.uow() as uow:  # the agent spends 7 USDT
        await adjust_balance(
            uow, agent_id=agent, currency="USDT", amount=-7_000_000, reason="spent"
        )
        await uow.commit()
    async with db.uow() as uow:
        reversal = await reverse_deposit(uow, reference="r1", reason="reorg")
        again = await reverse_deposit(uow, reference="r1", reason="reorg")
        missing = await reverse_deposit(uow, reference="never-credited", reason="reorg")
        await uow.commit()
    assert reversal is not None and again == reversal and missing is None
    async with db.uow() as uow:
        assert await balances(uow, agent) == {"USDT": 0}
        receivable = await system_account(uow, AccountKind.DEPOSITS, "USDT")
        legs = (
            await uow.session.execute(
                select(LedgerEntry.account_id, LedgerEntry.debit, LedgerEntry.credit).where(
                    LedgerEntry.transaction_id == reversal
                )
            )
        ).all()
        kind = (
            await uow.session.execute(
                select(LedgerTransaction.kind).where(LedgerTransaction.id == reversal)
            )
        ).scalar_one()
    assert kind == "reversal"
    assert sorted((d, c) for _, d, c in legs) == [(0, 10_000_000), (3_000_000, 0), (7_000_000, 0)]
    assert receivable.id in {a for a, _, _ in legs}
    await audit_ledger(db)


async def test_an_operator_debit_never_overdraws(db: Database) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "BTC", 1000)
    with pytest.raises(InsufficientFunds) as refused:
        async with db.uow() as uow:
            await adjust_balance(uow, agent_id=agent, currency="BTC", amount=-1001, reason="x")
    assert refused.value.details["balance"] == 1000
    with pytest.raises(ValidationFailed):
        async with db.uow() as uow:
            await adjust_balance(uow, agent_id=agent, currency="DOGE", amount=5, reason="x")
    async with db.uow() as uow:
        assert await balances(uow, agent) == {"BTC": 1000}
    await audit_ledger(db)


async def test_account_ids_are_remembered_only_once_committed(db: Database) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    async with db.uow() as uow:
        await system_account(uow, AccountKind.REVENUE, "ETH")
        # Never committed: the account and its id are gone with the rollback.
    async with db.uow() as uow:
        revenue = await system_account(uow, AccountKind.REVENUE, "ETH")
        key = await uow.session.scalar(
            select(LedgerAccount.key).where(LedgerAccount.id == revenue.id)
        )
        await uow.commit()
    assert key == "revenue:ETH"
    async with db.uow() as uow:
        assert await system_account(uow, AccountKind.REVENUE, "ETH") == revenue
    event.listen(Engine, "before_cursor_execute", count)
    try:
        async with db.uow() as uow:
            assert await system_account(uow, AccountKind.REVENUE, "ETH") == revenue
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert statements == []


async def test_posting_refuses_unbalanced_legs_before_writing(db: Database) -> None:
    agent = await make_agent(db)
    async with db.uow() as uow:
        wallet = await open_wallet(uow, agent, "ETH")
        revenue = await system_account(uow, AccountKind.REVENUE, "ETH")
        with pytest.raises(LedgerError):
            await post(
                uow,
                kind="charge",
                reference="x",
                legs=[debit(wallet, 5), credit(revenue, 4)],
                currency="ETH",
                amount=5,
            )
        count = (await uow.session.execute(select(func.count(LedgerTransaction.id)))).scalar()
    assert count == 0


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=False)
async def test_postgres_itself_refuses_an_unbalanced_transaction(db: Database) -> None:
    agent = await make_agent(db)
    async with db.uow() as uow:
        wallet = await open_wallet(uow, agent, "ETH")
        revenue = await system_account(uow, AccountKind.REVENUE, "ETH")
        await uow.commit()
    insert_txn = text(
        "INSERT INTO ledger_transactions (kind, reference, currency, amount, memo, created_at) "
        "VALUES ('charge', :ref, 'ETH', 5, '', now()) RETURNING id"
    )
    insert_entry = text(
        "INSERT INTO ledger_entries (transaction_id, account_id, currency, debit, credit) "
        "VALUES (:t, :a, 'ETH', :d, :c)"
    )
    with pytest.raises(DBAPIError, match="does not balance"):
        async with db.engine.begin() as conn:
            txn = (await conn.execute(insert_txn, {"ref": "raw-1"})).scalar_one()
            await conn.execute(insert_entry, {"t": txn, "a": wallet.id, "d": 5, "c": 0})
            await conn.execute(insert_entry, {"t": txn, "a": revenue.id, "d": 0, "c": 4})
    with pytest.raises(DBAPIError, match="has no entries"):
        async with db.engine.begin() as conn:
            await conn.execute(insert_txn, {"ref": "raw-2"})
    # A balanced one passes.
    async with db.engine.begin() as conn:
        txn = (await conn.execute(insert_txn, {"ref": "raw-3"})).scalar_one()
        await conn.execute(insert_entry, {"t": txn, "a": revenue.id, "d": 5, "c": 0})
        await conn.execute(insert_entry, {"t": txn, "a": revenue.id, "d": 0, "c": 5})
    async with db.uow() as uow:
        refs = (await uow.session.execute(select(LedgerTransaction.reference))).scalars().all()
    assert refs == ["raw-3"]


async def test_ledger_rows_cannot_be_edited_or_deleted(db: Database) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 5_000_000)
    for statement in (
        "UPDATE ledger_entries SET credit = credit + 1",
        "DELETE FROM ledger_entries",
        "UPDATE ledger_transactions SET amount = 1",
        "DELETE FROM ledger_transactions",
    ):
        with pytest.raises((DBAPIError, IntegrityError), match="append-only"):
            async with db.engine.begin() as conn:
                await conn.execute(text(statement))
    await audit_ledger(db)


async def test_an_entry_must_match_its_account_currency(db: Database) -> None:
    agent = await make_agent(db)
    async with db.uow() as uow:
        wallet = await open_wallet(uow, agent, "ETH")
        await uow.commit()
    with pytest.raises(IntegrityError):
        async with db.engine.begin() as conn:
            txn = (
                await conn.execute(
                    text(
                        "INSERT INTO ledger_transactions (kind, reference, currency, amount, memo,"
                        " created_at) VALUES ('charge', 'c', 'BTC', 5, '', '2026-01-01') "
                        "RETURNING id"
                    )
                )
            ).scalar_one()
            await conn.execute(
                text(
                    "INSERT INTO ledger_entries (transaction_id, account_id, currency, debit, "
                    "credit) VALUES (:t, :a, 'BTC', 5, 0)"
                ),
                {"t": txn, "a": wallet.id},
            )


async def test_a_posting_stores_its_time_as_every_other_timestamp(db: Database) -> None:
    # SQLite postings bypass the session; a whole-second time was stored without its
    # ".000000", so it sorted before the same instant written by SQLAlchemy.
    agent = await make_agent(db)  # created_at: the clock's whole-second time
    await fund(db, agent, "USDC", 1_000)
    async with db.uow() as uow:
        posted = (
            await uow.session.execute(text("SELECT created_at FROM ledger_transactions"))
        ).scalar_one()
        created = (
            await uow.session.execute(
                text("SELECT created_at FROM agents WHERE id = :id"), {"id": agent}
            )
        ).scalar_one()
        at = (await uow.session.execute(select(LedgerTransaction.created_at))).scalar_one()
    assert posted == created
    assert at == db.clock.now()
