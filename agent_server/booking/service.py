"""Bookings: book a slot, accept, reject, cancel, complete, reschedule, notes, listing.

Every function takes an entered ``UnitOfWork`` and flushes, never commits: the caller commits,
so escrow (billing) and events join the same transaction. Every status change writes a
``BookingChange`` line; nothing is ever deleted, so a booking's history is complete. Every
status change also emits its ``booking.*`` event (``agent_server.booking.events``) in the
same transaction.

Lifecycle::

    pending --accept--> accepted --complete (after the slot ended)--> completed
       |                   |                                             |
       +--reject--> rejected                                             |
       +--expire (clock)--> canceled (system, reason ``expired``)        |
       +-------------------+--cancel (agent, specialist or system)--> canceled
                           |                                             |
                           +--open-dispute (booker, after the end)--+----+ (within the window)
                                                                    v
                                   in_dispute --resolve (operator)--> dispute_done

    completed | dispute_done --leave-review (booker, once; 1..5 and a text)--> a review; the
    provider's rating and review count recomputed in the same transaction
    (``agent_server.booking.reviews``, event ``review.created``)

The money at each step (``agent_server.services``): reject, expire and a cancel by the
provider or the system refund the escrow in full, a cancel by the booker by the policy's band;
completing holds it; the booking clock (``agent_server.services.clock``) releases it to the
provider less the commission once ``DISPUTE_WINDOW`` after the end passed without a dispute;
an operator's resolution of a dispute refunds it, releases it or splits it
(``agent_server.booking.disputes``). The clock also expires a pending booking not answered
within ``BOOKING_PENDING_TTL`` (and always at its start) and completes an accepted one
``AUTO_COMPLETE_AFTER`` its end (``agent_server.booking.clock``); each clock step is one
booking in one unit of work, exactly once across processes.

Who may do what: the schedule's owner (its specialist, or the agent that published it)
accepts (optionally with the session's ``location``), rejects, cancels with a full refund and
sets the location; the booker cancels with the policy's refund and, once nothing is left to do
(rejected, canceled, completed, dispute done), dismisses the booking from its default lists
(``dismissed_at``); booker and owner add notes after the session and complete it after its
end. An agent's role on a booking (``booker`` or ``provider``) is ``role_of``.

A schedule with ``auto_accept`` creates bookings already ``accepted``. Rescheduling books the
new slot as a new booking linked both ways (``rescheduled_from_id`` / ``rescheduled_to_id``)
and cancels the old one with reason code ``rescheduled``.

No double booking: a seat is taken by INSERTing the booking with a seat number, ``ON
CONFLICT DO NOTHING`` (``booking.seats``); the partial unique index on (schedule, slot
start, seat) over the seat-holding statuses refuses a second holder, and the loser tries the
next seat up to the capacity. Seats read beforehand only choose the order of the attempts;
the index is the guard.

One change at a time: every status change (accept, reject, cancel, complete, reschedule, a
note) reads the booking with a row lock (``SELECT ... FOR UPDATE``; SQLite's write
transactions are serialised already), so of two concurrent changes the second waits, reads
the first's result and is refused with ``invalid_status`` before it writes anything: history
lines and events are written once per real transition, in the transaction of its money step.
The ORM's version column (``bookings.version``) stays as the database's guard: an UPDATE of a
booking that changed since it was read matches no row and becomes ``changed_meanwhile``.

Refund band: ``refund_anchor_at`` is the slot start the booking was paid for; a reschedule
keeps the earlier of the old anchor and the new slot's start (``billing.escrow``).

Errors:

* a slot that cannot be booked (taken, outside hours, blackout, notice, past, outside the date
  range) is ``BookingConflict`` with ``details = {"reason", "next_available_slot"}``
  (``next_available_slot`` is ``{"slot_id", "start", "end"}`` or ``None``);
* a change the booking's status does not allow (accepting a canceled booking, completing a
  pending one) is ``BookingConflict`` with reason ``invalid_status`` and the current status;
* completing a booking before its slot ended is ``BookingConflict`` with reason ``not_ended``
  and ``ends_at``: the request is well formed, the booking's state is what refuses it;
* a booking changed by another transaction between this one's read and its write is
  ``BookingConflict`` with reason ``changed_meanwhile`` (the version check's
  ``StaleDataError``; see "One change at a time" below);
* booking one's own agent-owned schedule is ``Forbidden``; another agent's booking is
  ``Forbidden``; unknown ids are ``NotFound``.
"""

# Long by design: the booking lifecycle's commands share one set of locks and replays.

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, literal, or_, select
from sqlalchemy.orm.exc import StaleDataError

from agent_server.accounts.models import Agent
from agent_server.booking.availability import (
    REASON_FULL,
    REASON_NOTICE,
    REASON_PAST,
    ScheduleSpec,
    Slot,
    make_slot_id,
    next_free_slot,
    parse_slot_id,
    slot_end,
    unbookable_reason,
)
from agent_server.booking.events import emit_booking
from agent_server.booking.models import (
    SEAT_HOLDING,
    Booking,
    BookingChange,
    BookingStatus,
    CancelledBy,
    Schedule,
)
from agent_server.booking.next_free import lower_next_free
from agent_server.booking.schedules import ScheduleOwner, owner_of, taken_seats
from agent_server.booking.seats import Bookable, bookable_schedule, take_seat
from agent_server.events.outbox import (
    BOOKING_CANCELLED,
    BOOKING_COMPLETED,
    BOOKING_CONFIRMED,
    BOOKING_CREATED,
    BOOKING_RESCHEDULED,
)
from agent_server.kernel.errors import (
    BookingConflict,
    Forbidden,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
)
from agent_server.kernel.inputs import check_id, check_moment, check_text, require
from agent_server.kernel.store import Direct, UnitOfWork, column_binds, direct_execute, direct_rows
from agent_server.kernel.store.conflicts import changed_meanwhile

REASON_INVALID_STATUS = "invalid_status"
REASON_NOT_ENDED = "not_ended"

CANCEL_REASON_CODES: tuple[str, ...] = ("not_feeling_well", "no_time", "other")
"""Reason codes a caller may give when canceling (the LE-KO seed's NotFeelingWell, NoTime,
Other; their CamelCase spellings are accepted too)."""
RESCHEDULED = "rescheduled"
"""The reason code of a booking canceled because it was moved to another slot."""
ROLE_BOOKER = "booker"
ROLE_PROVIDER = "provider"

_CAMEL_REASONS = {"notfeelingwell": "not_feeling_well", "notime": "no_time", "other": "other"}

MAX_TOPIC = 2000
MAX_REASON = 2000
MAX_NOTE = 5000
MAX_LOCATION = 500
MAX_KEY = 255
NEXT_SLOT_HORIZON_DAYS = 90
PER_PAGE = 50

_SEAT_HOLDING = [s.value for s in SEAT_HOLDING]


# --- helpers -----------------------------------------------------------------------------------


_CHANGES: Any = BookingChange.__table__
_RECORD_CHANGE = Direct(
    insert(_CHANGES).values(
        column_binds(_CHANGES, ("booking_id", "at", "actor", "from_status", "to_status", "note"))
    )
)


async def record_change(
    uow: UnitOfWork,
    booking: Booking,
    actor: CancelledBy,
    from_status: str | None,
    note: str = "",
) -> None:
    """Write the booking's history line for its move from ``from_status`` to its status now
    (one statement straight to the driver: the line is never read back in the transaction)."""
    values = {
        "booking_id": booking.id,
        "at": uow.clock.now(),
        "actor": actor.value,
        "from_status": from_status,
        "to_status": booking.status,
        "note": note,
    }
    await direct_execute(uow, _RECORD_CHANGE, values)


async def _seat_freed(uow: UnitOfWork, booking: Booking) -> None:
    """Keep search's next-free bound true: a future seat of this slot is free again."""
    if booking.slot_start > uow.clock.now():
        await lower_next_free(uow.session, booking.schedule_id, booking.slot_start)


async def _schedule_of(uow: UnitOfWork, booking: Booking) -> Schedule:
    schedule = await uow.session.get(Schedule, booking.schedule_id)
    assert schedule is not None  # foreign key
    return schedule


async def schedule_owner(uow: UnitOfWork, booking: Booking) -> ScheduleOwner:
    """Who owns the booking's schedule, and so is paid for it: its specialist or its agent."""
    return owner_of(await _schedule_of(uow, booking))


async def _load_booking(uow: UnitOfWork, booking_id: int) -> Booking:
    booking = await uow.session.get(Booking, booking_id)
    if booking is None:
        raise NotFound(f"booking {booking_id} not found", {"booking_id": booking_id})
    return booking


async def lock_booking(uow: UnitOfWork, booking_id: int) -> Booking:
    """The booking, read afresh under a row lock held until the transaction ends: a
    concurrent change of it waits here and then reads this transaction's result."""
    query = (
        select(Booking)
        .where(Booking.id == booking_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    booking = (await uow.session.execute(query)).scalar_one_or_none()
    if booking is None:
        raise NotFound(f"booking {booking_id} not found", {"booking_id": booking_id})
    return booking


async def flush_booking(uow: UnitOfWork, booking: Booking) -> None:
    """Flush a booking's change; a lost version check is ``BookingConflict``."""
    booking_id = booking.id
    try:
        await uow.session.flush()
    except StaleDataError:
        raise changed_meanwhile(booking_id) from None


def require_status(booking: Booking, action: str, allowed: Iterable[BookingStatus]) -> None:
    """``BookingConflict`` (reason ``invalid_status``) unless the booking is in ``allowed``."""
    if booking.status not in {s.value for s in allowed}:
        wanted = " or ".join(s.value for s in allowed)
        raise BookingConflict(
            f"booking {booking.id} is {booking.status}; only {wanted} bookings can be {action}",
            {
                "reason": REASON_INVALID_STATUS,
                "status": booking.status,
                "next_available_slot": None,
            },
        )


def _is_provider(schedule: Schedule, actor_id: int | None) -> bool:
    """Whether ``actor_id`` is the schedule's owner (its specialist, or its owning agent)."""
    owner = schedule.specialist_id if schedule.specialist_id is not None else schedule.agent_id
    return actor_id is not None and actor_id == owner


def _authorize(booking: Booking, schedule: Schedule, by: CancelledBy, actor_id: int | None) -> None:
    """``by=agent``: the booker; ``by=specialist``: the schedule's owner; ``system``: anyone."""
    if by is CancelledBy.SYSTEM:
        return
    if by is CancelledBy.AGENT:
        ok = actor_id is not None and actor_id == booking.booker_agent_id
    else:
        ok = _is_provider(schedule, actor_id)
    if not ok:
        raise Forbidden(f"booking {booking.id} belongs to someone else", {"booking_id": booking.id})


def _check_owner(booking: Booking, schedule: Schedule, owner: ScheduleOwner) -> None:
    if not owner.owns(schedule):
        raise Forbidden(
            f"booking {booking.id} is on a schedule that belongs to someone else",
            {"booking_id": booking.id},
        )


async def _next_slot(
    uow: UnitOfWork, spec: ScheduleSpec, after: datetime, exclude: datetime | None = None
) -> Slot | None:
    now = uow.clock.now()
    after = max(after, now)
    horizon = after + timedelta(days=NEXT_SLOT_HORIZON_DAYS + 1)
    taken = dict((await taken_seats(uow, [spec.id], after, horizon)).get(spec.id, {}))
    if exclude is not None:
        taken[exclude] = spec.capacity
    return next_free_slot(spec, after, now, taken, NEXT_SLOT_HORIZON_DAYS)


async def _conflict(
    uow: UnitOfWork, spec: ScheduleSpec, start: datetime, reason: str
) -> BookingConflict:
    """A BOOKING_CONFLICT for ``start`` with the next slot that can be booked instead."""
    after = uow.clock.now() if reason in (REASON_PAST, REASON_NOTICE) else start
    nxt = await _next_slot(uow, spec, after, exclude=start)
    messages = {
        REASON_FULL: "the slot is fully booked",
        REASON_PAST: "the slot has already started",
        REASON_NOTICE: f"the schedule needs {spec.min_notice_minutes} minutes' notice",
    }
    message = messages.get(reason, f"the slot is not bookable ({reason})")
    hint = f"; the next free slot is {nxt.slot_id}" if nxt else "; no free slot soon"
    return BookingConflict(
        message + hint,
        {"reason": reason, "next_available_slot": nxt.ref() if nxt else None},
    )


async def _require_bookable(uow: UnitOfWork, schedule: Bookable, start: datetime) -> set[int]:
    """The seats of the slot at ``start`` held now, if a seat of it can be booked now;
    otherwise ``BookingConflict`` with the reason and the next free slot."""
    spec = schedule.spec
    held = await _seats_held(uow, schedule.id, start)
    reason = unbookable_reason(spec, start, uow.clock.now(), {start: len(held)})
    if reason is not None:
        raise await _conflict(uow, spec, start, reason)
    return held


_BOOKINGS: Any = Booking.__table__.c
_SEATS_HELD = Direct(
    select(_BOOKINGS.seat).where(
        _BOOKINGS.schedule_id == bindparam("schedule_id"),
        _BOOKINGS.slot_start == bindparam("start", type_=_BOOKINGS.slot_start.type),
        _BOOKINGS.status.in_([literal(status) for status in _SEAT_HOLDING]),
    )
)


async def _seats_held(uow: UnitOfWork, schedule_id: int, start: datetime) -> set[int]:
    rows = await direct_rows(uow, _SEATS_HELD, {"schedule_id": schedule_id, "start": start})
    return {int(row.seat) for row in rows}


_BY_KEY = Direct(
    select(_BOOKINGS.id).where(
        _BOOKINGS.booker_agent_id == bindparam("agent_id"),
        _BOOKINGS.idempotency_key == bindparam("key"),
    )
)


async def _by_key(uow: UnitOfWork, agent_id: int, key: str) -> Booking | None:
    """The agent's booking made with idempotency key ``key``, if any: its id by the key's
    unique index (one statement, the usual answer being none), then the row itself."""
    rows = await direct_rows(uow, _BY_KEY, {"agent_id": agent_id, "key": key})
    if not rows:
        return None
    return await uow.session.get(Booking, int(rows[0].id))


def _replay(existing: Booking, schedule_id: int, start: datetime, topic: str) -> Booking:
    if (
        existing.schedule_id != schedule_id
        or existing.slot_start != start
        or (existing.topic != topic)
    ):
        raise IdempotencyMismatch(
            "this idempotency key was already used to book "
            f"{make_slot_id(existing.schedule_id, existing.slot_start)}; use a new key "
            "for a different booking",
            {"retryable": False, "booking_id": existing.id},
        )
    return existing


def check_long_text(field: str, value: str, limit: int) -> str:
    """``value`` as multi-line text of at most ``limit`` characters, or a field error."""
    if len(value) > limit:
        raise ValidationFailed.field(field, f"at most {limit} characters")
    return require(field, lambda v: check_text(v, multiline=True), value)


# --- booking -----------------------------------------------------------------------------------

_AGENTS: Any = Agent.__table__.c
_LIVE_AGENT = Direct(
    select(_AGENTS.id).where(_AGENTS.id == bindparam("agent_id"), _AGENTS.deleted_at.is_(None))
)


async def book_slot(
    uow: UnitOfWork,
    *,
    agent_id: int,
    slot_id: str,
    idempotency_key: str | None,
    topic: str = "",
) -> Booking:
    """Book one seat of a slot for ``agent_id`` (flushed, not committed).

    The same ``(agent, idempotency_key)`` returns the booking it made before (a key reused
    for another slot is ``IdempotencyMismatch``). A slot that cannot be booked, or whose
    seats are all taken, is ``BookingConflict`` with the reason and the next free slot.
    """
    schedule_id, start = parse_slot_id(slot_id)
    topic = check_long_text("topic", topic, MAX_TOPIC)
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > MAX_KEY:
            raise ValidationFailed.field(
                "idempotency_key", f"give 1 to {MAX_KEY} characters, or leave it out"
            )
        existing = await _by_key(uow, agent_id, idempotency_key)
        if existing is not None:
            return _replay(existing, schedule_id, start, topic)
    if not await direct_rows(uow, _LIVE_AGENT, {"agent_id": agent_id}):
        raise NotFound(f"agent {agent_id} not found", {"agent_id": agent_id})
    schedule = await bookable_schedule(uow, schedule_id, agent_id)
    held = await _require_bookable(uow, schedule, start)
    spec = schedule.spec
    now = uow.clock.now()

    status = BookingStatus.ACCEPTED if schedule.auto_accept else BookingStatus.PENDING
    fields: dict[str, Any] = dict(
        schedule_id=schedule.id,
        specialist_id=schedule.specialist_id,
        booker_agent_id=agent_id,
        slot_start=start,
        slot_end=slot_end(spec, start),
        status=status.value,
        price_amount=schedule.price_amount,
        price_currency=schedule.price_currency,
        idempotency_key=idempotency_key,
        topic=topic,
        created_at=now,
        updated_at=now,
        accepted_at=now if status is BookingStatus.ACCEPTED else None,
        rescheduled_from_id=None,
        refund_anchor_at=start,
    )
    booking = await take_seat(uow, schedule.capacity, fields, held)
    if booking is None:
        # A concurrent call with the same key may have won the seat: answer as a replay.
        if idempotency_key is not None:
            existing = await _by_key(uow, agent_id, idempotency_key)
            if existing is not None:
                return _replay(existing, schedule_id, start, topic)
        raise await _conflict(uow, spec, start, REASON_FULL)
    await record_change(uow, booking, CancelledBy.AGENT, None, "booked")
    await emit_booking(uow, BOOKING_CREATED, booking, schedule=schedule)
    if booking.status == BookingStatus.ACCEPTED.value:
        await emit_booking(uow, BOOKING_CONFIRMED, booking, schedule=schedule)
    return booking


def _check_location(location: str) -> str:
    if len(location) > MAX_LOCATION:
        raise ValidationFailed.field("location", f"at most {MAX_LOCATION} characters")
    return require("location", check_text, location.strip())


async def accept_booking(
    uow: UnitOfWork, owner: ScheduleOwner, booking_id: int, location: str | None = None
) -> Booking:
    """The schedule's owner accepts a pending booking, optionally saying where it happens."""
    place = None if location is None else _check_location(location)
    booking = await lock_booking(uow, booking_id)
    _check_owner(booking, await _schedule_of(uow, booking), owner)
    require_status(booking, "accepted", [BookingStatus.PENDING])
    now = uow.clock.now()
    booking.status = BookingStatus.ACCEPTED.value
    booking.accepted_at = now
    booking.updated_at = now
    if place:
        booking.location = place
    await flush_booking(uow, booking)
    await record_change(
        uow, booking, CancelledBy.SPECIALIST, BookingStatus.PENDING.value, "accepted"
    )
    await emit_booking(uow, BOOKING_CONFIRMED, booking)
    await uow.session.flush()
    return booking


async def reject_booking(
    uow: UnitOfWork, owner: ScheduleOwner, booking_id: int, reason: str = ""
) -> Booking:
    """The schedule's owner rejects a pending booking, which frees its seat."""
    reason = check_long_text("reason", reason, MAX_REASON)
    booking = await lock_booking(uow, booking_id)
    _check_owner(booking, await _schedule_of(uow, booking), owner)
    require_status(booking, "rejected", [BookingStatus.PENDING])
    booking.status = BookingStatus.REJECTED.value
    booking.updated_at = uow.clock.now()
    await flush_booking(uow, booking)
    await record_change(uow, booking, CancelledBy.SPECIALIST, BookingStatus.PENDING.value, reason)
    await _seat_freed(uow, booking)
    await emit_booking(uow, BOOKING_CANCELLED, booking)
    await uow.session.flush()
    return booking


def normalize_reason_code(code: str) -> str:
    """A caller's cancellation reason code in canonical form; ``ValidationFailed`` if unknown."""
    key = code.strip().lower()
    canonical = key if key in CANCEL_REASON_CODES else _CAMEL_REASONS.get(key.replace("_", ""))
    if canonical is None:
        raise ValidationFailed.field(
            "reason_code",
            f"{code!r} is not a reason code; use one of {', '.join(CANCEL_REASON_CODES)}",
        )
    return canonical


async def mark_canceled(
    uow: UnitOfWork,
    booking: Booking,
    by: CancelledBy,
    reason_code: str,
    reason: str,
    note: str,
) -> None:
    """Cancel a pending or accepted booking already locked, with its history line, and free
    its seat; no refund, no event (the caller's)."""
    require_status(booking, "canceled", [BookingStatus.PENDING, BookingStatus.ACCEPTED])
    before = booking.status
    now = uow.clock.now()
    booking.status = BookingStatus.CANCELED.value
    booking.cancelled_by = by.value
    booking.cancel_reason_code = reason_code
    booking.cancel_reason = reason
    booking.cancelled_at = now
    booking.updated_at = now
    await flush_booking(uow, booking)
    await record_change(uow, booking, by, before, note or reason_code)
    await _seat_freed(uow, booking)


async def cancel_booking(
    uow: UnitOfWork,
    booking_id: int,
    by: CancelledBy,
    actor_id: int | None,
    reason_code: str,
    reason: str = "",
) -> Booking:
    """Cancel a pending or accepted booking, which frees its seat.

    ``by=agent``: ``actor_id`` is the booker; ``by=specialist``: the schedule's owner (its
    specialist, or the agent that owns it); ``by=system``: no actor. ``reason_code`` is one
    of ``CANCEL_REASON_CODES``.
    """
    code = normalize_reason_code(reason_code)
    reason = check_long_text("reason", reason, MAX_REASON)
    booking = await lock_booking(uow, booking_id)
    _authorize(booking, await _schedule_of(uow, booking), by, actor_id)
    await mark_canceled(uow, booking, by, code, reason, "")
    await emit_booking(uow, BOOKING_CANCELLED, booking)
    await uow.session.flush()
    return booking


async def complete_booking(
    uow: UnitOfWork, booking_id: int, by: CancelledBy, actor_id: int | None
) -> Booking:
    """Mark an accepted booking completed, once its slot has ended.

    The booker (``by=agent``), the schedule's owner (``by=specialist``) or the system may.
    Before the slot's end: ``BookingConflict`` with reason ``not_ended`` and ``ends_at``.
    """
    booking = await lock_booking(uow, booking_id)
    _authorize(booking, await _schedule_of(uow, booking), by, actor_id)
    require_status(booking, "completed", [BookingStatus.ACCEPTED])
    now = uow.clock.now()
    if now < booking.slot_end:
        ends = booking.slot_end.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raise BookingConflict(
            f"booking {booking.id} cannot be completed before its slot ends at {ends}",
            {"reason": REASON_NOT_ENDED, "ends_at": ends, "next_available_slot": None},
        )
    booking.status = BookingStatus.COMPLETED.value
    booking.completed_at = now
    booking.updated_at = now
    await flush_booking(uow, booking)
    await record_change(uow, booking, by, BookingStatus.ACCEPTED.value, "completed")
    await emit_booking(uow, BOOKING_COMPLETED, booking)
    await uow.session.flush()
    return booking


async def reschedule_booking(
    uow: UnitOfWork, agent_id: int, booking_id: int, new_slot_id: str
) -> Booking:
    """Move the agent's booking to another slot of the same schedule; returns the new booking.

    The new booking keeps the old one's price and topic and links back to it; the old one is
    canceled (reason code ``rescheduled``) and links forward. A full or unbookable new slot
    is ``BookingConflict`` and changes nothing.
    """
    schedule_id, start = parse_slot_id(new_slot_id)
    old = await lock_booking(uow, booking_id)
    if old.booker_agent_id != agent_id:
        raise Forbidden(f"booking {booking_id} belongs to someone else", {"booking_id": booking_id})
    require_status(old, "rescheduled", [BookingStatus.PENDING, BookingStatus.ACCEPTED])
    if schedule_id != old.schedule_id:
        raise ValidationFailed.field(
            "new_slot_id",
            f"choose a slot of the booking's own schedule {old.schedule_id}; "
            "to move to another schedule, cancel and book anew",
        )
    if start == old.slot_start:
        raise ValidationFailed.field("new_slot_id", "this is the booking's current slot")
    schedule = await bookable_schedule(uow, schedule_id, agent_id)
    held = await _require_bookable(uow, schedule, start)
    spec = schedule.spec
    now = uow.clock.now()
    status = BookingStatus.ACCEPTED if schedule.auto_accept else BookingStatus.PENDING
    fields: dict[str, Any] = dict(
        schedule_id=schedule.id,
        specialist_id=old.specialist_id,
        booker_agent_id=agent_id,
        slot_start=start,
        slot_end=slot_end(spec, start),
        status=status.value,
        price_amount=old.price_amount,
        price_currency=old.price_currency,
        idempotency_key=None,
        topic=old.topic,
        created_at=now,
        updated_at=now,
        accepted_at=now if status is BookingStatus.ACCEPTED else None,
        rescheduled_from_id=old.id,
        # The refund band stays where the money was paid: never later than before.
        refund_anchor_at=min(old.refund_anchor_at or old.slot_start, start),
    )
    new = await take_seat(uow, schedule.capacity, fields, held)
    if new is None:
        raise await _conflict(uow, spec, start, REASON_FULL)
    old.rescheduled_to_id = new.id
    await mark_canceled(
        uow, old, CancelledBy.AGENT, RESCHEDULED, "", f"rescheduled to booking {new.id}"
    )
    await record_change(uow, new, CancelledBy.AGENT, None, f"rescheduled from booking {old.id}")
    await emit_booking(uow, BOOKING_RESCHEDULED, new, previous=old, schedule=schedule)
    await uow.session.flush()
    return new


async def add_note(
    uow: UnitOfWork, booking_id: int, by: CancelledBy, actor_id: int | None, note: str
) -> Booking:
    """Add a note after the session (accepted or completed, slot ended); kept in the history."""
    text = note.strip()
    if not text:
        raise ValidationFailed.field("note", "write a note of at least one character")
    check_long_text("note", text, MAX_NOTE)
    booking = await lock_booking(uow, booking_id)
    _authorize(booking, await _schedule_of(uow, booking), by, actor_id)
    require_status(booking, "given notes", [BookingStatus.ACCEPTED, BookingStatus.COMPLETED])
    if uow.clock.now() < booking.slot_end:
        ends = booking.slot_end.astimezone(UTC).isoformat().replace("+00:00", "Z")
        raise BookingConflict(
            f"notes can be added after the session, which ends at {ends}",
            {"reason": REASON_NOT_ENDED, "ends_at": ends, "next_available_slot": None},
        )
    booking.notes = f"{booking.notes}\n{text}" if booking.notes else text
    booking.updated_at = uow.clock.now()
    await flush_booking(uow, booking)
    await record_change(uow, booking, by, booking.status, text)
    await uow.session.flush()
    return booking


async def set_location(
    uow: UnitOfWork, owner: ScheduleOwner, booking_id: int, location: str
) -> Booking:
    """The schedule's owner says where a pending or accepted booking happens (an address or a
    video link); an empty ``location`` clears it. Kept in the history."""
    place = _check_location(location)
    booking = await lock_booking(uow, booking_id)
    _check_owner(booking, await _schedule_of(uow, booking), owner)
    require_status(booking, "given a location", [BookingStatus.PENDING, BookingStatus.ACCEPTED])
    booking.location = place or None
    booking.updated_at = uow.clock.now()
    await flush_booking(uow, booking)
    await record_change(
        uow, booking, CancelledBy.SPECIALIST, booking.status, f"location: {place or '-'}"
    )
    await uow.session.flush()
    return booking


DISMISSABLE = (
    BookingStatus.REJECTED,
    BookingStatus.CANCELED,
    BookingStatus.COMPLETED,
    BookingStatus.DISPUTE_DONE,
)
"""Statuses a booker may dismiss a booking in: nothing is left to do about it."""


async def dismiss_booking(uow: UnitOfWork, agent_id: int, booking_id: int) -> Booking:
    """The booker hides a finished booking from its default lists (``get_booking`` still
    finds it). Dismissing it again changes nothing."""
    booking = await lock_booking(uow, booking_id)
    if booking.booker_agent_id != agent_id:
        raise Forbidden(
            f"only the booker can dismiss booking {booking_id}", {"booking_id": booking_id}
        )
    require_status(booking, "dismissed", DISMISSABLE)
    if booking.dismissed_at is None:
        booking.dismissed_at = uow.clock.now()
        await flush_booking(uow, booking)
        await record_change(uow, booking, CancelledBy.AGENT, booking.status, "dismissed")
        await uow.session.flush()
    return booking


# --- reading -----------------------------------------------------------------------------------


async def get_booking(
    uow: UnitOfWork,
    booking_id: int,
    *,
    agent_id: int | None = None,
    specialist_id: int | None = None,
) -> Booking:
    """A booking, for its booker, the agent owning its schedule, or its specialist.

    With neither ``agent_id`` nor ``specialist_id`` (trusted internal callers) no check is
    made. Anyone else gets ``Forbidden``.
    """
    booking = await _load_booking(uow, booking_id)
    if agent_id is None and specialist_id is None:
        return booking
    if agent_id is not None and booking.booker_agent_id == agent_id:
        return booking
    if specialist_id is not None and booking.specialist_id == specialist_id:
        return booking
    schedule = await _schedule_of(uow, booking)
    if agent_id is not None and schedule.agent_id == agent_id:
        return booking
    raise Forbidden(f"booking {booking_id} belongs to someone else", {"booking_id": booking_id})


async def role_of(uow: UnitOfWork, booking: Booking, agent_id: int) -> str:
    """``booker`` or ``provider``: how ``agent_id`` stands to a booking it may see."""
    if booking.booker_agent_id == agent_id:
        return ROLE_BOOKER
    if (await _schedule_of(uow, booking)).agent_id == agent_id:
        return ROLE_PROVIDER
    raise Forbidden(f"booking {booking.id} belongs to someone else", {"booking_id": booking.id})


async def booking_history(
    uow: UnitOfWork, booking_ids: Sequence[int]
) -> dict[int, list[BookingChange]]:
    """The change lines of each booking, oldest first (no access check: get the bookings first)."""
    if not booking_ids:
        return {}
    rows = await uow.session.execute(
        select(BookingChange)
        .where(BookingChange.booking_id.in_(list(booking_ids)))
        .order_by(BookingChange.booking_id, BookingChange.id)
    )
    out: dict[int, list[BookingChange]] = {i: [] for i in booking_ids}
    for change in rows.scalars():
        out[change.booking_id].append(change)
    return out


@dataclass(frozen=True)
class BookingPage:
    """One page of bookings, newest first; pass ``next_cursor`` to get the next page."""

    items: list[Booking]
    next_cursor: str | None


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return check_id(value["before"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValidationFailed.field(
            "cursor", "pass the next_cursor of the previous page unchanged"
        ) from None


def _statuses(status: str | Sequence[str] | None) -> list[str] | None:
    if status is None:
        return None
    wanted = [status] if isinstance(status, str) else list(status)
    known = {s.value for s in BookingStatus}
    bad = [s for s in wanted if s not in known]
    if bad:
        raise ValidationFailed.field(
            "status", f"unknown status {bad[0]!r}; use one of {', '.join(sorted(known))}"
        )
    return wanted


async def list_bookings(
    uow: UnitOfWork,
    *,
    agent_id: int | None = None,
    specialist_id: int | None = None,
    status: str | Sequence[str] | None = None,
    starts_after: datetime | None = None,
    starts_before: datetime | None = None,
    cursor: str | None = None,
    limit: int = PER_PAGE,
    role: str | None = None,
    include_dismissed: bool = False,
) -> BookingPage:
    """Bookings an agent made or received on its own schedules, or a specialist's bookings.

    Exactly one of ``agent_id`` or ``specialist_id``. An agent's ``role`` narrows the list to
    the bookings it made (``booker``) or received (``provider``); bookings the agent dismissed
    as booker are left out unless ``include_dismissed``. Newest first, ``limit`` (1-100) a page.
    """
    if (agent_id is None) == (specialist_id is None):
        raise ValueError("list_bookings needs exactly one of agent_id or specialist_id")
    if not 1 <= limit <= 100:
        raise ValidationFailed.field("limit", "give a page size from 1 to 100")
    if role not in (None, ROLE_BOOKER, ROLE_PROVIDER):
        raise ValidationFailed.field("role", f"use {ROLE_BOOKER} or {ROLE_PROVIDER}")
    query = select(Booking)
    if agent_id is not None:
        own_schedules = select(Schedule.id).where(Schedule.agent_id == agent_id)
        booked = Booking.booker_agent_id == agent_id
        received = Booking.schedule_id.in_(own_schedules)
        if role == ROLE_BOOKER:
            query = query.where(booked)
        elif role == ROLE_PROVIDER:
            query = query.where(received)
        else:
            query = query.where(or_(booked, received))
        if not include_dismissed and role != ROLE_PROVIDER:
            query = query.where(
                or_(Booking.dismissed_at.is_(None), Booking.booker_agent_id != agent_id)
            )
    else:
        query = query.where(Booking.specialist_id == specialist_id)
    wanted = _statuses(status)
    if wanted is not None:
        query = query.where(Booking.status.in_(wanted))
    if starts_after is not None:
        starts_after = require("starts_after", check_moment, starts_after)
        query = query.where(Booking.slot_start >= starts_after)
    if starts_before is not None:
        starts_before = require("starts_before", check_moment, starts_before)
        query = query.where(Booking.slot_start < starts_before)
    if cursor is not None:
        query = query.where(Booking.id < _decode_cursor(cursor))
    rows = await uow.session.execute(query.order_by(Booking.id.desc()).limit(limit + 1))
    items = list(rows.scalars())
    more = len(items) > limit
    items = items[:limit]
    return BookingPage(items, _encode_cursor(items[-1].id) if more else None)


async def count_bookings(
    uow: UnitOfWork, schedule_id: int, status: Iterable[str] | None = None
) -> int:
    """How many bookings a schedule has (optionally in the given statuses)."""
    query = select(func.count(Booking.id)).where(Booking.schedule_id == schedule_id)
    if status is not None:
        query = query.where(Booking.status.in_(list(status)))
    return int((await uow.session.execute(query)).scalar_one())


def booking_slot_id(booking: Booking) -> str:
    """The slot id of a booking's slot."""
    return make_slot_id(booking.schedule_id, booking.slot_start)
