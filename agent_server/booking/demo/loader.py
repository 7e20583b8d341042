"""Loading demo people into a database: bulk inserts per chunk, next free slots computed
as rows are written, planner statistics refreshed once loaded.

Ratings come from real reviews: each demo review is a row of ``reviews`` about a completed
booking in the past, made by the demo reviewer agent (``DEMO_REVIEWER_EMAIL``, suspended, so
nobody can sign in as it) on the person's first schedule; those bookings are priced 0, so no
escrow is missing from the ledger. Once a chunk's reviews are written, its specialists'
ratings and review counts are recomputed from them by the same statement the
``leave-review`` service uses (``booking.reviews.recompute_ratings``)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, insert, select

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.booking.availability import ScheduleSpec, start_blocks
from agent_server.booking.demo.people import Generator, Person
from agent_server.booking.models import Booking, BookingStatus, Review, Schedule, Specialist
from agent_server.booking.next_free import next_free_bound
from agent_server.booking.reviews import recompute_ratings
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.kernel.store.statistics import analyze

CHUNK = 2000
"""Specialists per transaction."""
CATALOGUE_TABLES = ("specialists", "schedules", "bookings", "reviews")
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
                    spec = _spec(sched)
                    sched["next_free_at"] = next_free_bound(spec, now, {})
                    sched["start_blocks"] = start_blocks(spec)
                    rows.append(sched)
            schedule_ids = (
                (
                    await uow.session.execute(
                        insert(schedules).returning(schedules.c.id, sort_by_parameter_order=True),
                        rows,
                    )
                )
                .scalars()
                .all()
            )
            firsts: list[int] = []
            at = 0
            for person in people:
                firsts.append(schedule_ids[at])
                at += len(person.schedules)
            await _write_reviews(uow, list(zip(ids, firsts, people, strict=True)), now)
            await uow.commit()
        created += len(people)
    if created:
        await analyze(db, CATALOGUE_TABLES)  # or search plans for empty tables until autovacuum
    return created


DEMO_REVIEWER_EMAIL = "demo-reviewers@example.com"


async def _reviewer(uow: UnitOfWork, now: datetime) -> int:
    """The demo reviewer agent's id, created (suspended, with no usable key) if missing."""
    found = await uow.session.scalar(select(Agent.id).where(Agent.email == DEMO_REVIEWER_EMAIL))
    if found is not None:
        return int(found)
    agent = Agent(
        name="Demo reviewers",
        email=DEMO_REVIEWER_EMAIL,
        email_verified=True,
        status=AgentStatus.SUSPENDED.value,
        api_key_hash="demo-reviewers: no key hashes to this",
        api_key_prefix="",
        profile={},
        description="Author of the demo data's reviews.",
        created_at=now,
        updated_at=now,
    )
    uow.session.add(agent)
    await uow.session.flush()
    return agent.id


async def _write_reviews(
    uow: UnitOfWork, people: list[tuple[int, int, Person]], now: datetime
) -> None:
    """Each person's reviews as completed past bookings of its first schedule and their
    reviews; then the ratings from those rows."""
    if not any(person.reviews for _, _, person in people):
        return
    reviewer = await _reviewer(uow, now)
    hour = now.replace(minute=0, second=0, microsecond=0)
    bookings: list[dict[str, Any]] = []
    ratings: list[tuple[int, int, str]] = []  # specialist id, rating, text
    for specialist_id, schedule_id, person in people:
        minutes = person.schedules[0]["slot_minutes"]
        currency = person.schedules[0]["price_currency"]
        for k, (rating, text) in enumerate(person.reviews):
            start = hour - timedelta(days=7 * (len(person.reviews) - k))
            end = start + timedelta(minutes=minutes)
            bookings.append(
                {
                    "schedule_id": schedule_id,
                    "specialist_id": specialist_id,
                    "booker_agent_id": reviewer,
                    "slot_start": start,
                    "slot_end": end,
                    "seat": 1,
                    "status": BookingStatus.COMPLETED.value,
                    "price_amount": 0,
                    "price_currency": currency,
                    "created_at": start - timedelta(days=2),
                    "updated_at": end,
                    "accepted_at": start - timedelta(days=2),
                    "completed_at": end,
                    "refund_anchor_at": start,
                }
            )
            ratings.append((specialist_id, rating, text))
    table = cast(Table, Booking.__table__)
    booking_ids = (
        (
            await uow.session.execute(
                insert(table).returning(table.c.id, sort_by_parameter_order=True), bookings
            )
        )
        .scalars()
        .all()
    )
    reviews = [
        {
            "booking_id": booking_id,
            "reviewer_agent_id": reviewer,
            "specialist_id": specialist_id,
            "rating": rating,
            "text": text,
            "created_at": row["completed_at"] + timedelta(hours=2),
        }
        for booking_id, row, (specialist_id, rating, text) in zip(
            booking_ids, bookings, ratings, strict=True
        )
    ]
    await uow.session.execute(insert(cast(Table, Review.__table__)), reviews)
    await recompute_ratings(uow, [specialist_id for specialist_id, _, _ in people])


def _spec(sched: dict[str, Any]) -> ScheduleSpec:
    return ScheduleSpec.build(
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
