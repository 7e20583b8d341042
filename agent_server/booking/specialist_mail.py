"""Mails to specialists about their bookings, queued in the transaction of the change.

- a new booking (``booking.created``, and the new booking of ``booking.rescheduled``), when
  ``specialists.notify_new_booking``;
- a booking cancelled by the agent or by the system (``booking.cancelled``, or expired by
  the clock; not the specialist's own cancellations or rejections, nor a move to another
  slot), when ``notify_cancelled``.

The reminder before the start, when ``notify_reminder``, is the booking clock's
(``agent_server.services.clock``).

Times are shown in the specialist's time zone. ``agent_server.mail.queue_mail`` writes the
mail in the caller's transaction; the sender delivers it after the commit.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from agent_server.accounts.models import Agent
from agent_server.booking.models import Booking, BookingStatus, CancelledBy, Schedule, Specialist
from agent_server.events.outbox import BOOKING_CREATED, BOOKING_RESCHEDULED
from agent_server.kernel.money import amount_text
from agent_server.kernel.store import UnitOfWork
from agent_server.mail import OutgoingMail, queue_mail

RESCHEDULED = "rescheduled"  # the reason code of a booking moved to another slot
NEW_BOOKING = "booking_new"
CANCELLED = "booking_cancelled"


def _local(at: datetime, zone: str) -> str:
    try:
        tz = ZoneInfo(zone)
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    return at.astimezone(tz).strftime("%A %d %B %Y, %H:%M")


async def _facts(uow: UnitOfWork, booking: Booking, specialist: Specialist) -> list[str]:
    schedule = await uow.session.get(Schedule, booking.schedule_id)
    booker = (
        await uow.session.get(Agent, booking.booker_agent_id)
        if booking.booker_agent_id is not None
        else None
    )
    end = _local(booking.slot_end, specialist.timezone).rsplit(", ", 1)[-1]
    lines = [
        f"When: {_local(booking.slot_start, specialist.timezone)} to {end} ({specialist.timezone})",
        f"Schedule: {schedule.label if schedule and schedule.label else booking.schedule_id}",
        f"Booked by: {booker.name if booker else 'an agent'}",
        f"Price: {amount_text(booking.price_amount, booking.price_currency)}",
        f"Booking: {booking.id} ({booking.status})",
    ]
    if booking.topic:
        lines.append(f"Topic: {booking.topic}")
    return lines


async def _queue(
    uow: UnitOfWork, specialist: Specialist, kind: str, subject: str, intro: str, facts: list[str]
) -> None:
    body = (
        f"Hello {specialist.name},\n\n{intro}\n\n"
        + "\n".join(facts)
        + "\n\nYour bookings are on the Agent Server dashboard, under Bookings. "
        "Choose which mails you receive under Notifications.\n"
    )
    await queue_mail(uow, OutgoingMail(to=specialist.email, subject=subject, body=body, kind=kind))


async def mail_specialist(uow: UnitOfWork, type: str, booking: Booking) -> bool:
    """Queue the specialist's mail about the booking event ``type``, if they chose it;
    whether a mail was queued. Does not commit.

    A new booking is ``booking.created`` (or the new booking of ``booking.rescheduled``); a
    cancellation is any event of a booking now canceled by the agent or the system
    (``booking.cancelled``, ``booking.expired``), not a move to another slot."""
    if booking.specialist_id is None:
        return False
    new = type in (BOOKING_CREATED, BOOKING_RESCHEDULED)
    cancelled = (
        booking.status == BookingStatus.CANCELED.value
        and booking.cancelled_by in (CancelledBy.AGENT.value, CancelledBy.SYSTEM.value)
        and booking.cancel_reason_code != RESCHEDULED
    )
    if not new and not cancelled:
        return False
    specialist = await uow.session.get(Specialist, booking.specialist_id)
    if specialist is None:
        return False
    if type in (BOOKING_CREATED, BOOKING_RESCHEDULED):
        if not specialist.notify_new_booking:
            return False
        pending = booking.status == BookingStatus.PENDING.value
        moved = type == BOOKING_RESCHEDULED
        intro = (
            "A booking was moved to a new time."
            if moved
            else "You have a new booking request; accept or reject it on the dashboard."
            if pending
            else "You have a new booking."
        )
        subject = "Booking moved" if moved else "New booking request" if pending else "New booking"
        when = _local(booking.slot_start, specialist.timezone)
        await _queue(
            uow,
            specialist,
            NEW_BOOKING,
            f"{subject}: {when}",
            intro,
            await _facts(uow, booking, specialist),
        )
        return True
    if not specialist.notify_cancelled:
        return False
    who = "the system" if booking.cancelled_by == CancelledBy.SYSTEM.value else "the agent"
    facts = await _facts(uow, booking, specialist)
    reason = booking.cancel_reason_code or ""
    if booking.cancel_reason:
        reason = f"{reason}: {booking.cancel_reason}" if reason else booking.cancel_reason
    if reason:
        facts.append(f"Reason: {reason}")
    when = _local(booking.slot_start, specialist.timezone)
    await _queue(
        uow,
        specialist,
        CANCELLED,
        f"Booking cancelled: {when}",
        f"A booking was cancelled by {who}; the slot is free again.",
        facts,
    )
    return True
