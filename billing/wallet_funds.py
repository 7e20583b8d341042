"""Money in and out of agent wallets from outside the tool calls: deposits, reversals, operator
adjustments, and balance look-ups. See the package docstring for the contract."""

from __future__ import annotations

import uuid

from sqlalchemy import BigInteger, String, Table, case, column, select, table

from agent_server.kernel.errors import InsufficientFunds, NotFound, ValidationFailed
from agent_server.kernel.store import UnitOfWork
from billing.ledger import (
    AccountRef,
    credit,
    debit,
    open_account,
    open_wallet,
    post,
    system_account,
)
from billing.models import AccountKind, LedgerAccount, LedgerTransaction, TransactionKind
from wallets.currencies import currency_info

_ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[assignment]
_TRANSACTIONS: Table = LedgerTransaction.__table__  # type: ignore[assignment]
# What billing reads about an agent, by column name: billing imports no accounts model.
_AGENTS = table("agents", column("id", BigInteger), column("currency", String))

DEPOSIT_PREFIX = "deposit:"
REVERSAL_PREFIX = "reversal:deposit:"


def _currency_code(code: str) -> str:
    return currency_info(code).code


async def credit_deposit(
    uow: UnitOfWork,
    *,
    agent_id: int,
    currency: str,
    amount: int,
    usd_micros: int,
    reference: str,
) -> int:
    """Credit a confirmed on-chain deposit to the agent's wallet; the ledger transaction id.

    Posts deposits clearing -> wallet. Idempotent by ``reference`` (e.g.
    ``"eth:1:0xabc...:3"``): crediting the same reference again moves nothing and returns the
    first transaction's id. ``usd_micros`` is the deposit's USD value at the moment of crediting.
    Does not commit.
    """
    code = _currency_code(currency)
    if amount <= 0:
        raise ValidationFailed.field("amount", "a deposit must be a positive number of base units")
    if usd_micros < 0:
        raise ValidationFailed.field("usd_micros", "a USD value cannot be negative")
    wallet = await open_wallet(uow, agent_id, code)
    clearing = await system_account(uow, AccountKind.DEPOSITS, code)
    posted = await post(
        uow,
        kind=TransactionKind.DEPOSIT,
        reference=DEPOSIT_PREFIX + reference,
        legs=[debit(clearing, amount), credit(wallet, amount)],
        currency=code,
        amount=amount,
        agent_id=agent_id,
        price_usd_micros=usd_micros,
        memo=f"deposit {reference}",
    )
    return posted.transaction_id


async def reverse_deposit(uow: UnitOfWork, *, reference: str, reason: str) -> int | None:
    """Reverse a credited deposit (e.g. reorged out of the chain); the reversal's id.

    Returns None if no deposit was credited under ``reference``; reversing twice returns the
    first reversal's id. The wallet gives back what it still holds, up to the deposit amount,
    and never goes below zero: if the agent already spent part of the deposit, the missing
    part is debited to the agent's receivable account (``receivable:agent:ID:CUR``), a record
    of what the agent owes for support to settle. Posts, in one transaction:
    wallet (debit, what is there) + receivable (debit, the shortfall) -> deposits clearing
    (credit, the whole deposit). Does not commit.
    """
    deposit = (
        await uow.session.execute(
            select(_TRANSACTIONS).where(
                _TRANSACTIONS.c.reference == DEPOSIT_PREFIX + reference,
                _TRANSACTIONS.c.kind == TransactionKind.DEPOSIT.value,
            )
        )
    ).first()
    if deposit is None:
        return None
    reversal_reference = REVERSAL_PREFIX + reference
    existing = (
        await uow.session.execute(
            select(_TRANSACTIONS.c.id).where(_TRANSACTIONS.c.reference == reversal_reference)
        )
    ).first()
    if existing is not None:
        return int(existing[0])
    agent_id = int(deposit.agent_id)
    code = str(deposit.currency)
    amount = int(deposit.amount)
    wallet = await open_wallet(uow, agent_id, code)
    # Lock the wallet row (PostgreSQL; SQLite's writer lock is already held) so the amount
    # taken back is exactly what the wallet holds when the reversal commits.
    held = (
        await uow.session.execute(
            select(_ACCOUNTS.c.balance).where(_ACCOUNTS.c.id == wallet.id).with_for_update()
        )
    ).scalar_one()
    from_wallet = min(amount, int(held))
    shortfall = amount - from_wallet
    clearing = await system_account(uow, AccountKind.DEPOSITS, code)
    legs = [credit(clearing, amount)]
    if from_wallet:
        legs.append(debit(wallet, from_wallet))
    if shortfall:
        receivable = await open_account(uow, AccountKind.RECEIVABLE, code, agent_id=agent_id)
        legs.append(debit(receivable, shortfall))
    posted = await post(
        uow,
        kind=TransactionKind.REVERSAL,
        reference=reversal_reference,
        legs=legs,
        currency=code,
        amount=amount,
        agent_id=agent_id,
        price_usd_micros=deposit.price_usd_micros,
        reverses_id=int(deposit.id),
        memo=f"reversal of deposit {reference}: {reason}"
        + (f" (shortfall {shortfall} recorded as receivable)" if shortfall else ""),
    )
    return posted.transaction_id


async def paying_wallets(uow: UnitOfWork, agent_id: int) -> list[tuple[AccountRef, int]]:
    """The agent's wallets and balances in paying order: the preferred currency
    (``agents.currency``) first, then the others in the order they were opened."""
    preferred = select(_AGENTS.c.currency).where(_AGENTS.c.id == agent_id).scalar_subquery()
    rows = await uow.session.execute(
        select(_ACCOUNTS.c.id, _ACCOUNTS.c.currency, _ACCOUNTS.c.balance)
        .where(
            _ACCOUNTS.c.agent_id == agent_id,
            _ACCOUNTS.c.kind == AccountKind.WALLET.value,
        )
        .order_by(case((_ACCOUNTS.c.currency == preferred, 0), else_=1), _ACCOUNTS.c.id)
    )
    return [
        (AccountRef(int(row.id), AccountKind.WALLET, str(row.currency)), int(row.balance))
        for row in rows
    ]


async def balances(uow: UnitOfWork, agent_id: int) -> dict[str, int]:
    """The agent's wallet balances by currency, in base units, in paying order."""
    return {ref.currency: held for ref, held in await paying_wallets(uow, agent_id)}


async def adjust_balance(
    uow: UnitOfWork,
    *,
    agent_id: int,
    currency: str,
    amount: int,
    reason: str,
    reference: str | None = None,
) -> int:
    """An operator credit (``amount`` > 0) or debit (``amount`` < 0) with a recorded reason.

    Posts adjustments <-> wallet; a debit never takes the wallet below zero
    (``InsufficientFunds``). Idempotent by ``reference`` when given. Returns the transaction id.
    Does not commit.
    """
    code = _currency_code(currency)
    if amount == 0:
        raise ValidationFailed.field("amount", "give a non-zero amount")
    if not reason.strip():
        raise ValidationFailed.field("reason", "say why the balance is adjusted")
    known = await uow.session.execute(select(_AGENTS.c.id).where(_AGENTS.c.id == agent_id))
    if known.first() is None:
        raise NotFound(f"no agent with id {agent_id}")
    wallet = await open_wallet(uow, agent_id, code)
    adjustments = await system_account(uow, AccountKind.ADJUSTMENTS, code)
    size = abs(amount)
    legs = (
        [debit(adjustments, size), credit(wallet, size)]
        if amount > 0
        else [debit(wallet, size), credit(adjustments, size)]
    )
    try:
        posted = await post(
            uow,
            kind=TransactionKind.ADJUSTMENT,
            reference=reference or f"adjustment:{uuid.uuid4().hex}",
            legs=legs,
            currency=code,
            amount=size,
            agent_id=agent_id,
            memo=reason.strip(),
        )
    except InsufficientFunds as exc:
        held = (await balances(uow, agent_id)).get(code, 0)
        raise InsufficientFunds(
            f"The {code} wallet holds {held}, less than the {size} to debit.",
            {"currency": code, "balance": held, "amount": size},
        ) from exc
    return posted.transaction_id
