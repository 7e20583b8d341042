"""Booking use cases that move money: each does the booking change and its ledger step.

===========  ================================  ==========================================
use case     booking change                    money step (``billing.escrow``)
===========  ================================  ==========================================
book         a seat taken (``book_slot``)      slot price from the call's hold to escrow
cancel       canceled by booker/owner/system   escrow refunded by policy
reject       rejected by the schedule's owner  escrow refunded in full
complete     completed after the slot ended    none: the escrow stays held
release      none (the clock, after the        escrow paid out, less commission
             dispute window; ``clock``)
reschedule   new booking, old one canceled     escrow moved to the new booking
accept       accepted by the schedule's owner  none (the escrow stays held)
===========  ================================  ==========================================

``cancel_as`` lets an agent's role on the booking decide: its booker cancels with the policy's
refund, the agent owning the schedule cancels with a full one. ``booking_view`` is one booking
with its history and the refund a cancellation by the caller would bring now.

Every function takes an entered ``UnitOfWork`` and does not commit: the caller commits once
(the MCP pipeline together with the call's fee), so the booking's status, history line, event
and ledger transaction land together. The booking change comes first and takes the booking's
row lock, so of two concurrent changes the second is refused before any money moves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from agent_server.booking import service as booking_service
from agent_server.booking.models import Booking, BookingChange, BookingStatus, CancelledBy
from agent_server.booking.schedules import ScheduleOwner
from agent_server.kernel.store import UnitOfWork
from billing.escrow import RefundQuote, Settlement, refund_booking, refund_quote
from billing.prices import BookingPolicy
from billing.rebooking import move_escrow
from billing.terms import BookingTerms, EndedBy, Payee

_ENDED_BY = {
    CancelledBy.AGENT.value: EndedBy.BOOKER,
    CancelledBy.SPECIALIST.value: EndedBy.PROVIDER,
    CancelledBy.SYSTEM.value: EndedBy.SYSTEM,
}


@dataclass(frozen=True)
class Settled:
    """A booking after its change, and where its escrow went (None: nothing was escrowed)."""

    booking: Booking
    settlement: Settlement | None


class EscrowingCall(Protocol):
    """A metered call as booking sees it: its unit of work, and the step that moves the
    call's extra price (the slot price) from its hold into escrow."""

    @property
    def uow(self) -> UnitOfWork: ...

    async def escrow(self, booking: Booking) -> int | None: ...


async def booking_terms(uow: UnitOfWork, booking: Booking) -> BookingTerms:
    """The booking's money facts in billing's terms: payee, refund anchor, who ended it."""
    if booking.specialist_id is not None:
        payee = Payee(specialist_id=booking.specialist_id)
    else:  # an agent-owned schedule: its agent is paid
        owner = await booking_service.schedule_owner(uow, booking)
        payee = Payee(specialist_id=owner.specialist_id, agent_id=owner.agent_id)
    ended_by = _ENDED_BY.get(booking.cancelled_by or "")
    if booking.status == BookingStatus.REJECTED.value:
        ended_by = EndedBy.PROVIDER
    return BookingTerms(
        id=booking.id,
        booker_agent_id=booking.booker_agent_id,
        payee=payee,
        slot_start=booking.slot_start,
        refund_anchor_at=booking.refund_anchor_at,
        ended_by=ended_by,
        ended_at=booking.cancelled_at,
    )


async def book_slot(
    call: EscrowingCall,
    *,
    agent_id: int,
    slot_id: str,
    idempotency_key: str | None,
    topic: str = "",
) -> Booking:
    """Book a seat once the meter has admitted the call, and escrow the slot price from the
    call's hold. A replayed idempotency key returns the first booking, escrowed once."""
    booking = await booking_service.book_slot(
        call.uow,
        agent_id=agent_id,
        slot_id=slot_id,
        idempotency_key=idempotency_key,
        topic=topic,
    )
    await call.escrow(booking)
    return booking


async def cancel_booking(
    uow: UnitOfWork,
    booking_id: int,
    by: CancelledBy,
    actor_id: int | None,
    reason_code: str,
    reason: str = "",
    *,
    policy: BookingPolicy | None = None,
) -> Settled:
    """Cancel by the booker (``by=agent``), the schedule's owner (``by=specialist``) or the
    system, and refund the escrow by ``policy``: in full unless the booker cancelled late."""
    booking = await booking_service.cancel_booking(
        uow, booking_id, by, actor_id, reason_code, reason
    )
    settlement = await refund_booking(uow, await booking_terms(uow, booking), policy=policy)
    return Settled(booking, settlement)


async def reject_booking(
    uow: UnitOfWork,
    owner: ScheduleOwner,
    booking_id: int,
    reason: str = "",
    *,
    policy: BookingPolicy | None = None,
) -> Settled:
    """The schedule's owner rejects a pending booking; its escrow is refunded in full."""
    booking = await booking_service.reject_booking(uow, owner, booking_id, reason)
    settlement = await refund_booking(uow, await booking_terms(uow, booking), policy=policy)
    return Settled(booking, settlement)


async def complete_booking(
    uow: UnitOfWork,
    booking_id: int,
    by: CancelledBy,
    actor_id: int | None,
    *,
    policy: BookingPolicy | None = None,
) -> Settled:
    """Mark an accepted booking completed after its slot ended. Its escrow stays held: the
    booking clock releases it to the payee (``clock.release_escrow``) once the dispute window
    passed without a dispute. ``policy`` is accepted for symmetry and unused."""
    booking = await booking_service.complete_booking(uow, booking_id, by, actor_id)
    return Settled(booking, None)


async def reschedule_booking(
    uow: UnitOfWork, agent_id: int, booking_id: int, new_slot_id: str
) -> Booking:
    """Move the agent's booking to another slot of its schedule; its escrow moves along to
    the new booking, which is returned. Nothing is charged or refunded."""
    new = await booking_service.reschedule_booking(uow, agent_id, booking_id, new_slot_id)
    old = await booking_service.get_booking(uow, booking_id, agent_id=agent_id)
    await move_escrow(uow, old, new)
    return new


async def accept_booking(
    uow: UnitOfWork, owner: ScheduleOwner, booking_id: int, location: str | None = None
) -> Booking:
    """The schedule's owner accepts a pending booking (the escrow stays held until the
    session is paid out or refunded), optionally saying where the session happens."""
    return await booking_service.accept_booking(uow, owner, booking_id, location)


async def cancel_as(
    uow: UnitOfWork,
    agent_id: int,
    booking_id: int,
    reason_code: str,
    reason: str = "",
    *,
    policy: BookingPolicy | None = None,
) -> Settled:
    """An agent cancels a booking in its role on it: as booker (refund by policy) or as the
    agent owning the schedule (full refund)."""
    booking = await booking_service.get_booking(uow, booking_id, agent_id=agent_id)
    role = await booking_service.role_of(uow, booking, agent_id)
    by = CancelledBy.AGENT if role == booking_service.ROLE_BOOKER else CancelledBy.SPECIALIST
    return await cancel_booking(uow, booking_id, by, agent_id, reason_code, reason, policy=policy)


@dataclass(frozen=True)
class BookingView:
    """One booking as its booker or provider sees it: its history, and what cancelling it
    now would refund (None when nothing is held or it can no longer be cancelled)."""

    booking: Booking
    role: str
    history: list[BookingChange]
    refund_now: RefundQuote | None
    full_refund_until: datetime | None


async def booking_view(
    uow: UnitOfWork,
    booking_id: int,
    *,
    agent_id: int | None = None,
    specialist_id: int | None = None,
    policy: BookingPolicy | None = None,
) -> BookingView:
    """The booking for its booker, its schedule's agent or its specialist; the refund is
    what a cancellation by that caller would bring now (the provider's is always full)."""
    booking = await booking_service.get_booking(
        uow, booking_id, agent_id=agent_id, specialist_id=specialist_id
    )
    if agent_id is not None:
        role = await booking_service.role_of(uow, booking, agent_id)
    else:
        role = booking_service.ROLE_PROVIDER
    history = (await booking_service.booking_history(uow, [booking.id]))[booking.id]
    quote = None
    if booking.status in (BookingStatus.PENDING.value, BookingStatus.ACCEPTED.value):
        ended_by = EndedBy.BOOKER if role == booking_service.ROLE_BOOKER else EndedBy.PROVIDER
        terms = replace(await booking_terms(uow, booking), ended_by=ended_by)
        quote = await refund_quote(uow, terms, policy or BookingPolicy(), uow.clock.now())
    until = None
    if quote is not None:
        until = quote.full_refund_until if role == booking_service.ROLE_BOOKER else None
    return BookingView(booking, role, history, quote, until)
