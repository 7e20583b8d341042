"""The delivery log an agent (or its owner on the dashboard) reads: each event, its status,
its attempts and what each attempt got back. Newest events first.

``list_deliveries_after`` pages by cursor (REST): a page starts below the last event shown, so
events written meanwhile neither shift nor repeat it. ``list_deliveries`` pages by number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from agent_server.events.models import OutboxEvent, OutboxStatus, WebhookDelivery
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.paging import decode_cursor, page_of
from agent_server.kernel.store import UnitOfWork

MAX_PER_PAGE = 100


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt."""

    attempt: int
    started_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


@dataclass(frozen=True)
class EventDelivery:
    """One event and how its delivery went."""

    event_id: str
    type: str
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    payload: dict[str, Any]
    log: list[Attempt]


@dataclass(frozen=True)
class DeliveryPage:
    items: list[EventDelivery]
    page: int
    per_page: int
    total: int


@dataclass(frozen=True)
class DeliveryCursorPage:
    items: list[EventDelivery]
    total: int
    next_cursor: str | None


def _filters(agent_id: int, status: str | None) -> list[Any]:
    known = [s.value for s in OutboxStatus]
    if status is not None and status not in known:
        raise ValidationFailed.field("status", f"use one of {', '.join(known)}")
    where: list[Any] = [OutboxEvent.agent_id == agent_id]
    if status is not None:
        where.append(OutboxEvent.status == status)
    return where


async def _count(uow: UnitOfWork, where: list[Any]) -> int:
    total = (
        await uow.session.execute(select(func.count(OutboxEvent.id)).where(*where))
    ).scalar_one()
    return int(total)


async def list_deliveries_after(
    uow: UnitOfWork,
    agent_id: int,
    *,
    cursor: str | None = None,
    limit: int = 20,
    status: str | None = None,
) -> DeliveryCursorPage:
    """The agent's events below ``cursor`` (from the newest without one), ``limit`` of them
    with their attempts, and the cursor of the page after them (None at the end)."""
    if not 1 <= limit <= MAX_PER_PAGE:
        raise ValidationFailed.field("limit", f"give a page size from 1 to {MAX_PER_PAGE}")
    before = decode_cursor(cursor)
    where = _filters(agent_id, status)
    total = await _count(uow, where)
    if before is not None:
        where.append(OutboxEvent.id < before)
    rows = list(
        (
            await uow.session.execute(
                select(OutboxEvent).where(*where).order_by(OutboxEvent.id.desc()).limit(limit + 1)
            )
        ).scalars()
    )
    events, next_cursor = page_of(rows, limit)
    return DeliveryCursorPage(await _with_attempts(uow, events), total, next_cursor)


async def list_deliveries(
    uow: UnitOfWork,
    agent_id: int,
    *,
    page: int = 1,
    per_page: int = 20,
    status: str | None = None,
) -> DeliveryPage:
    """One page of the agent's events with their attempts, newest first."""
    if page < 1:
        raise ValidationFailed.field("page", "pages start at 1")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValidationFailed.field("per_page", f"give a page size from 1 to {MAX_PER_PAGE}")
    where = _filters(agent_id, status)
    total = await _count(uow, where)
    events = list(
        (
            await uow.session.execute(
                select(OutboxEvent)
                .where(*where)
                .order_by(OutboxEvent.id.desc())
                .limit(per_page)
                .offset((page - 1) * per_page)
            )
        ).scalars()
    )
    return DeliveryPage(await _with_attempts(uow, events), page, per_page, total)


async def _with_attempts(uow: UnitOfWork, events: list[OutboxEvent]) -> list[EventDelivery]:
    """Each event with its delivery attempts, in the order given."""
    logs: dict[int, list[Attempt]] = {e.id: [] for e in events}
    if events:
        rows = await uow.session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.outbox_event_id.in_(list(logs)))
            .order_by(WebhookDelivery.outbox_event_id, WebhookDelivery.id)
        )
        for d in rows.scalars():
            logs[d.outbox_event_id].append(
                Attempt(d.attempt, d.started_at, d.status_code, d.error, d.duration_ms)
            )
    return [
        EventDelivery(
            event_id=e.event_id,
            type=e.type,
            created_at=e.created_at,
            status=e.status,
            attempts=e.attempts,
            next_attempt_at=e.next_attempt_at if e.status == OutboxStatus.PENDING else None,
            last_status_code=e.last_status_code,
            last_error=e.last_error,
            delivered_at=e.delivered_at,
            payload=e.payload,
            log=logs[e.id],
        )
        for e in events
    ]
