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

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

from agent_server.accounts.models import Agent
from agent_server.booking.models import Booking, BookingStatus, CancelledBy, Schedule, Specialist
from agent_server.events.outbox import BOOKING_CREATED, BOOKING_RESCHEDULED
from agent_server.kernel.money import amount_text
from agent_server.kernel.store import Direct, UnitOfWork, direct_rows
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


@dataclass(frozen=True)
class _Reader:
    """What a mail about a booking needs of its specialist, and the booker's name."""

    name: str
    email: str
    timezone: str
    notify_new_booking: bool
    notify_cancelled: bool
    booker: str | None


_SPECIALISTS: Any = Specialist.__table__.c
_AGENTS: Any = Agent.__table__.c
_READER = Direct(
    select(
        _SPECIALISTS.name,
        _SPECIALISTS.email,
        _SPECIALISTS.timezone,
        _SPECIALISTS.notify_new_booking,
        _SPECIALISTS.notify_cancelled,
        select(_AGENTS.name)
        .where(_AGENTS.id == bindparam("booker_id", type_=_AGENTS.id.type))
        .scalar_subquery()
        .label("booker"),
    ).where(_SPECIALISTS.id == bindparam("specialist_id"))
)


async def _reader(uow: UnitOfWork, booking: Booking) -> _Reader | None:
    """The booking's specialist and booker as the mail needs them, in one statement (the
    columns only: the whole rows are much larger)."""
    rows = await direct_rows(
        uow,
        _READER,
        {"specialist_id": booking.specialist_id, "booker_id": booking.booker_agent_id},
    )
    if not rows:
        return None
    row = rows[0]
    return _Reader(
        name=row.name,
        email=row.email,
        timezone=row.timezone,
        notify_new_booking=bool(row.notify_new_booking),
        notify_cancelled=bool(row.notify_cancelled),
        booker=row.booker,
    )


class ScheduleFacts(Protocol):
    """What a booking's events and mails say of its schedule: a ``Schedule`` row, or the
    ``Bookable`` a booking call read."""

    @property
    def agent_id(self) -> int | None: ...

    @property
    def label(self) -> str: ...


async def _facts(
    uow: UnitOfWork, booking: Booking, specialist: _Reader, schedule: ScheduleFacts | None
) -> list[str]:
    if schedule is None:
        schedule = await uow.session.get(Schedule, booking.schedule_id)
    end = _local(booking.slot_end, specialist.timezone).rsplit(", ", 1)[-1]
    lines = [
        f"When: {_local(booking.slot_start, specialist.timezone)} to {end} ({specialist.timezone})",
        f"Schedule: {schedule.label if schedule and schedule.label else booking.schedule_id}",
        f"Booked by: {specialist.booker or 'an agent'}",
        f"Price: {amount_text(booking.price_amount, booking.price_currency)}",
        f"Booking: {booking.id} ({booking.status})",
    ]
    if booking.topic:
        lines.append(f"Topic: {booking.topic}")
    return lines


async def _queue(
    uow: UnitOfWork, specialist: _Reader, kind: str, subject: str, intro: str, facts: list[str]
) -> None:
    body = (
        f"Hello {specialist.name},\n\n{intro}\n\n"
        + "\n".join(facts)
        + "\n\nYour bookings are on the Agent Server dashboard, under Bookings. "
        "Choose which mails you receive under Notifications.\n"
    )
    await queue_mail(uow, OutgoingMail(to=specialist.email, subject=subject, body=body, kind=kind))


async def mail_specialist(
    uow: UnitOfWork, type: str, booking: Booking, schedule: ScheduleFacts | None = None
) -> bool:
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
    specialist = await _reader(uow, booking)
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
            await _facts(uow, booking, specialist, schedule),
        )
        return True
    if not specialist.notify_cancelled:
        return False
    who = "the system" if booking.cancelled_by == CancelledBy.SYSTEM.value else "the agent"
    facts = await _facts(uow, booking, specialist, schedule)
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
