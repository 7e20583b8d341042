"""Disputes: the booker contests a session, an operator settles it.

::

    accepted (after its end) | completed --open (booker, within the window)--> in_dispute
    in_dispute --resolve (operator: refund, release or split)--> dispute_done

Opening is allowed to the booker only, from the slot's end until ``window`` after it (the
``DISPUTE_WINDOW`` setting); after that the clock releases the escrow to the provider and
``BookingConflict`` with reason ``dispute_window_closed`` answers. One dispute per booking
(a unique index); while it is open the booking is ``in_dispute`` and its escrow stays held.
An operator resolves it with a full ``refund``, a ``release`` to the provider, or a ``split``
(a refund of part of the escrow, in its base units, the rest released less the commission);
the dispute records who, when and why, and the booking becomes ``dispute_done``.

Both steps read the booking under its row lock, so of two concurrent steps the second sees
the first's result; history lines and events (``booking.disputed``, ``dispute.resolved``) are
written once per real transition. The money steps are the service layer's
(``agent_server.services.disputes``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from agent_server.booking.events import emit_booking
from agent_server.booking.models import (
    Booking,
    BookingChange,
    BookingStatus,
    CancelledBy,
    Dispute,
    DisputeStatus,
)
from agent_server.booking.service import (
    REASON_NOT_ENDED,
    check_long_text,
    flush_booking,
    lock_booking,
    record_change,
    require_status,
)
from agent_server.events.outbox import BOOKING_DISPUTED, DISPUTE_RESOLVED, iso
from agent_server.kernel.errors import BookingConflict, Forbidden, ValidationFailed
from agent_server.kernel.store import UnitOfWork

DISPUTE_REASON_CODES: tuple[str, ...] = ("no_show", "ended_early", "not_as_described", "other")
"""Why a booker contests a session."""
RESOLUTIONS: tuple[str, ...] = ("refund", "release", "split")
"""How an operator settles a dispute: all back to the booker, all to the provider, or split."""
REASON_WINDOW_CLOSED = "dispute_window_closed"
MAX_DISPUTE_TEXT = 2000
MAX_RESOLUTION_NOTE = 2000
OPERATOR_ACTOR = "operator"


def check_reason_code(code: str) -> str:
    key = code.strip().lower()
    if key not in DISPUTE_REASON_CODES:
        raise ValidationFailed.field("reason_code", f"use one of {', '.join(DISPUTE_REASON_CODES)}")
    return key


def window_ends(booking: Booking, window: timedelta) -> datetime:
    """Until when the booker may open a dispute; the clock releases the escrow after it."""
    return booking.slot_end + window


async def open_dispute(
    uow: UnitOfWork,
    agent_id: int,
    booking_id: int,
    reason_code: str,
    text: str,
    window: timedelta,
) -> tuple[Booking, Dispute]:
    """The booker contests an ended session; the booking becomes ``in_dispute``."""
    code = check_reason_code(reason_code)
    text = check_long_text("text", text.strip(), MAX_DISPUTE_TEXT)
    if not text:
        raise ValidationFailed.field("text", "say in a sentence what went wrong")
    booking = await lock_booking(uow, booking_id)
    if booking.booker_agent_id != agent_id:
        raise Forbidden(f"booking {booking_id} belongs to someone else", {"booking_id": booking_id})
    require_status(booking, "disputed", [BookingStatus.ACCEPTED, BookingStatus.COMPLETED])
    now = uow.clock.now()
    if now < booking.slot_end:
        raise BookingConflict(
            f"booking {booking.id} can be disputed once its slot ends at {iso(booking.slot_end)}",
            {"reason": REASON_NOT_ENDED, "ends_at": iso(booking.slot_end)},
        )
    closes = window_ends(booking, window)
    if now >= closes:
        raise BookingConflict(
            f"the dispute window of booking {booking.id} closed at {iso(closes)}",
            {"reason": REASON_WINDOW_CLOSED, "closed_at": iso(closes)},
        )
    before = booking.status
    booking.status = BookingStatus.IN_DISPUTE.value
    booking.updated_at = now
    await flush_booking(uow, booking)
    dispute = Dispute(
        booking_id=booking.id,
        opened_by_agent_id=agent_id,
        reason_code=code,
        text=text,
        status=DisputeStatus.OPEN.value,
        opened_at=now,
    )
    uow.session.add(dispute)
    await record_change(uow, booking, CancelledBy.AGENT, before, f"disputed: {code}")
    await emit_booking(uow, BOOKING_DISPUTED, booking, extra={"dispute": dispute_data(dispute)})
    await uow.session.flush()
    return booking, dispute


@dataclass(frozen=True)
class Resolution:
    """An operator's checked decision: how, the refund in base units (None: decided by the
    escrow), who and why."""

    kind: str
    refund_amount: int | None
    operator: str
    note: str


def check_resolution(kind: str, refund_amount: int | None, operator: str, note: str) -> Resolution:
    """Validate an operator's decision before anything is read or changed."""
    kind = kind.strip().lower()
    if kind not in RESOLUTIONS:
        raise ValidationFailed.field("resolution", f"choose one of {', '.join(RESOLUTIONS)}")
    if kind == "split":
        if refund_amount is None or refund_amount <= 0:
            raise ValidationFailed.field(
                "refund_amount",
                "give the part refunded to the booker in base units, more than 0",
            )
    elif refund_amount is not None:
        raise ValidationFailed.field(
            "refund_amount", "give a refund amount only with the resolution split"
        )
    note = check_long_text("note", note.strip(), MAX_RESOLUTION_NOTE)
    if not note:
        raise ValidationFailed.field("note", "say why you decided so; it is recorded")
    if not operator:
        raise ValidationFailed.field("operator", "the operator's name is recorded; give it")
    return Resolution(kind, refund_amount, operator[:255], note)


async def lock_open_dispute(uow: UnitOfWork, booking_id: int) -> tuple[Booking, Dispute]:
    """The disputed booking under its row lock, and its open dispute."""
    booking = await lock_booking(uow, booking_id)
    require_status(booking, "resolved", [BookingStatus.IN_DISPUTE])
    dispute = await dispute_of(uow, booking.id)
    assert dispute is not None and dispute.status == DisputeStatus.OPEN.value  # in_dispute
    return booking, dispute


async def close_dispute(
    uow: UnitOfWork,
    booking: Booking,
    dispute: Dispute,
    decision: Resolution,
    *,
    refunded: int,
    settle_transaction_id: int | None,
) -> Booking:
    """Record the resolution (after its money step) and end the booking ``dispute_done``."""
    now = uow.clock.now()
    booking.status = BookingStatus.DISPUTE_DONE.value
    booking.updated_at = now
    await flush_booking(uow, booking)
    dispute.status = DisputeStatus.RESOLVED.value
    dispute.resolution = decision.kind
    dispute.refund_amount = refunded
    dispute.resolved_by = decision.operator
    dispute.resolution_note = decision.note
    dispute.resolved_at = now
    dispute.settle_transaction_id = settle_transaction_id
    uow.session.add(
        BookingChange(
            booking_id=booking.id,
            at=now,
            actor=OPERATOR_ACTOR,
            from_status=BookingStatus.IN_DISPUTE.value,
            to_status=booking.status,
            note=f"dispute resolved ({decision.kind}) by {decision.operator}: {decision.note}",
        )
    )
    await uow.session.flush()
    await emit_booking(uow, DISPUTE_RESOLVED, booking, extra={"dispute": dispute_data(dispute)})
    await uow.session.flush()
    return booking


async def dispute_of(uow: UnitOfWork, booking_id: int) -> Dispute | None:
    query = select(Dispute).where(Dispute.booking_id == booking_id)
    return (await uow.session.execute(query)).scalar_one_or_none()


def dispute_data(dispute: Dispute) -> dict[str, Any]:
    """A dispute as events and tools describe it."""
    return {
        "id": dispute.id,
        "booking_id": dispute.booking_id,
        "status": dispute.status,
        "reason_code": dispute.reason_code,
        "text": dispute.text,
        "opened_at": iso(dispute.opened_at),
        "resolution": dispute.resolution,
        "refund_amount": dispute.refund_amount,
        "resolved_by": dispute.resolved_by,
        "resolution_note": dispute.resolution_note,
        "resolved_at": iso(dispute.resolved_at) if dispute.resolved_at else None,
    }


@dataclass(frozen=True)
class DisputePage:
    items: list[tuple[Dispute, Booking]]
    next_cursor: str | None


def _cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def _after(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return int(base64.urlsafe_b64decode(padded.encode()).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValidationFailed.field(
            "cursor", "use the next_cursor of the previous page, or none"
        ) from None


async def list_disputes(
    uow: UnitOfWork,
    *,
    status: str | None = DisputeStatus.OPEN.value,
    cursor: str | None = None,
    limit: int = 50,
) -> DisputePage:
    """Disputes oldest first (the operator's queue), with their bookings."""
    query = (
        select(Dispute, Booking)
        .join(Booking, Booking.id == Dispute.booking_id)
        .where(Dispute.id > _after(cursor))
        .order_by(Dispute.id)
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(Dispute.status == status)
    rows = [(d, b) for d, b in (await uow.session.execute(query)).all()]
    more = len(rows) > limit
    rows = rows[:limit]
    return DisputePage(rows, _cursor(rows[-1][0].id) if more and rows else None)
