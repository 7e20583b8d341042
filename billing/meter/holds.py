"""Holds: a side-effecting call's price reserved before it runs (TigerBeetle's two-phase
transfer), then captured on success or released on failure.

    hold:     wallet -> holds, in a committed transaction of its own (``place_hold``)
    capture:  holds -> revenue (the fee), holds -> escrow (the slot price, when the operation
              escrowed it), any rest back to the wallet, in the operation's transaction
    release:  holds -> wallet, in its own transaction (``release_hold``)

A hold left pending by a crashed process is released by ``release_stale_holds``.
"""

from __future__ import annotations

from datetime import timedelta

import anyio
from sqlalchemy import Table, bindparam, insert, select, update

from agent_server.kernel.errors import InsufficientFunds
from agent_server.kernel.store import (
    Database,
    Direct,
    UnitOfWork,
    column_binds,
    direct_execute,
    direct_rows,
)
from billing.caps import add_spending, return_spending
from billing.config import BillingConfig
from billing.ledger import AccountRef, credit, debit, post, system_account
from billing.meter.admission import Admission
from billing.meter.calls import MeteredCall, Receipt
from billing.meter.payers import choose_payer, insufficient_funds
from billing.models import AccountKind, Hold, HoldStatus, LedgerAccount, TransactionKind

_ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[assignment]
_HOLDS: Table = Hold.__table__  # type: ignore[assignment]

_INSERT_HOLD = Direct(
    insert(_HOLDS)
    .values(column_binds(_HOLDS, (c.name for c in _HOLDS.c if c.name not in ("id", "settled_at"))))
    .returning(_HOLDS.c.id)
)

RACE_ATTEMPTS = 2
"""How often a call whose chosen wallet was emptied under it starts over (fresh balances)."""


class LostRace(Exception):
    """The chosen wallet was spent by a concurrent call between reading and debiting it."""


class HoldLost(Exception):
    """The sweeper released the call's hold while its operation ran (stale_hold_after passed)."""


async def place_hold(
    db: Database,
    admission: Admission,
    *,
    call_id: str,
    fee_usd_micros: int,
    config: BillingConfig,
) -> Hold:
    """Reserve the call's whole price, its fee plus ``admission.extra_price``, in its own
    committed transaction (wallet -> holds)."""
    for _ in range(RACE_ATTEMPTS):
        try:
            async with db.uow() as uow:
                hold = await hold_in(
                    uow, admission, call_id=call_id, fee_usd_micros=fee_usd_micros, config=config
                )
                await uow.commit()
                return hold
        except LostRace:
            continue
    raise await outbid(db, admission, fee_usd_micros, config)


async def outbid(
    db: Database, admission: Admission, fee_usd_micros: int, config: BillingConfig
) -> InsufficientFunds:
    """The refusal of a call whose hold lost the race for its wallet every time
    (``RACE_ATTEMPTS``): insufficient funds, as the wallets stand now."""
    async with db.uow() as uow:
        return await insufficient_funds(
            uow,
            admission.agent_id,
            admission.tool,
            fee_usd_micros,
            admission.extra_price,
            config,
        )


async def hold_in(
    uow: UnitOfWork,
    admission: Admission,
    *,
    call_id: str,
    fee_usd_micros: int,
    config: BillingConfig,
) -> Hold:
    """Reserve the call's whole price in ``uow`` (wallet -> holds), which the caller commits
    before the call's work begins. ``LostRace`` when a concurrent debit emptied the chosen
    wallet first: roll ``uow`` back and try again."""
    agent_id, tool = admission.agent_id, admission.tool
    payer = await choose_payer(uow, agent_id, tool, fee_usd_micros, admission.extra_price, config)
    wallet, priced = payer.wallet, payer.price
    now = uow.clock.now()
    await add_spending(uow, agent_id, priced.total_usd_micros, now, payer.caps)
    holds = await system_account(uow, AccountKind.HOLDS, wallet.currency)
    try:
        posted = await post(
            uow,
            kind=TransactionKind.HOLD,
            reference=f"hold:{call_id}",
            legs=[debit(wallet, priced.total), credit(holds, priced.total)],
            currency=wallet.currency,
            amount=priced.total,
            agent_id=agent_id,
            call_id=call_id,
            tool=tool,
            price_usd_micros=priced.total_usd_micros,
            rate=priced.rate,
            memo=f"hold for a {tool} call",
        )
    except InsufficientFunds:
        raise LostRace from None
    await admission.debited(
        uow,
        wallet,
        posted.balances,
        priced.total,
        priced.rate,
        config,
        payer.caps.balance_low if payer.caps else None,
    )
    values = {
        "call_id": call_id,
        "agent_id": agent_id,
        "tool": tool,
        "wallet_account_id": wallet.id,
        "currency": wallet.currency,
        "amount": priced.total,
        "fee_amount": priced.fee,
        "price_usd_micros": priced.total_usd_micros,
        "fee_usd_micros": priced.fee_usd_micros,
        "rate": priced.rate,
        "status": HoldStatus.PENDING.value,
        "hold_transaction_id": posted.transaction_id,
        "created_at": now,
    }
    ((hold_id,),) = await direct_rows(uow, _INSERT_HOLD, values)
    # Read by the rest of the call, never written through the session: a plain object.
    hold = Hold(**values)
    hold.id = int(hold_id)
    return hold


_SETTLE = Direct(
    update(_HOLDS)
    .where(
        _HOLDS.c.id == bindparam("hold_id"),
        _HOLDS.c.status == HoldStatus.PENDING.value,
    )
    .values(
        status=bindparam("status", type_=_HOLDS.c.status.type),
        settled_at=bindparam("at", type_=_HOLDS.c.settled_at.type),
    )
)


async def _settle_hold(uow: UnitOfWork, hold: Hold, status: HoldStatus) -> bool:
    """Move a pending hold to ``status``; False if it already left ``pending``."""
    moved = await direct_execute(
        uow, _SETTLE, {"hold_id": hold.id, "status": status.value, "at": uow.clock.now()}
    )
    return moved == 1


_BALANCE = Direct(select(_ACCOUNTS.c.balance).where(_ACCOUNTS.c.id == bindparam("account_id")))


async def _wallet_balance(uow: UnitOfWork, account_id: int) -> int:
    ((held,),) = await direct_rows(uow, _BALANCE, {"account_id": account_id})
    return int(held)


async def _return_to_wallet(uow: UnitOfWork, hold: Hold, amount: int, reference: str) -> None:
    holds = await system_account(uow, AccountKind.HOLDS, hold.currency)
    wallet = AccountRef(hold.wallet_account_id, AccountKind.WALLET, hold.currency)
    await post(
        uow,
        kind=TransactionKind.RELEASE,
        reference=reference,
        legs=[debit(holds, amount), credit(wallet, amount)],
        currency=hold.currency,
        amount=amount,
        agent_id=hold.agent_id,
        call_id=hold.call_id,
        tool=hold.tool,
        memo=f"release of the hold for a {hold.tool} call",
    )


async def capture(uow: UnitOfWork, call: MeteredCall, hold: Hold) -> tuple[Receipt, int | None]:
    """Turn the hold into the charge (and escrow), in the operation's transaction.

    ``HoldLost`` when the sweeper released the hold while the operation ran: the money is
    back in the wallet, and the operation's transaction must be rolled back."""
    if not await _settle_hold(uow, hold, HoldStatus.CAPTURED):
        raise HoldLost
    txn: int | None = None
    if hold.fee_amount:
        holds = await system_account(uow, AccountKind.HOLDS, hold.currency)
        revenue = await system_account(uow, AccountKind.REVENUE, hold.currency)
        posted = await post(
            uow,
            kind=TransactionKind.CHARGE,
            reference=f"charge:{call.call_id}",
            legs=[debit(holds, hold.fee_amount), credit(revenue, hold.fee_amount)],
            currency=hold.currency,
            amount=hold.fee_amount,
            agent_id=hold.agent_id,
            call_id=call.call_id,
            tool=call.tool,
            price_usd_micros=hold.fee_usd_micros,
            rate=hold.rate,
            memo=f"{call.tool} call",
        )
        txn = posted.transaction_id
    unused = hold.amount - hold.fee_amount - call.escrowed
    if unused > 0:
        await _return_to_wallet(uow, hold, unused, f"release:{call.call_id}")
        if call.escrowed == 0:
            unused_usd = hold.price_usd_micros - hold.fee_usd_micros
            await return_spending(uow, hold.agent_id, unused_usd, hold.created_at)
    receipt = Receipt(
        call_id=call.call_id,
        tool=call.tool,
        price_usd_micros=hold.fee_usd_micros,
        currency=hold.currency,
        amount=hold.fee_amount,
        balance_after=await _wallet_balance(uow, hold.wallet_account_id),
        rate=hold.rate,
        escrowed=call.escrowed,
    )
    return receipt, txn


async def release_hold(db: Database, hold: Hold) -> bool:
    """Give a pending hold back to its wallet (own transaction); False if already settled.

    Shielded from cancellation: it cleans up after calls that were stopped, often by a
    cancel scope (a client that went away), which would otherwise cancel its every await."""
    with anyio.CancelScope(shield=True):
        async with db.uow() as uow:
            released = await _settle_hold(uow, hold, HoldStatus.RELEASED)
            if released:
                await _return_to_wallet(uow, hold, hold.amount, f"release:{hold.call_id}")
                await return_spending(uow, hold.agent_id, hold.price_usd_micros, hold.created_at)
                await uow.commit()
    return released


async def release_stale_holds(db: Database, older_than: timedelta) -> int:
    """Release holds pending for longer than ``older_than`` (calls that crashed); how many."""
    async with db.uow() as uow:
        cutoff = uow.clock.now() - older_than
        stale = list(
            (
                await uow.session.execute(
                    select(Hold).where(
                        Hold.status == HoldStatus.PENDING.value, Hold.created_at < cutoff
                    )
                )
            ).scalars()
        )
        uow.session.expunge_all()  # keep them loaded when this read-only transaction ends
    released = 0
    for hold in stale:
        if await release_hold(db, hold):
            released += 1
    return released
