"""Loading demo people into a database: bulk inserts per chunk, next free slots computed
as rows are written, planner statistics refreshed once loaded."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from agent_server.booking.availability import ScheduleSpec
from agent_server.booking.demo.people import Generator
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.next_free import next_free_bound
from agent_server.kernel.store import Database
from agent_server.kernel.store.statistics import analyze

CHUNK = 2000
"""Specialists per transaction."""
CATALOGUE_TABLES = ("specialists", "schedules", "bookings")
"""The tables search plans over, analysed once loaded."""


async def load_demo_data(db: Database, count: int, *, seed: int = 7, if_empty: bool = False) -> int:
    """Create ``count`` demo specialists with schedules; returns how many were created.

    Deterministic: the same ``seed`` on the same database state gives the same rows. With
    ``if_empty``, does nothing (returns 0) when any specialist exists. Each schedule's
    ``next_free_at`` is computed as it is written, and the tables' planner statistics are
    refreshed once loaded, so search is fast from the first call.
    """
    if count < 0:
        raise ValueError("count must be zero or more")
    async with db.uow() as uow:
        existing = (await uow.session.execute(select(func.count(Specialist.id)))).scalar_one()
        base = (await uow.session.execute(select(func.max(Specialist.id)))).scalar() or 0
    if if_empty and existing:
        return 0
    now = db.clock.now()
    rng = random.Random(seed if base == 0 else f"{seed}:{base}")  # noqa: S311 - demo data
    gen = Generator(rng, now, base)
    specialists = cast(Table, Specialist.__table__)  # Core inserts: plain executemany batches
    schedules = cast(Table, Schedule.__table__)
    created = 0
    while created < count:
        people = [gen.person(created + i + 1) for i in range(min(CHUNK, count - created))]
        async with db.uow() as uow:
            ids = (
                (
                    await uow.session.execute(
                        insert(specialists).returning(
                            specialists.c.id, sort_by_parameter_order=True
                        ),
                        [p.specialist for p in people],
                    )
                )
                .scalars()
                .all()
            )
            rows = []
            for specialist_id, person in zip(ids, people, strict=True):
                for sched in person.schedules:
                    sched["specialist_id"] = specialist_id
                    sched["next_free_at"] = _next_free(sched, now)
                    rows.append(sched)
            await uow.session.execute(insert(schedules), rows)
            await uow.commit()
        created += len(people)
    if created:
        await analyze(db, CATALOGUE_TABLES)  # or search plans for empty tables until autovacuum
    return created


def _next_free(sched: dict[str, Any], now: datetime) -> datetime:
    spec = ScheduleSpec.build(
        id=0,
        timezone=sched["timezone"],
        weekly_hours=sched["weekly_hours"],
        slot_minutes=sched["slot_minutes"],
        overrides=sched["overrides"],
        blackout_dates=sched["blackout_dates"],
        buffer_minutes=sched["buffer_minutes"],
        min_notice_minutes=sched["min_notice_minutes"],
        start_date=sched["start_date"],
        end_date=sched["end_date"],
        capacity=sched["capacity"],
    )
    return next_free_bound(spec, now, {})
