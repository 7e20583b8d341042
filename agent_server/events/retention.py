"""How long settled events are kept: 30 days after they were delivered or given up on.

An event that was delivered, failed for good or skipped (no callback URL) never changes again:
the worker claims only pending rows. It stays in the delivery log (``GET
/api/agent/webhooks/deliveries``) for ``OUTBOX_RETENTION`` after it settled, then
``purge_settled_events`` deletes it with its attempts (``webhook_deliveries``). Pending events,
including those waiting for a retry, are never deleted.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Table, delete, select

from agent_server.events.models import OutboxEvent, OutboxStatus, WebhookDelivery
from agent_server.kernel.store import Database

OUTBOX_RETENTION = timedelta(days=30)
SETTLED = (OutboxStatus.DELIVERED.value, OutboxStatus.FAILED.value, OutboxStatus.SKIPPED.value)

_EVENTS: Table = OutboxEvent.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = WebhookDelivery.__table__  # type: ignore[assignment]


async def purge_settled_events(
    db: Database,
    older_than: timedelta = OUTBOX_RETENTION,
    *,
    batch_size: int = 500,
    max_batches: int = 100,
) -> int:
    """Delete events settled more than ``older_than`` ago, with their attempts; how many.

    ``updated_at`` is when an event settled (``delivered_at`` too, for delivered ones). Deletes
    at most ``batch_size`` events per transaction, oldest first, so a large backlog never holds
    long locks, and at most ``max_batches`` batches per call; the next call goes on.
    """
    total = 0
    for _ in range(max_batches):
        async with db.uow() as uow:
            cutoff = uow.clock.now() - older_than
            old = (_EVENTS.c.status.in_(SETTLED), _EVENTS.c.updated_at < cutoff)
            ids = list(
                (
                    await uow.session.execute(
                        select(_EVENTS.c.id).where(*old).order_by(_EVENTS.c.id).limit(batch_size)
                    )
                ).scalars()
            )
            if not ids:
                break
            await uow.session.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.outbox_event_id.in_(ids)))
            deleted = await uow.session.execute(delete(_EVENTS).where(_EVENTS.c.id.in_(ids), *old))
            await uow.commit()
        total += int(deleted.rowcount)  # type: ignore[attr-defined]
        if len(ids) < batch_size:
            break
    return total
