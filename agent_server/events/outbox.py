"""Writing events to the outbox, in the transaction of the change that causes them.

``emit`` writes one row to ``outbox_events`` in the caller's transaction and never commits:
the event exists exactly when the change does, and a rolled-back change leaves no event
behind. The delivery worker sends it later (``agent_server.events.worker``).

The body an agent receives is ``envelope(event)`` serialised by ``body_bytes``::

    {"id": "evt_...", "event": "booking.created", "created_at": "2026-03-02T08:00:00Z",
     "agent_id": 7, "data": {...}}
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert

from agent_server.events.models import OutboxEvent, OutboxStatus
from agent_server.kernel.store import Direct, UnitOfWork, column_binds, direct_execute

BOOKING_CREATED = "booking.created"
BOOKING_CONFIRMED = "booking.confirmed"
BOOKING_CANCELLED = "booking.cancelled"
BOOKING_COMPLETED = "booking.completed"
BOOKING_RESCHEDULED = "booking.rescheduled"
BOOKING_EXPIRED = "booking.expired"
BOOKING_DISPUTED = "booking.disputed"
BOOKING_PAID_OUT = "booking.paid_out"
DISPUTE_RESOLVED = "dispute.resolved"
REVIEW_CREATED = "review.created"
DEPOSIT_CONFIRMED = "deposit.confirmed"
DEPOSIT_REVERSED = "deposit.reversed"
BALANCE_LOW = "balance.low"
WITHDRAWAL_REQUESTED = "withdrawal.requested"
WITHDRAWAL_SENT = "withdrawal.sent"
WITHDRAWAL_CONFIRMED = "withdrawal.confirmed"
WITHDRAWAL_FAILED = "withdrawal.failed"  # also rejected or cancelled: the money came back

EVENT_TYPES: tuple[str, ...] = (
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
    DEPOSIT_CONFIRMED,
    DEPOSIT_REVERSED,
    BALANCE_LOW,
    WITHDRAWAL_REQUESTED,
    WITHDRAWAL_SENT,
    WITHDRAWAL_CONFIRMED,
    WITHDRAWAL_FAILED,
)


def new_event_id() -> str:
    """A unique event id, ``evt_`` and 32 hex digits; receivers deduplicate on it."""
    return f"evt_{uuid.uuid4().hex}"


def iso(at: datetime) -> str:
    """A UTC timestamp as ISO 8601 with a ``Z``."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


_EVENTS: Any = OutboxEvent.__table__
_INSERT_EVENT = Direct(
    insert(_EVENTS).values(
        {
            **column_binds(_EVENTS, ("event_id", "type", "agent_id", "payload", "created_at")),
            "status": OutboxStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": bindparam("created_at", type_=_EVENTS.c.next_attempt_at.type),
            "updated_at": bindparam("created_at", type_=_EVENTS.c.updated_at.type),
        }
    )
)


async def emit(uow: UnitOfWork, *, type: str, agent_id: int, data: Mapping[str, Any]) -> str:
    """Write an event for ``agent_id`` in the caller's transaction; its event id.

    ``data`` must be JSON-ready. Nothing is committed here: the caller's commit keeps the
    event together with the change, its rollback drops both. One statement straight to the
    driver (the row is never read back in the transaction, so no ORM object is made).
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    payload = json.loads(json.dumps(dict(data)))  # JSON-ready now, not at commit time
    event_id = new_event_id()
    values = {
        "event_id": event_id,
        "type": type,
        "agent_id": agent_id,
        "payload": payload,
        "created_at": uow.clock.now(),
    }
    await direct_execute(uow, _INSERT_EVENT, values)
    return event_id


def envelope(event: OutboxEvent) -> dict[str, Any]:
    """The JSON object delivered for ``event``."""
    return {
        "id": event.event_id,
        "event": event.type,
        "created_at": iso(event.created_at),
        "agent_id": event.agent_id,
        "data": event.payload,
    }


def body_bytes(event: OutboxEvent) -> bytes:
    """The exact bytes POSTed (and signed) for ``event``: compact JSON, keys sorted."""
    return json.dumps(envelope(event), separators=(",", ":"), sort_keys=True).encode()
