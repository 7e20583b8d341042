"""Booking events, emitted by the booking services in the transaction of each change.

- booking.created: a slot was booked;
- booking.confirmed: the booking was accepted (at once, by a schedule that auto-accepts);
- booking.cancelled: canceled by anyone, or rejected by the schedule's owner (``status``
  tells which);
- booking.completed: marked completed after the session;
- booking.rescheduled: moved to another slot; ``booking`` is the new booking,
  ``previous_booking`` the old one (now canceled with reason code ``rescheduled``);
- booking.expired: a pending booking not answered in time, canceled by the clock (reason
  code ``expired``, refunded in full);
- booking.disputed: the booker contested the session; ``dispute`` has its reason;
- booking.paid_out: the dispute window passed without a dispute and the clock released the
  escrow to the provider; ``payout`` has what was held, what the provider got and the
  commission, each as money in base units;
- dispute.resolved: an operator settled the dispute; ``dispute`` has the resolution and the
  refund;
- review.created: the booker reviewed the finished booking; ``review`` has the rating, the
  text and the provider's new rating and review count.

The agent that booked receives each (``role: "booker"``); when the schedule belongs to an
agent, that agent receives it too (``role: "provider"``). ``data.booking`` has the fields of
the MCP tools' booking object.
"""

from __future__ import annotations

from typing import Any

from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import Booking, Schedule
from agent_server.booking.specialist_mail import ScheduleFacts, mail_specialist
from agent_server.events.outbox import (
    BOOKING_CANCELLED,
    BOOKING_COMPLETED,
    BOOKING_CONFIRMED,
    BOOKING_CREATED,
    BOOKING_DISPUTED,
    BOOKING_EXPIRED,
    BOOKING_PAID_OUT,
    BOOKING_RESCHEDULED,
    DISPUTE_RESOLVED,
    REVIEW_CREATED,
    emit,
    iso,
)
from agent_server.kernel.money import Money
from agent_server.kernel.store import UnitOfWork

BOOKING_EVENTS = (
    BOOKING_CREATED,
    BOOKING_CONFIRMED,
    BOOKING_CANCELLED,
    BOOKING_COMPLETED,
    BOOKING_RESCHEDULED,
    BOOKING_EXPIRED,
    BOOKING_DISPUTED,
    BOOKING_PAID_OUT,
    DISPUTE_RESOLVED,
    REVIEW_CREATED,
)


def booking_data(booking: Booking) -> dict[str, Any]:
    """A booking as events describe it."""
    return {
        "id": booking.id,
        "schedule_id": booking.schedule_id,
        "specialist_id": booking.specialist_id,
        "slot_id": make_slot_id(booking.schedule_id, booking.slot_start),
        "start": iso(booking.slot_start),
        "end": iso(booking.slot_end),
        "seat": booking.seat,
        "status": booking.status,
        "price": Money.of(booking.price_amount, booking.price_currency).model_dump(),
        "topic": booking.topic,
        "canceled_by": booking.cancelled_by,
        "cancel_reason_code": booking.cancel_reason_code,
        "cancel_reason": booking.cancel_reason,
        "rescheduled_from_id": booking.rescheduled_from_id,
        "rescheduled_to_id": booking.rescheduled_to_id,
        "created_at": iso(booking.created_at),
        "updated_at": iso(booking.updated_at),
    }


async def emit_booking(
    uow: UnitOfWork,
    type: str,
    booking: Booking,
    *,
    previous: Booking | None = None,
    extra: dict[str, Any] | None = None,
    schedule: ScheduleFacts | None = None,
) -> list[str]:
    """Emit one booking event to the booker and to the agent owning the schedule, if any.

    ``previous`` is the booking a reschedule moved from; ``extra`` more JSON-ready fields of
    ``data`` (a dispute's); ``schedule`` the booking's schedule when the caller has read it
    (else it is read through the session). Returns the event ids. Does not commit (nor
    flush).
    """
    if type not in BOOKING_EVENTS:
        raise ValueError(f"{type!r} is not a booking event")
    if schedule is None:
        schedule = await uow.session.get(Schedule, booking.schedule_id)
    recipients: list[tuple[int, str]] = []
    if booking.booker_agent_id is not None:
        recipients.append((booking.booker_agent_id, "booker"))
    if schedule is not None and schedule.agent_id is not None:
        recipients.append((schedule.agent_id, "provider"))
    data: dict[str, Any] = {"booking": booking_data(booking)}
    if previous is not None:
        data["previous_booking"] = booking_data(previous)
    data.update(extra or {})
    await mail_specialist(uow, type, booking, schedule)
    return [
        await emit(uow, type=type, agent_id=agent_id, data={"role": role, **data})
        for agent_id, role in recipients
    ]
