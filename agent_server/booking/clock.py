"""The booking clock's side of the booking life: which bookings are due, and expiring one.

The clock (``agent_server.services.clock``) moves one booking per unit of work. Each ``due_*``
query names at most one booking id and, on PostgreSQL, locks its row with
``FOR UPDATE SKIP LOCKED``: a clock in another process passes over a booking being moved and
takes the next one, so no two processes work on the same booking at once. The transition
itself then reads the booking again under its row lock and checks that it is still due, so a
booking moved meanwhile (by its provider, its booker or another clock) is left alone; on
SQLite the write transactions are serialised and the same check decides.

* expire: a ``pending`` booking not answered within the pending TTL of its creation, or whose
  start has come, becomes ``canceled`` by ``system`` with reason code ``expired``
  (event ``booking.expired``; the service refunds it in full);
* complete: an ``accepted`` booking ``auto_complete_after`` past its end (``complete_booking``);
* remind: an ``accepted`` booking of a specialist who asked for reminders, starting within
  ``reminder_before``, not reminded yet (``claim_reminder`` marks it once).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, or_, select, update

from agent_server.booking.events import emit_booking
from agent_server.booking.models import Booking, BookingStatus, CancelledBy, Specialist
from agent_server.booking.service import lock_booking, mark_canceled
from agent_server.events.outbox import BOOKING_EXPIRED
from agent_server.kernel.store import UnitOfWork

EXPIRED = "expired"
"""The reason code of a pending booking the clock canceled because nobody answered it."""


def _one(query: Select[int]) -> Select[int]:
    return query.order_by(Booking.id).limit(1).with_for_update(skip_locked=True, of=Booking)


def is_expired(booking: Booking, now: datetime, ttl: timedelta) -> bool:
    """Whether a pending booking went unanswered too long, or its start has come."""
    return booking.created_at <= now - ttl or booking.slot_start <= now


def due_to_expire(now: datetime, ttl: timedelta) -> Select[int]:
    return _one(
        select(Booking.id).where(
            Booking.status == BookingStatus.PENDING.value,
            or_(Booking.created_at <= now - ttl, Booking.slot_start <= now),
        )
    )


def due_to_complete(now: datetime, after: timedelta) -> Select[int]:
    return _one(
        select(Booking.id).where(
            Booking.status == BookingStatus.ACCEPTED.value, Booking.slot_end <= now - after
        )
    )


def due_for_reminder(now: datetime, before: timedelta) -> Select[int]:
    return _one(
        select(Booking.id)
        .join(Specialist, Specialist.id == Booking.specialist_id)
        .where(
            Booking.status == BookingStatus.ACCEPTED.value,
            Booking.reminder_sent_at.is_(None),
            Booking.slot_start > now,
            Booking.slot_start <= now + before,
            Specialist.notify_reminder.is_(True),
        )
    )


async def expire_booking(uow: UnitOfWork, booking_id: int, ttl: timedelta) -> Booking | None:
    """Cancel a pending booking that is still due to expire; None if it is not (any more)."""
    booking = await lock_booking(uow, booking_id)
    now = uow.clock.now()
    if booking.status != BookingStatus.PENDING.value or not is_expired(booking, now, ttl):
        return None
    note = "expired: not answered in time"
    await mark_canceled(uow, booking, CancelledBy.SYSTEM, EXPIRED, "", note)
    await emit_booking(uow, BOOKING_EXPIRED, booking)
    await uow.session.flush()
    return booking


async def claim_reminder(uow: UnitOfWork, booking_id: int) -> bool:
    """Mark the booking's reminder as sent, once: whether this call marked it."""
    done = await uow.session.execute(
        update(Booking)
        .where(Booking.id == booking_id, Booking.reminder_sent_at.is_(None))
        .values(reminder_sent_at=uow.clock.now())
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount == 1)  # type: ignore[attr-defined]


async def unclaim_reminder(uow: UnitOfWork, booking_id: int) -> None:
    """Let the next tick try a reminder whose mail could not be sent."""
    await uow.session.execute(
        update(Booking)
        .where(Booking.id == booking_id)
        .values(reminder_sent_at=None)
        .execution_options(synchronize_session=False)
    )
