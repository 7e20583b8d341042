"""Evaluating specialists: their matching schedules cut into slots, and their sort key.

``evaluate(uow, plan, specialist_ids, bounds)`` reads the schedules of these specialists (met
by the walk, so their profiles pass the plan's filters) that pass the plan's schedule filters, cuts
each into free slots for the window (at most ``SLOTS_PER_RESULT`` fitting ones, plus the
first free slot from now), collects fresh ``next_free_at`` bounds, and gives one
``SpecialistEval`` per id: its schedules and its ``key``, the best walk position among
schedules with a fitting slot (None: no fitting slot, not a result).

Schedules are read as plain values (``FoundSchedule``), not ORM entities, and their hours and
rules are parsed once while they stay the same (``stored_specs``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.sql import Executable

from agent_server.booking.availability import ScheduleSpec, Slot, free_slots, may_start_in
from agent_server.booking.models import SEAT_HOLDING, Booking, Specialist
from agent_server.booking.next_free import first_free
from agent_server.booking.search.cursor import Position
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.query import SortBy
from agent_server.booking.search.sql import (
    SCHEDULES,
    SPECIALISTS,
    Shape,
    any_of,
    list_params,
    list_size,
    moment,
    params,
    schedule_conditions,
    shape_of,
    statement,
)
from agent_server.booking.stored_specs import SPEC_COLUMNS, parsed_spec
from agent_server.kernel.store import Direct, UnitOfWork, direct_rows

SLOTS_PER_RESULT = 3
"""Fitting slots cut per schedule: the most a result shows."""


_COLUMNS = (
    SCHEDULES.id,
    SCHEDULES.specialist_id,
    SCHEDULES.label,
    SCHEDULES.price_amount,
    SCHEDULES.price_currency,
    SCHEDULES.price_usd_micros,
    SCHEDULES.next_free_at,
    SPECIALISTS.rating,
    SPECIALISTS.review_count,
    *SPEC_COLUMNS,
)
_FIRST_SPEC_COLUMN = len(_COLUMNS) - len(SPEC_COLUMNS)


@dataclass(frozen=True, slots=True)
class FoundSchedule:
    """A matching schedule as a result shows it, and its hours and rules parsed."""

    id: int
    specialist_id: int
    label: str
    price_amount: int
    price_currency: str
    price_usd_micros: int
    next_free_at: datetime | None
    spec: ScheduleSpec

    @property
    def slot_minutes(self) -> int:
        return self.spec.slot_minutes

    @property
    def capacity(self) -> int:
        return self.spec.capacity


BOOKINGS: Any = Booking.__table__.c


def schedules_query(shape: Shape, size: int) -> Direct:
    """The matching schedules of ``size`` specialists the walk met (``i0``...), with their
    specialist's rating. The walk checked the specialists' own filters (place, rating, words,
    skills, languages), so only the schedules' are checked again: one statement per backend
    and size, planned without the profile filters' subqueries."""
    only = Shape(SortBy.RATING, False, shape.sqlite, 0, 0, 0)

    def build() -> Executable:
        return (
            select(*_COLUMNS)
            .join(Specialist.__table__, SPECIALISTS.id == SCHEDULES.specialist_id)
            .where(*schedule_conditions(only), any_of(SCHEDULES.specialist_id, "i", size))
            .order_by(SCHEDULES.id)
        )

    return statement(("evaluate", only, size), build)


def seats_query(size: int) -> Direct:
    def build() -> Executable:
        return (
            select(BOOKINGS.schedule_id, BOOKINGS.slot_start, func.count())
            .where(
                any_of(BOOKINGS.schedule_id, "i", size),
                BOOKINGS.status.in_(
                    [bindparam(f"held{i}", s.value) for i, s in enumerate(SEAT_HOLDING)]
                ),
                BOOKINGS.slot_start >= bindparam("start", type_=BOOKINGS.slot_start.type),
                BOOKINGS.slot_start < bindparam("end", type_=BOOKINGS.slot_start.type),
            )
            .group_by(BOOKINGS.schedule_id, BOOKINGS.slot_start)
        )

    return statement(("seats", size), build)


async def _seats_taken(
    uow: UnitOfWork, schedule_ids: Sequence[int], start: datetime, end: datetime
) -> dict[int, dict[datetime, int]]:
    """Seats held per slot start in ``[start, end)``, per schedule."""
    out: dict[int, dict[datetime, int]] = defaultdict(dict)
    if not schedule_ids:
        return out
    values = dict(list_params("i", schedule_ids), start=start, end=end)
    for schedule_id, slot_start, count in await direct_rows(
        uow, seats_query(list_size(len(schedule_ids))), values
    ):
        out[schedule_id][moment(slot_start)] = count
    return out


@dataclass
class ScheduleEval:
    """A schedule cut for the window: its first free slot from now and its fitting slots."""

    schedule: FoundSchedule
    first_free: Slot | None
    fitting: list[Slot]


@dataclass
class SpecialistEval:
    """A specialist met by the walk: its cut schedules and its sort key (None: no result)."""

    specialist_id: int
    schedules: list[ScheduleEval] = field(default_factory=list)
    key: Position | None = None

    @property
    def matched(self) -> list[ScheduleEval]:
        """The schedules with a fitting slot."""
        return [s for s in self.schedules if s.fitting]


def _cut(plan: Plan, sched: FoundSchedule, taken: Mapping[datetime, int]) -> ScheduleEval:
    """Up to three fitting slots in the window, and (if any) the first free slot from now.

    Only slots starting in the stretches of time where a fitting one may start are cut
    (``Plan.stretches``, passed to ``free_slots``), a day, then two, four... of the window
    at a time, so the answer is found without cutting the whole window when it is near.
    Cutting starts at the schedule's ``next_free_at`` when that is later: nothing before it
    is free.
    """
    spec = sched.spec
    fitting: list[Slot] = []
    stretches = plan.stretches
    if not stretches:
        return ScheduleEval(schedule=sched, first_free=None, fitting=fitting)
    within = stretches if len(stretches) > 1 else None
    start, hi = stretches[0][0], stretches[-1][1]
    floor = sched.next_free_at  # no free slot starts before it (``booking.next_free``)
    if floor is not None and floor > start:
        if floor >= hi:  # past the last stretch asked: nothing fits
            return ScheduleEval(schedule=sched, first_free=None, fitting=fitting)
        start = floor
    week = plan.stretch_week
    if week is not None and not may_start_in(spec, week, start, hi):
        return ScheduleEval(schedule=sched, first_free=None, fitting=fitting)
    span = timedelta(days=1)
    while start < hi and len(fitting) < SLOTS_PER_RESULT:
        stop = min(start + span, hi)
        for slot in free_slots(spec, start, stop, plan.now, taken, within):
            if plan.fits(slot):
                fitting.append(slot)
                if len(fitting) >= SLOTS_PER_RESULT:
                    break
        start, span = stop, span * 2
    first: Slot | None = None
    if fitting:
        first = fitting[0]
        if plan.window_start > plan.now or plan.days or plan.hours is not None:
            first = (
                first_free(spec, plan.now, taken, until=fitting[0].start, after=floor) or fitting[0]
            )
    return ScheduleEval(schedule=sched, first_free=first, fitting=fitting)


def _key(plan: Plan, ev: SpecialistEval, rating: dict[int, tuple[float, int]]) -> Position | None:
    matched = ev.matched
    if not matched:
        return None
    positions: list[Position] = []
    for s in matched:
        sched = s.schedule
        if plan.sort is SortBy.PRICE:
            positions.append((sched.price_usd_micros, ev.specialist_id, sched.id))
        elif plan.sort is SortBy.RATING:
            value, count = rating[ev.specialist_id]
            positions.append((value, count, ev.specialist_id))
        else:
            assert s.first_free is not None
            positions.append((s.first_free.start, ev.specialist_id, sched.id))
    return min(positions, key=plan.rank)


async def evaluate(
    uow: UnitOfWork, plan: Plan, specialist_ids: Sequence[int], bounds: dict[int, datetime]
) -> dict[int, SpecialistEval]:
    """Cut the matching schedules of these specialists into slots; add to ``bounds`` the
    schedules whose stored ``next_free_at`` is stale, with the start of their first free
    slot (the caller stores them: ``store_next_free``)."""
    if not specialist_ids:
        return {}
    shape = shape_of(plan).filters
    values = dict(params(plan), **list_params("i", specialist_ids))
    found = await direct_rows(uow, schedules_query(shape, list_size(len(specialist_ids))), values)
    rows: list[FoundSchedule] = []
    rating: dict[int, tuple[float, int]] = {}
    for row in found:
        next_free = row[6]
        rows.append(
            FoundSchedule(
                id=row[0],
                specialist_id=row[1],
                label=row[2],
                price_amount=row[3],
                price_currency=row[4],
                price_usd_micros=row[5],
                next_free_at=None if next_free is None else moment(next_free),
                spec=parsed_spec(row[0], tuple(row[_FIRST_SPEC_COLUMN:])),
            )
        )
        rating[row[1]] = (row[7], row[8])
    taken = await _seats_taken(uow, [s.id for s in rows], plan.now, plan.window_end)
    out = {sid: SpecialistEval(sid) for sid in specialist_ids}
    for sched in rows:
        ev = _cut(plan, sched, taken.get(sched.id, {}))
        out[sched.specialist_id].schedules.append(ev)
        if ev.first_free is not None and sched.next_free_at != ev.first_free.start:
            bounds[sched.id] = ev.first_free.start
    for ev_ in out.values():
        ev_.key = _key(plan, ev_, rating)
    return out
