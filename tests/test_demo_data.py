"""Demo data: deterministic, varied, loaded once when asked only if empty (both backends)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import available_timezones

import pytest
from sqlalchemy import delete, func, select

from agent_server.booking.availability import ScheduleSpec, free_slots
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import Booking, Review, Schedule, Specialist
from agent_server.booking.search.text import specialist_search_text
from agent_server.kernel.store import Database

IGNORED = {"id", "specialist_id"}


async def snapshot(db: Database) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every specialist with its schedules, ids left out (sequences differ per backend)."""
    async with db.uow() as uow:
        people = (await uow.session.scalars(select(Specialist).order_by(Specialist.id))).all()
        rows = (await uow.session.scalars(select(Schedule).order_by(Schedule.id))).all()
        out = []
        for p in people:
            mine = [
                {k: v for k, v in vars(s).items() if not k.startswith("_") and k not in IGNORED}
                for s in rows
                if s.specialist_id == p.id
            ]
            person = {
                k: v
                for k, v in vars(p).items()
                if not k.startswith("_") and k not in IGNORED | {"schedules"}
            }
            out.append((person, mine))
    return out


async def wipe(db: Database) -> None:
    async with db.uow() as uow:
        await uow.session.execute(delete(Review))
        await uow.session.execute(delete(Booking))
        await uow.session.execute(delete(Schedule))
        await uow.session.execute(delete(Specialist))
        await uow.commit()


async def test_the_same_seed_gives_the_same_rows(db: Database) -> None:
    assert await load_demo_data(db, 60, seed=11) == 60
    first = await snapshot(db)
    await wipe(db)
    await load_demo_data(db, 60, seed=11)
    assert await snapshot(db) == first
    await wipe(db)
    await load_demo_data(db, 60, seed=12)
    assert await snapshot(db) != first


async def test_if_empty_loads_only_into_an_empty_store(db: Database) -> None:
    assert await load_demo_data(db, 25, if_empty=True) == 25
    assert await load_demo_data(db, 25, if_empty=True) == 0
    assert await load_demo_data(db, 10) == 10  # without the flag it adds more people
    async with db.uow() as uow:
        count = await uow.session.scalar(select(func.count(Specialist.id)))
        emails = await uow.session.scalar(select(func.count(func.distinct(Specialist.email))))
    assert count == emails == 35


async def test_demo_specialists_are_varied_and_consistent(db: Database) -> None:
    now = db.clock.now()
    await load_demo_data(db, 300)
    async with db.uow() as uow:
        people = (await uow.session.scalars(select(Specialist))).all()
        schedules = (await uow.session.scalars(select(Schedule))).all()
        uow.session.expunge_all()
    zones = available_timezones()
    assert {p.timezone for p in people} <= zones
    continents = {p.timezone.split("/")[0] for p in people}
    assert {"America", "Europe", "Asia", "Africa", "Australia"} <= continents
    assert len({p.city for p in people}) >= 40
    assert len({p.country for p in people}) >= 25
    assert len({lang for p in people for lang in p.languages}) >= 15
    assert len({s for p in people for s in p.skills}) >= 60
    assert all(2 <= len(p.skills) <= 6 and p.languages for p in people)
    assert all(p.email.endswith("@example.com") and p.phone for p in people)
    assert len({p.email for p in people}) == len(people)
    assert all(p.education and p.about and p.title for p in people)
    assert all(
        p.search_text == specialist_search_text(p.name, p.title, p.about, p.skills) for p in people
    )
    rated = [p for p in people if p.review_count]
    assert rated and all(1.0 <= p.rating <= 5.0 for p in rated)
    assert all(p.rating == 0.0 for p in people if not p.review_count)

    by_owner: dict[int, int] = {}
    for s in schedules:
        assert s.specialist_id is not None
        by_owner[s.specialist_id] = by_owner.get(s.specialist_id, 0) + 1
    assert set(by_owner.values()) == {1, 2} and len(by_owner) == len(people)
    assert {s.slot_minutes for s in schedules} == {30, 45, 60, 90}
    assert {s.price_currency for s in schedules} == {"USD", "USDC"}
    assert all(s.price_usd_micros == s.price_amount > 0 for s in schedules)
    assert any(s.capacity > 1 for s in schedules) and any(s.capacity == 1 for s in schedules)
    assert any(s.blackout_dates for s in schedules)
    assert any(s.buffer_minutes for s in schedules) and any(s.min_notice_minutes for s in schedules)
    assert any(s.private for s in schedules) and any(s.deleted_at for s in schedules)
    owners = {p.id: p for p in people}
    for s in schedules:
        assert s.timezone == owners[s.specialist_id].timezone  # type: ignore[index]
        assert s.start_date <= now.date()
        assert set(s.skills) <= set(owners[s.specialist_id].skills)  # type: ignore[index]
        for day, ranges in s.weekly_hours.items():
            assert day in {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
            assert all(lo < hi for lo, hi in ranges)
        # next_free_at is the first free slot the availability engine finds
        spec = ScheduleSpec.from_row(s)
        slots = free_slots(spec, now, now + timedelta(days=14), now, {})
        assert s.next_free_at is not None
        if slots:
            assert s.next_free_at == slots[0].start
        else:
            assert s.next_free_at >= now + timedelta(days=14)


async def test_demo_ratings_are_the_mean_and_count_of_real_reviews(db: Database) -> None:
    await load_demo_data(db, 80, seed=5)
    async with db.uow() as uow:
        people = {
            p.id: (p.rating, p.review_count) for p in await uow.session.scalars(select(Specialist))
        }
        reviews = (await uow.session.scalars(select(Review))).all()
        bookings = {b.id: b for b in await uow.session.scalars(select(Booking))}
        by: dict[int, list[int]] = {}
        for r in reviews:
            assert r.specialist_id is not None
            by.setdefault(r.specialist_id, []).append(r.rating)
            booking = bookings[r.booking_id]
            assert booking.status == "completed" and booking.slot_end <= db.clock.now()
            assert booking.booker_agent_id == r.reviewer_agent_id
            assert booking.specialist_id == r.specialist_id and booking.price_amount == 0
        uow.session.expunge_all()
    assert len(by) > 40
    for specialist_id, (rating, count) in people.items():
        given = by.get(specialist_id, [])
        assert count == len(given)
        # The mean to two decimals (the database rounds halves away from zero).
        assert rating == pytest.approx(sum(given) / len(given) if given else 0.0, abs=0.005)
    # More people later: the same reviewer, the new people's ratings from their own rows.
    await load_demo_data(db, 20, seed=5)
    async with db.uow() as uow:
        reviewers = await uow.session.scalar(
            select(func.count(func.distinct(Review.reviewer_agent_id)))
        )
        unrated = await uow.session.scalar(
            select(func.count(Specialist.id)).where(
                Specialist.review_count
                != select(func.count(Review.id))
                .where(Review.specialist_id == Specialist.id)
                .scalar_subquery()
            )
        )
    assert reviewers == 1 and unrated == 0
