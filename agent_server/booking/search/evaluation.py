"""Evaluating specialists: their matching schedules cut into slots, and their sort key.

``evaluate(uow, plan, specialist_ids)`` reads the schedules of these specialists that pass
the plan's filters, cuts each into free slots for the window (at most ``SLOTS_PER_RESULT``
fitting ones, plus the first free slot from now), stores fresh ``next_free_at`` bounds, and
gives one ``SpecialistEval`` per id: its schedules and its ``key``, the best walk position
among schedules with a fitting slot (None: no fitting slot, not a result).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from agent_server.booking.availability import ScheduleSpec, Slot, free_slots
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.next_free import first_free, seats_taken, store_next_free
from agent_server.booking.search.cursor import Position
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.query import SortBy
from agent_server.booking.search.sql import conditions
from agent_server.kernel.store import UnitOfWork

SLOTS_PER_RESULT = 3
"""Fitting slots cut per schedule: the most a result shows."""


@dataclass
class ScheduleEval:
    """A schedule cut for the window: its first free slot from now and its fitting slots."""

    schedule: Schedule
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


def _cut(plan: Plan, sched: Schedule, taken: Mapping[datetime, int]) -> ScheduleEval:
    """Up to three fitting slots in the window, and (if any) the first free slot from now.

    Only the stretches of time where a fitting slot may start are cut (``Plan.stretches``),
    a day, then two, four... at a time, so the answer is found without cutting the whole
    window when it is near.
    """
    spec = ScheduleSpec.from_row(sched)
    fitting: list[Slot] = []
    for lo, hi in plan.stretches:
        start, span = lo, timedelta(days=1)
        while start < hi and len(fitting) < SLOTS_PER_RESULT:
            stop = min(start + span, hi)
            for slot in free_slots(spec, start, stop, plan.now, taken):
                if plan.fits(slot):
                    fitting.append(slot)
                    if len(fitting) >= SLOTS_PER_RESULT:
                        break
            start, span = stop, span * 2
        if len(fitting) >= SLOTS_PER_RESULT:
            break
    first: Slot | None = None
    if fitting:
        first = fitting[0]
        if plan.window_start > plan.now or plan.days or plan.hours is not None:
            first = first_free(spec, plan.now, taken, until=fitting[0].start) or fitting[0]
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
    uow: UnitOfWork, plan: Plan, specialist_ids: Sequence[int]
) -> dict[int, SpecialistEval]:
    """Cut the matching schedules of these specialists into slots; store fresh bounds."""
    if not specialist_ids:
        return {}
    session = uow.session
    stmt = (
        select(Schedule, Specialist.rating, Specialist.review_count)
        .join(Specialist, Specialist.id == Schedule.specialist_id)
        .where(*conditions(plan), Schedule.specialist_id.in_(list(specialist_ids)))
        .order_by(Schedule.id)
    )
    rows = (await session.execute(stmt)).all()
    taken = await seats_taken(session, (s.id for s, _, _ in rows), plan.now, plan.window_end)
    out = {sid: SpecialistEval(sid) for sid in specialist_ids}
    rating: dict[int, tuple[float, int]] = {}
    bounds: dict[int, datetime] = {}
    for sched, specialist_rating, review_count in rows:
        assert sched.specialist_id is not None
        rating[sched.specialist_id] = (specialist_rating, review_count)
        ev = _cut(plan, sched, taken.get(sched.id, {}))
        out[sched.specialist_id].schedules.append(ev)
        if ev.first_free is not None and sched.next_free_at != ev.first_free.start:
            bounds[sched.id] = ev.first_free.start
    await store_next_free(session, bounds)
    for ev_ in out.values():
        ev_.key = _key(plan, ev_, rating)
    return out
