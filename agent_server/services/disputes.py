"""Dispute use cases: the booker opens one, an operator resolves it and the escrow is settled.

* ``open_dispute``: the booking becomes ``in_dispute``; its escrow stays held, so the clock
  does not release it (``agent_server.booking.disputes`` checks who and when).
* ``resolve_dispute``: the operator's ``refund`` (all back to the booker), ``release`` (all to
  the provider less the commission) or ``split`` (``refund_amount`` base units of the escrow's
  currency back, the rest to the provider less the commission on it); the escrow is settled
  once (``billing.escrow.settle_dispute``) and the booking becomes ``dispute_done``, with who,
  when and why on the dispute.
* ``dispute_queue``: the operator's queue, each dispute with what is held in escrow.

Each takes an entered ``UnitOfWork`` and does not commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from agent_server.booking import disputes
from agent_server.booking.disputes import DisputePage
from agent_server.booking.models import Booking, Dispute
from agent_server.kernel.errors import BookingConflict, ValidationFailed
from agent_server.kernel.store import UnitOfWork
from agent_server.services.bookings import booking_terms
from billing.escrow import Settlement, held_amount, settle_dispute
from billing.models import Escrow, EscrowStatus
from billing.prices import BookingPolicy


@dataclass(frozen=True)
class Disputed:
    booking: Booking
    dispute: Dispute
    settlement: Settlement | None = None


async def open_dispute(
    uow: UnitOfWork,
    agent_id: int,
    booking_id: int,
    reason_code: str,
    text: str,
    *,
    window: timedelta,
) -> Disputed:
    """The booker contests an ended session within ``window`` after its end."""
    booking, dispute = await disputes.open_dispute(
        uow, agent_id, booking_id, reason_code, text, window
    )
    state = await uow.session.scalar(select(Escrow.status).where(Escrow.booking_id == booking.id))
    if state is not None and state != EscrowStatus.HELD.value:
        # Released already (the booking's row lock orders this against the clock's release).
        raise BookingConflict(
            f"the escrow of booking {booking.id} was already paid out; it cannot be disputed",
            {"reason": disputes.REASON_WINDOW_CLOSED},
        )
    return Disputed(booking, dispute)


async def resolve_dispute(
    uow: UnitOfWork,
    booking_id: int,
    *,
    resolution: str,
    operator: str,
    note: str,
    refund_amount: int | None = None,
    policy: BookingPolicy | None = None,
) -> Disputed:
    """Settle a booking's open dispute as the operator decided; see the module docstring."""
    decision = disputes.check_resolution(resolution, refund_amount, operator, note)
    booking, dispute = await disputes.lock_open_dispute(uow, booking_id)
    held = await held_amount(uow, booking.id)
    amount = held[0] if held else 0
    if decision.kind == "refund":
        refund = amount
    elif decision.kind == "release":
        refund = 0
    else:
        refund = decision.refund_amount or 0
        if refund >= amount:
            currency = held[1] if held else booking.price_currency
            raise ValidationFailed.field(
                "refund_amount",
                f"a split refunds less than the {amount} {currency} base units held; "
                "for all of it choose refund",
            )
    settlement = None
    if held:
        terms = await booking_terms(uow, booking)
        settlement = await settle_dispute(uow, terms, refund, policy=policy)
    booking = await disputes.close_dispute(
        uow,
        booking,
        dispute,
        decision,
        refunded=settlement.refunded if settlement else 0,
        settle_transaction_id=settlement.transaction_id if settlement else None,
    )
    return Disputed(booking, dispute, settlement)


@dataclass(frozen=True)
class QueuedDispute:
    """One dispute in the operator's queue, with its booking and what escrow holds for it
    (0 once settled), in the escrow's currency."""

    dispute: Dispute
    booking: Booking
    held: int
    currency: str


async def dispute_queue(
    uow: UnitOfWork, *, status: str | None = "open", cursor: str | None = None, limit: int = 50
) -> tuple[list[QueuedDispute], DisputePage]:
    """Disputes oldest first (open ones by default), each with its held escrow."""
    page = await disputes.list_disputes(uow, status=status, cursor=cursor, limit=limit)
    ids = [booking.id for _, booking in page.items]
    escrowed = {
        booking_id: (amount, currency, state)
        for booking_id, amount, currency, state in (
            await uow.session.execute(
                select(Escrow.booking_id, Escrow.amount, Escrow.currency, Escrow.status).where(
                    Escrow.booking_id.in_(ids)
                )
            )
        ).all()
    }
    out = []
    for dispute, booking in page.items:
        amount, currency, state = escrowed.get(booking.id, (0, booking.price_currency, None))
        held = amount if state == EscrowStatus.HELD.value else 0
        out.append(QueuedDispute(dispute, booking, held, currency))
    return out, page
