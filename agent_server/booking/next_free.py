"""Each schedule's ``next_free_at``: a lower bound of its next free slot, for fast search.

Search sorts by the next available slot and skips schedules with nothing free in the date
window without cutting slots for every schedule; it reads ``schedules.next_free_at``, which
promises: *no free slot of this schedule starts before this instant*. The value is exact
right after a refresh and stays a valid lower bound as time passes or slots fill up; NULL
means unknown. Search repairs what it reads, and ``refresh_due`` (run periodically) keeps the
column fresh so searches rarely have to.

Writers keep the promise with two calls (in the same transaction as their change):

* ``lower_next_free(session, schedule_id, start)`` when a seat of the slot starting at
  ``start`` is freed (cancellation, reschedule away, rejection);
* ``forget_next_free(session, schedule_id)`` when a schedule's hours, dates, blackouts,
  notice or capacity change (``refresh_next_free`` instead, to recompute at once).

Filling a slot needs no call: the bound stays true, and search moves it on when it looks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agent_server.booking.availability import ScheduleSpec, Slot, free_slots, next_free_slot
from agent_server.booking.models import SEAT_HOLDING, Booking, Schedule
from agent_server.kernel.store import Database

HORIZON_DAYS = 90
"""How far ahead a refresh looks; a schedule with nothing free gets ``now`` + this."""

Taken = Mapping[datetime, int]


async def seats_taken(
    session: AsyncSession, schedule_ids: Iterable[int], start: datetime, end: datetime
) -> dict[int, dict[datetime, int]]:
    """Seats held per slot start in ``[start, end)``, per schedule."""
    ids = sorted(set(schedule_ids))
    out: dict[int, dict[datetime, int]] = defaultdict(dict)
    if not ids:
        return out
    stmt = (
        select(Booking.schedule_id, Booking.slot_start, func.count())
        .where(
            Booking.schedule_id.in_(ids),
            Booking.status.in_([s.value for s in SEAT_HOLDING]),
            Booking.slot_start >= start,
            Booking.slot_start < end,
        )
        .group_by(Booking.schedule_id, Booking.slot_start)
    )
    for schedule_id, slot_start, count in await session.execute(stmt):
        out[schedule_id][slot_start] = count
    return out


def first_free(
    spec: ScheduleSpec,
    now: datetime,
    taken: Taken,
    *,
    until: datetime | None = None,
    after: datetime | None = None,
) -> Slot | None:
    """The first free slot from ``now`` (before ``until`` when given).

    Looks one day ahead, then three, then up to the horizon, since most schedules have a
    free slot within a day and cutting a week of slots costs more than it needs to.
    ``after``: an instant no free slot starts before (the schedule's ``next_free_at``), where
    the looking starts instead of ``now`` when it is later.
    """
    limit = now + timedelta(days=HORIZON_DAYS)
    if until is not None:
        limit = min(limit, until)
    begin = now if after is None or after <= now else after
    start = begin
    for days in (1, 3):
        stop = min(begin + timedelta(days=days), limit)
        if start < stop:
            found = free_slots(spec, start, stop, now, taken)
            if found:
                return found[0]
        start = stop
    if start >= limit:
        return None
    days_left = (limit - start).total_seconds() / 86400
    found_later = next_free_slot(spec, start, now, taken, horizon_days=max(1, int(days_left) + 1))
    if found_later is None or found_later.start >= limit:
        return None
    return found_later


def next_free_bound(spec: ScheduleSpec, now: datetime, taken: Taken) -> datetime:
    """What ``next_free_at`` should hold: the next free slot, or the end of the horizon."""
    slot = first_free(spec, now, taken)
    return slot.start if slot is not None else now + timedelta(days=HORIZON_DAYS)


async def refresh_next_free(
    session: AsyncSession, schedule_ids: Iterable[int], *, now: datetime
) -> dict[int, datetime]:
    """Recompute and store ``next_free_at`` of these schedules; returns the new values."""
    ids = sorted(set(schedule_ids))
    if not ids:
        return {}
    rows = (await session.scalars(select(Schedule).where(Schedule.id.in_(ids)))).all()
    return await _refresh_rows(session, rows, now=now)


async def _refresh_rows(
    session: AsyncSession, rows: Iterable[Schedule], *, now: datetime
) -> dict[int, datetime]:
    rows = list(rows)
    horizon = now + timedelta(days=HORIZON_DAYS)
    taken = await seats_taken(session, (r.id for r in rows), now, horizon)
    values = {
        r.id: next_free_bound(ScheduleSpec.from_row(r), now, taken.get(r.id, {})) for r in rows
    }
    await store_next_free(session, values)
    return values


async def store_next_free(session: AsyncSession, values: Mapping[int, datetime]) -> None:
    """Write computed ``next_free_at`` values (in id order, so concurrent writers never
    wait on each other in a cycle)."""
    if not values:
        return
    await session.execute(
        update(Schedule), [{"id": k, "next_free_at": values[k]} for k in sorted(values)]
    )


async def lower_next_free(session: AsyncSession, schedule_id: int, start: datetime) -> None:
    """A seat of the slot at ``start`` was freed: the next free slot may now be earlier."""
    await session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id, Schedule.next_free_at > start)
        .values(next_free_at=start)
        .execution_options(synchronize_session=False)
    )


async def forget_next_free(session: AsyncSession, schedule_id: int) -> None:
    """The schedule's hours or rules changed: its next free slot is unknown until refreshed."""
    await session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id)
        .values(next_free_at=None)
        .execution_options(synchronize_session=False)
    )


async def refresh_due(session: AsyncSession, *, now: datetime, limit: int = 1000) -> int:
    """Refresh up to ``limit`` schedules whose bound is unknown or passed; returns how many.

    Meant for a periodic job (every minute or so), so searches find fresh values.
    """
    stmt = (
        select(Schedule)
        .where(
            and_(
                Schedule.specialist_id.is_not(None),
                Schedule.private.is_(False),
                Schedule.deleted_at.is_(None),
            ),
            (Schedule.next_free_at.is_(None)) | (Schedule.next_free_at < now),
        )
        .order_by(Schedule.next_free_at, Schedule.id)
        .limit(limit)
    )
    rows = (await session.scalars(stmt)).all()
    await _refresh_rows(session, rows, now=now)
    return len(rows)


REFRESH_BATCH = 200
"""Bounds ``refresh_passed`` refreshes per transaction. A batch's schedules are loaded whole,
and the room they took stays with the process: at 1,000 a batch, the first pass of a server
started on a catalogue copied hours earlier raised its memory by 8 MiB (3 MiB at 200)."""
REFRESH_MOST = 100_000
"""Bounds ``refresh_passed`` refreshes at most per call: a server started after a while, or a
catalogue copied hours earlier, has thousands passed, and each one left stale is cut again by
every next-available search that meets it."""


async def refresh_passed(
    db: Database, *, batch: int = REFRESH_BATCH, most: int = REFRESH_MOST
) -> int:
    """Refresh every passed or unknown bound (up to ``most``), ``batch`` to a transaction so
    no transaction holds many rows; returns how many were refreshed."""
    refreshed = 0
    while refreshed < most:
        async with db.uow() as uow:
            done = await refresh_due(
                uow.session, now=uow.clock.now(), limit=min(batch, most - refreshed)
            )
            await uow.commit()
        refreshed += done
        if done < batch:
            break
    return refreshed
