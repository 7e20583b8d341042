"""Reading schedules: one (``get_schedule``), an owner's pages (``list_schedules``), seats
taken per slot (``taken_seats``) and free slots in a window (``get_availability``,
``get_specialist_availability``). Reads only; a private schedule is ``NotFound`` to anyone but
its owner."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select

from agent_server.booking.availability import (
    ScheduleSpec,
    Slot,
    free_slots,
)
from agent_server.booking.models import SEAT_HOLDING, Booking, Schedule, Specialist
from agent_server.booking.schedules.owners import ScheduleOwner
from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.inputs import (
    check_moment,
    require,
)
from agent_server.kernel.store import Direct, UnitOfWork, direct_rows

MAX_AVAILABILITY_WINDOW = timedelta(days=62)
PER_PAGE = 50
"""The longest availability window, and schedules per page of a listing by default."""


@dataclass(frozen=True)
class SchedulePage:
    """One page of schedules, newest first."""

    items: list[Schedule]
    page: int
    per_page: int
    total: int

    @property
    def has_more(self) -> bool:
        return self.page * self.per_page < self.total


async def load_schedule(uow: UnitOfWork, schedule_id: int, *, lock: bool = False) -> Schedule:
    """A live schedule, private or not; ``NotFound`` for an unknown or deleted id. ``lock``:
    read it locked for the rest of the transaction (``FOR UPDATE`` on PostgreSQL; SQLite
    takes its write lock when the transaction begins), for a change computed from it."""
    schedule = await uow.session.get(
        Schedule, schedule_id, with_for_update=lock, populate_existing=lock
    )
    if schedule is None or schedule.deleted_at is not None:
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    return schedule


async def get_schedule(
    uow: UnitOfWork, schedule_id: int, viewer: ScheduleOwner | None = None
) -> Schedule:
    """A live schedule; a private one only for its owner (``NotFound`` for anyone else)."""
    schedule = await load_schedule(uow, schedule_id)
    if schedule.private and (viewer is None or not viewer.owns(schedule)):
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    return schedule


_SCHEDULES: Any = Schedule.__table__.c
_PRICE = Direct(
    select(
        _SCHEDULES.price_amount,
        _SCHEDULES.price_currency,
        _SCHEDULES.private,
        _SCHEDULES.agent_id,
        _SCHEDULES.specialist_id,
    ).where(_SCHEDULES.id == bindparam("schedule_id"), _SCHEDULES.deleted_at.is_(None))
)


async def schedule_price(
    uow: UnitOfWork, schedule_id: int, viewer: ScheduleOwner | None = None
) -> tuple[int, str] | None:
    """What a slot of a live schedule costs (amount in base units, currency), ``None`` when
    it is free: one statement reading the price alone. ``NotFound`` as ``get_schedule``."""
    rows = await direct_rows(uow, _PRICE, {"schedule_id": schedule_id})
    row = rows[0] if rows else None
    if row is None or (
        row.private and (viewer is None or not viewer.is_owner(row.agent_id, row.specialist_id))
    ):
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    if row.price_amount <= 0:
        return None
    return int(row.price_amount), str(row.price_currency)


async def list_schedules(
    uow: UnitOfWork,
    owner: ScheduleOwner,
    page: int = 1,
    per_page: int = PER_PAGE,
    *,
    before: int | None = None,
) -> SchedulePage:
    """The owner's live schedules, newest first, ``per_page`` (1-100) at a time; only those
    with an id below ``before`` (a cursor's position: pass page 1 with it) when given."""
    if page < 1:
        raise ValidationFailed.field("page", "pages start at 1")
    if not 1 <= per_page <= 100:
        raise ValidationFailed.field("per_page", "give a page size from 1 to 100")
    if owner.agent_id is not None:
        mine = Schedule.agent_id == owner.agent_id
    else:
        mine = Schedule.specialist_id == owner.specialist_id
    live = (mine, Schedule.deleted_at.is_(None))
    total = (await uow.session.execute(select(func.count(Schedule.id)).where(*live))).scalar_one()
    below = [Schedule.id < before] if before is not None else []
    rows = await uow.session.execute(
        select(Schedule)
        .where(*live, *below)
        .order_by(Schedule.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return SchedulePage(list(rows.scalars()), page, per_page, int(total))


async def taken_seats(
    uow: UnitOfWork, schedule_ids: Sequence[int], window_start: datetime, window_end: datetime
) -> dict[int, dict[datetime, int]]:
    """Seats held per schedule and slot start (UTC) for slots starting in the window."""
    if not schedule_ids:
        return {}
    rows = await uow.session.execute(
        select(Booking.schedule_id, Booking.slot_start, func.count(Booking.id))
        .where(
            Booking.schedule_id.in_(list(schedule_ids)),
            Booking.slot_start >= window_start,
            Booking.slot_start < window_end,
            Booking.status.in_([s.value for s in SEAT_HOLDING]),
        )
        .group_by(Booking.schedule_id, Booking.slot_start)
    )
    out: dict[int, dict[datetime, int]] = {}
    for schedule_id, start, count in rows:
        out.setdefault(schedule_id, {})[start.astimezone(UTC)] = int(count)
    return out


def check_window(window_start: datetime, window_end: datetime) -> tuple[datetime, datetime]:
    """A valid availability window in UTC, or ``ValidationFailed`` naming the bad end."""
    start = require("window_start", check_moment, window_start)
    end = require("window_end", check_moment, window_end)
    if end <= start:
        raise ValidationFailed.field("window_end", "must be after window_start")
    if end - start > MAX_AVAILABILITY_WINDOW:
        raise ValidationFailed.field(
            "window_end",
            f"the window may span at most {MAX_AVAILABILITY_WINDOW.days} days; ask for less",
        )
    return start, end


async def get_availability(
    uow: UnitOfWork,
    schedule_id: int,
    window_start: datetime,
    window_end: datetime,
    viewer_agent_id: int | None = None,
) -> list[Slot]:
    """Free slots of a schedule starting in the window (at most 62 days), in time order."""
    start, end = check_window(window_start, window_end)
    viewer = ScheduleOwner.agent(viewer_agent_id) if viewer_agent_id is not None else None
    schedule = await get_schedule(uow, schedule_id, viewer)
    taken = (await taken_seats(uow, [schedule.id], start, end)).get(schedule.id, {})
    return free_slots(ScheduleSpec.from_row(schedule), start, end, uow.clock.now(), taken)


async def get_specialist_availability(
    uow: UnitOfWork, specialist_id: int, window_start: datetime, window_end: datetime
) -> list[Slot]:
    """Free slots of all a specialist's public schedules in the window, in time order."""
    start, end = check_window(window_start, window_end)
    if await uow.session.get(Specialist, specialist_id) is None:
        raise NotFound(f"specialist {specialist_id} not found", {"specialist_id": specialist_id})
    rows = await uow.session.execute(
        select(Schedule).where(
            Schedule.specialist_id == specialist_id,
            Schedule.deleted_at.is_(None),
            Schedule.private.is_(False),
        )
    )
    schedules = list(rows.scalars())
    taken = await taken_seats(uow, [s.id for s in schedules], start, end)
    now = uow.clock.now()
    slots: list[Slot] = []
    for schedule in schedules:
        spec = ScheduleSpec.from_row(schedule)
        slots.extend(free_slots(spec, start, end, now, taken.get(schedule.id, {})))
    slots.sort(key=lambda s: (s.start, s.schedule_id))
    return slots
