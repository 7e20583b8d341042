"""Escrow of booking slot prices: held at booking, refunded by policy, or paid out.

All three take an entered unit of work holding the booking change and do not commit, so the
money moves in the same database transaction as the booking's status. Each is idempotent per
booking (one escrow row per booking, settled once by a conditional update, and ledger
references ``escrow:booking:ID``, ``refund:booking:ID``, ``payout:booking:ID``).

The booking comes as billing's own ``BookingTerms`` (``billing.terms``), built by the service
layer: billing reads no booking table.

Refund policy (``BookingPolicy``, from the price list):

* the specialist or the system cancelled, or the booking was rejected: 100 % back;
* the agent cancelled at least ``full_refund_before`` (24 h) before the start: 100 % back;
  "the start" is the booking's ``refund_anchor_at``, the slot start it was paid for: a
  reschedule keeps the earlier of that and the new slot's start, so moving a booking later
  never widens the window and moving it earlier can only shorten it;
* the agent cancelled later: ``late_refund_percent`` (50 %) back, rounded up in the agent's
  favour; the rest goes to the payee as a late-cancellation fee, less the commission.

When the escrow is released (by the booking clock, once the dispute window after a completed
session passed) the payee (the specialist, or the agent that owns the schedule) is credited
the slot price less ``commission_percent`` (10 %, rounded down in the payee's favour), which
goes to platform revenue. A disputed booking is settled as the operator decides
(``settle_dispute``): a refund of any part, the rest to the payee less the commission on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, select, update

from agent_server.kernel.store import Direct, UnitOfWork, direct_rows
from billing.caps import refunded_usd, return_spending
from billing.ledger import (
    AccountRef,
    LedgerError,
    Leg,
    Posted,
    credit,
    debit,
    insert_or_none,
    open_account,
    open_wallet,
    post,
    system_account,
)
from billing.models import AccountKind, Escrow, EscrowStatus, Hold, TransactionKind
from billing.prices import BookingPolicy
from billing.terms import BookedSlot, BookingTerms, EndedBy

_ESCROWS: Table = Escrow.__table__  # type: ignore[assignment]
_ESCROW_POSTING = Direct(
    select(_ESCROWS.c.escrow_transaction_id).where(_ESCROWS.c.booking_id == bindparam("booking_id"))
)
"""The ledger transaction of a booking's escrow, if it has one."""


class EscrowAlreadySettled(LedgerError):
    """A refund was asked for a paid-out escrow, or a payout for a refunded one."""


@dataclass(frozen=True)
class Settlement:
    """Where a booking's escrow went, in base units of ``currency``."""

    booking_id: int
    transaction_id: int
    status: EscrowStatus
    currency: str
    amount: int
    refunded: int
    paid_to_payee: int
    commission: int


def refund_percent(booking: BookingTerms, policy: BookingPolicy, at: datetime) -> int:
    """The share of the slot price the agent gets back for this cancellation or rejection."""
    if booking.ended_by in (EndedBy.PROVIDER, EndedBy.SYSTEM):
        return 100
    anchor = booking.refund_anchor_at or booking.slot_start
    if anchor - at >= policy.full_refund_before:
        return 100
    return policy.late_refund_percent


@dataclass(frozen=True)
class RefundQuote:
    """What cancelling a booking now would give back, in base units of ``currency``."""

    currency: str
    escrowed: int
    refund: int
    full_refund_until: datetime
    """The moment the booker's full refund ends (the refund anchor less the notice)."""


async def refund_quote(
    uow: UnitOfWork, booking: BookingTerms, policy: BookingPolicy, at: datetime
) -> RefundQuote | None:
    """The refund a cancellation at ``at`` would bring, as ``refund_booking`` would compute
    it; None when no escrow is held for the booking (free, or already settled)."""
    escrow = await _escrow_of(uow, booking.id)
    if escrow is None or escrow.status != EscrowStatus.HELD.value:
        return None
    percent = refund_percent(booking, policy, at)
    anchor = booking.refund_anchor_at or booking.slot_start
    return RefundQuote(
        currency=escrow.currency,
        escrowed=escrow.amount,
        refund=-(-escrow.amount * percent // 100),
        full_refund_until=anchor - policy.full_refund_before,
    )


async def escrow_booking(
    uow: UnitOfWork,
    booking: BookedSlot,
    *,
    amount: int,
    currency: str,
    price_usd_micros: int,
    rate: int,
    hold: Hold | None = None,
) -> int | None:
    """Move the slot price into escrow; the ledger transaction id (None for a free slot).

    From ``hold`` when the meter reserved it, else straight from the booker's wallet
    (``InsufficientFunds`` if it cannot cover it). Idempotent per booking.
    """
    posted = await escrow_posting(
        uow,
        booking,
        amount=amount,
        currency=currency,
        price_usd_micros=price_usd_micros,
        rate=rate,
        hold=hold,
    )
    return None if posted is None else posted.transaction_id


async def escrow_posting(
    uow: UnitOfWork,
    booking: BookedSlot,
    *,
    amount: int,
    currency: str,
    price_usd_micros: int,
    rate: int,
    hold: Hold | None = None,
) -> Posted | None:
    """``escrow_booking``, telling also whether this call created the escrow."""
    if amount <= 0:
        return None
    existing = await direct_rows(uow, _ESCROW_POSTING, {"booking_id": booking.id})
    if existing:
        return Posted(int(existing[0].escrow_transaction_id), created=False)
    if booking.booker_agent_id is None:
        raise LedgerError(f"booking {booking.id} has no booking agent to pay for it")
    agent_id = booking.booker_agent_id
    wallet = await open_wallet(uow, agent_id, currency)
    source: AccountRef = (
        await system_account(uow, AccountKind.HOLDS, wallet.currency) if hold else wallet
    )
    escrow = await system_account(uow, AccountKind.ESCROW, wallet.currency)
    posted = await post(
        uow,
        kind=TransactionKind.ESCROW,
        reference=f"escrow:booking:{booking.id}",
        legs=[debit(source, amount), credit(escrow, amount)],
        currency=wallet.currency,
        amount=amount,
        agent_id=agent_id,
        booking_id=booking.id,
        call_id=hold.call_id if hold else None,
        tool=hold.tool if hold else None,
        price_usd_micros=price_usd_micros,
        rate=rate,
        memo=f"slot price of booking {booking.id} held in escrow",
    )
    await insert_or_none(
        uow,
        _ESCROWS,
        {
            "booking_id": booking.id,
            "agent_id": agent_id,
            "wallet_account_id": wallet.id,
            "currency": wallet.currency,
            "amount": amount,
            "price_usd_micros": price_usd_micros,
            "rate": rate,
            "status": EscrowStatus.HELD.value,
            "escrow_transaction_id": posted.transaction_id,
            "created_at": uow.clock.now(),
        },
        ["booking_id"],
    )
    return posted


async def refund_booking(
    uow: UnitOfWork, booking: BookingTerms, *, policy: BookingPolicy | None = None
) -> Settlement | None:
    """Refund a cancelled or rejected booking's escrow by policy (see the module docstring).

    Reads who ended the booking and when from its terms (``ended_by``, ``ended_at``, else
    now). None if nothing was escrowed; a second call returns the first settlement.
    """
    policy = policy or BookingPolicy()
    escrow = await _escrow_of(uow, booking.id, lock=True)
    if escrow is None:
        return None
    if escrow.status == EscrowStatus.REFUNDED.value:
        return await _settled(uow, escrow)
    if escrow.status != EscrowStatus.HELD.value:
        raise EscrowAlreadySettled(f"booking {booking.id} was already paid out")
    at = booking.ended_at or uow.clock.now()
    percent = refund_percent(booking, policy, at)
    refunded = -(-escrow.amount * percent // 100)
    kept = escrow.amount - refunded
    commission = kept * policy.commission_percent // 100
    return await _settle(
        uow,
        booking,
        escrow,
        EscrowStatus.REFUNDED,
        TransactionKind.REFUND,
        refunded=refunded,
        to_payee=kept - commission,
        commission=commission,
        memo=f"refund of booking {booking.id}: {percent}% of the slot price",
    )


async def payout_booking(
    uow: UnitOfWork, booking: BookingTerms, *, policy: BookingPolicy | None = None
) -> Settlement | None:
    """Pay a completed booking's escrow to the payee, less the platform's commission.

    None if nothing was escrowed; a second call returns the first settlement.
    """
    policy = policy or BookingPolicy()
    escrow = await _escrow_of(uow, booking.id, lock=True)
    if escrow is None:
        return None
    if escrow.status == EscrowStatus.PAID_OUT.value:
        return await _settled(uow, escrow)
    if escrow.status != EscrowStatus.HELD.value:
        raise EscrowAlreadySettled(f"booking {booking.id} was already refunded")
    commission = escrow.amount * policy.commission_percent // 100
    return await _settle(
        uow,
        booking,
        escrow,
        EscrowStatus.PAID_OUT,
        TransactionKind.PAYOUT,
        refunded=0,
        to_payee=escrow.amount - commission,
        commission=commission,
        memo=f"payout of booking {booking.id}, less {policy.commission_percent}% commission",
    )


async def settle_dispute(
    uow: UnitOfWork, booking: BookingTerms, refund: int, *, policy: BookingPolicy | None = None
) -> Settlement | None:
    """Settle a disputed booking's escrow as an operator decided: ``refund`` base units back to
    the booker (0: a release, the whole amount: a full refund), the rest to the payee less
    the commission on it. None if nothing was escrowed; ``EscrowAlreadySettled`` if it was
    settled before; ``ValueError`` if ``refund`` is not between 0 and the escrowed amount.
    """
    policy = policy or BookingPolicy()
    escrow = await _escrow_of(uow, booking.id, lock=True)
    if escrow is None:
        return None
    if escrow.status != EscrowStatus.HELD.value:
        raise EscrowAlreadySettled(f"the escrow of booking {booking.id} was settled before")
    if not 0 <= refund <= escrow.amount:
        raise ValueError(f"refund must be between 0 and {escrow.amount}")
    kept = escrow.amount - refund
    commission = kept * policy.commission_percent // 100
    released = refund == 0
    return await _settle(
        uow,
        booking,
        escrow,
        EscrowStatus.PAID_OUT if released else EscrowStatus.REFUNDED,
        TransactionKind.PAYOUT if released else TransactionKind.REFUND,
        refunded=refund,
        to_payee=kept - commission,
        commission=commission,
        memo=f"dispute of booking {booking.id} settled: {refund} of {escrow.amount} refunded",
    )


async def held_amount(uow: UnitOfWork, booking_id: int) -> tuple[int, str] | None:
    """A booking's escrowed amount and currency while it is held; None otherwise."""
    escrow = await _escrow_of(uow, booking_id)
    if escrow is None or escrow.status != EscrowStatus.HELD.value:
        return None
    return escrow.amount, escrow.currency


async def _escrow_of(uow: UnitOfWork, booking_id: int, *, lock: bool = False) -> Escrow | None:
    query = select(Escrow).where(Escrow.booking_id == booking_id)
    if lock:
        query = query.with_for_update()
    return (await uow.session.execute(query)).scalar_one_or_none()


async def _payee(uow: UnitOfWork, booking: BookingTerms, currency: str) -> AccountRef:
    payee = booking.payee
    if payee.specialist_id is not None:
        return await open_account(
            uow, AccountKind.PAYABLE, currency, specialist_id=payee.specialist_id
        )
    return await open_account(uow, AccountKind.PAYABLE, currency, agent_id=payee.agent_id)


async def _settle(
    uow: UnitOfWork,
    booking: BookingTerms,
    escrow: Escrow,
    status: EscrowStatus,
    kind: TransactionKind,
    *,
    refunded: int,
    to_payee: int,
    commission: int,
    memo: str,
) -> Settlement:
    currency = escrow.currency
    escrow_account = await system_account(uow, AccountKind.ESCROW, currency)
    legs: list[Leg] = [debit(escrow_account, escrow.amount)]
    if refunded:
        wallet = await open_wallet(uow, escrow.agent_id, currency)
        legs.append(credit(wallet, refunded))
    if to_payee:
        legs.append(credit(await _payee(uow, booking, currency), to_payee))
    if commission:
        legs.append(credit(await system_account(uow, AccountKind.REVENUE, currency), commission))
    posted = await post(
        uow,
        kind=kind,
        reference=f"{kind.value}:booking:{booking.id}",
        legs=legs,
        currency=currency,
        amount=refunded if kind is TransactionKind.REFUND else escrow.amount,
        agent_id=escrow.agent_id,
        booking_id=booking.id,
        price_usd_micros=escrow.price_usd_micros,
        rate=escrow.rate,
        memo=memo,
    )
    settled = await uow.session.execute(
        update(_ESCROWS)
        .where(_ESCROWS.c.id == escrow.id, _ESCROWS.c.status == EscrowStatus.HELD.value)
        .values(
            status=status.value,
            refunded=refunded,
            paid_to_payee=to_payee,
            commission=commission,
            settle_transaction_id=posted.transaction_id,
            settled_at=uow.clock.now(),
        )
    )
    if settled.rowcount != 1:  # type: ignore[attr-defined]
        raise EscrowAlreadySettled(f"the escrow of booking {booking.id} was settled meanwhile")
    if refunded:
        # A refund is credited back against the owner's caps of the day and month it was spent.
        usd = refunded_usd(escrow.price_usd_micros, escrow.amount, refunded)
        await return_spending(uow, escrow.agent_id, usd, escrow.created_at)
    await uow.session.refresh(escrow)
    return await _settled(uow, escrow)


async def _settled(uow: UnitOfWork, escrow: Escrow) -> Settlement:
    assert escrow.settle_transaction_id is not None
    return Settlement(
        booking_id=escrow.booking_id,
        transaction_id=escrow.settle_transaction_id,
        status=EscrowStatus(escrow.status),
        currency=escrow.currency,
        amount=escrow.amount,
        refunded=escrow.refunded or 0,
        paid_to_payee=escrow.paid_to_payee or 0,
        commission=escrow.commission or 0,
    )
