"""Search agrees with a brute-force reference on a large random catalogue and random queries.

The reference (``test_search.expected``) reads every specialist and schedule, cuts every
schedule's free slots with the availability engine and filters and sorts in Python; the
search walks indexes, prunes by ``next_free_at``, keeps counts and cuts only what a page
needs. On 2,000 demo specialists (a random seed of the demo data, some slots booked) every
random query, combining any time zone, days, hours, date window, price bounds and currency,
length, sort and order, skills, languages, place and text, gets the same specialists in the
same order, page after page, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from test_search import Catalogue, all_pages, catalogue, expected, run_search

from agent_server.booking.availability import ScheduleSpec, free_slots
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import (
    Booking,
    Review,
    Schedule,
    Specialist,
    SpecialistLanguage,
    SpecialistSkill,
)
from agent_server.booking.search.query import SearchQuery
from agent_server.kernel.store import Database

SPECIALISTS = 2000
QUERIES = 80
PAGES = 3
"""Pages followed per query: their items must be the reference's first ones, in order."""
HORIZON_DAYS = 40
"""Random date windows end within this many days of the clock."""
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Reference:
    """``test_search.expected`` with each schedule's free slots cut once for the horizon."""

    def __init__(self, cat: Catalogue, now: datetime) -> None:
        self.cat = cat
        self.now = now
        horizon = now + timedelta(days=HORIZON_DAYS + 2)
        self.slots = {
            s.id: free_slots(ScheduleSpec.from_row(s), now, horizon, now, cat.taken.get(s.id, {}))
            for rows in cat.schedules.values()
            for s in rows
        }

    def order(self, query: dict[str, Any]) -> list[int]:
        import test_search

        cut = self.slots

        def cached(
            spec: ScheduleSpec, start: datetime, end: datetime, now: datetime, taken: Any
        ) -> list[Any]:
            assert start == now == self.now  # the reference cuts from now to the window's end
            return [slot for slot in cut[spec.id] if slot.start < end]

        min_rating = query.get("min_rating")
        cat = self.cat
        if min_rating is not None:
            people = [p for p in cat.specialists if p.rating >= min_rating]
            cat = Catalogue(people, cat.schedules, cat.taken)
        original = test_search.free_slots
        test_search.free_slots = cached  # type: ignore[assignment]
        try:
            return expected(cat, query, self.now)
        finally:
            test_search.free_slots = original


def random_query(rng: random.Random, cat: Catalogue, now: datetime) -> dict[str, Any]:
    """Any combination of the filters an agent may send, drawn from the catalogue's values."""
    people = cat.specialists
    query: dict[str, Any] = {}
    if rng.random() < 0.5:
        query["timezone"] = rng.choice(ZONES)
    if rng.random() < 0.3:
        query["days_of_week"] = rng.sample(DAYS, rng.randint(1, 3))
    if rng.random() < 0.3:
        lo = rng.randrange(0, 24 * 60, 30)
        hi = (lo + rng.choice((60, 120, 180, 240, 480))) % (24 * 60)
        query["hours_from"], query["hours_to"] = (
            f"{lo // 60:02}:{lo % 60:02}",
            f"{hi // 60:02}:{hi % 60:02}",
        )
    if rng.random() < 0.3:
        first = now.date() + timedelta(days=rng.randint(0, HORIZON_DAYS - 14))
        query["date_from"] = first.isoformat()
        if rng.random() < 0.7:
            query["date_to"] = (first + timedelta(days=rng.randint(0, 12))).isoformat()
    if rng.random() < 0.3:
        currency = rng.choice(("USD", "USDC", "USDT"))
        query["currency"] = currency
        if rng.random() < 0.6:
            query["price_min"] = rng.choice((20, 50, 80, 120)) * 1_000_000
        if rng.random() < 0.6:
            query["price_max"] = rng.choice((60, 100, 150, 300)) * 1_000_000
        if query.get("price_max", 10**12) < query.get("price_min", 0):
            query["price_min"], query["price_max"] = query["price_max"], query["price_min"]
    if rng.random() < 0.15:
        query["duration"] = rng.choice((30, 45, 60, 90))
    sort = rng.choice(("rating", "price", "next_available"))
    if rng.random() < 0.8:
        query["sort"] = sort
    if sort != "next_available" and rng.random() < 0.3:
        query["order"] = rng.choice(("asc", "desc"))
    someone = rng.choice(people)
    if rng.random() < 0.35 and someone.skills:
        query["skills"] = rng.sample(someone.skills, rng.randint(1, min(2, len(someone.skills))))
    if rng.random() < 0.3:
        query["languages"] = rng.sample(someone.languages, 1) + (
            [rng.choice(("en", "es", "de", "ja", "fr"))] if rng.random() < 0.5 else []
        )
    if rng.random() < 0.1:
        query["city"] = someone.city
    elif rng.random() < 0.15:
        query["country"] = someone.country
    if rng.random() < 0.2:
        query["q"] = rng.choice(someone.title.split() or ["coach"])
    if "min_rating" in SearchQuery.model_fields and rng.random() < 0.15:
        query["min_rating"] = rng.choice((3.5, 4.0, 4.5, 4.8))
    query["limit"] = rng.choice((5, 10, 20))
    return query


async def book_some(db: Database, rng: random.Random) -> None:
    """Take every seat of the first slots of some schedules, so free slots and the stored
    ``next_free_at`` bounds move."""
    now = db.clock.now()
    async with db.uow() as uow:
        rows = list((await uow.session.scalars(select(Schedule).order_by(Schedule.id))).all())
        n = 0
        for sched in rng.sample(rows, min(80, len(rows))):
            spec = ScheduleSpec.from_row(sched)
            for slot in free_slots(spec, now, now + timedelta(days=3), now, {})[:3]:
                for seat in range(1, sched.capacity + 1):
                    n += 1
                    uow.session.add(
                        Booking(
                            schedule_id=sched.id,
                            specialist_id=sched.specialist_id,
                            slot_start=slot.start,
                            slot_end=slot.end,
                            seat=seat,
                            status="accepted",
                            idempotency_key=f"eq{n}",
                            created_at=now,
                            updated_at=now,
                        )
                    )
        await uow.commit()


async def test_random_queries_agree_with_the_reference(db: Database) -> None:
    rng = random.Random(20260302)
    await load_demo_data(db, SPECIALISTS, seed=rng.randrange(10**6))
    await book_some(db, rng)
    now = db.clock.now()
    reference = Reference(await catalogue(db), now)
    checked = nonempty = 0
    for _ in range(QUERIES):
        query = random_query(rng, reference.cat, now)
        want = reference.order(query)
        got: list[int] = []
        cursor = None
        for _page in range(PAGES):
            page = await run_search(db, {**query, **({"cursor": cursor} if cursor else {})})
            got += [item.id for item in page.items]
            cursor = page.next_cursor
            if cursor is None:
                break
        if cursor is None:
            assert got == want, query
        else:
            assert got == want[: len(got)], query
        checked += 1
        nonempty += bool(want)
    assert checked == QUERIES and nonempty >= QUERIES // 2


async def test_rare_queries_page_through_to_the_reference_end(db: Database) -> None:
    """Queries matching few specialists, followed to their last page, give the whole list."""
    rng = random.Random(7)
    await load_demo_data(db, 600, seed=11)
    now = db.clock.now()
    reference = Reference(await catalogue(db), now)
    for _ in range(8):
        query = random_query(rng, reference.cat, now)
        query.setdefault("skills", rng.choice(reference.cat.specialists).skills[:1])
        assert await all_pages(db, query) == reference.order(query), query


async def test_skill_and_language_rows_follow_every_change_of_a_specialist(db: Database) -> None:
    """Whatever writes a specialist, its skill and language rows (what search filters and
    facets read) equal its lists: after the demo load, an edit of both, and a removal."""
    await load_demo_data(db, 30, seed=3)

    async def rows_match() -> None:
        async with db.uow() as uow:
            people = (await uow.session.scalars(select(Specialist))).all()
            skills = (
                await uow.session.execute(
                    select(SpecialistSkill.specialist_id, SpecialistSkill.skill)
                )
            ).all()
            langs = (
                await uow.session.execute(
                    select(SpecialistLanguage.specialist_id, SpecialistLanguage.language)
                )
            ).all()
            assert set(skills) == {(p.id, s) for p in people for s in p.skills}
            assert set(langs) == {(p.id, lang) for p in people for lang in p.languages}

    await rows_match()
    async with db.uow() as uow:
        first, second = (
            await uow.session.scalars(select(Specialist).order_by(Specialist.id).limit(2))
        ).all()
        first.skills = ["zither-tuning", *first.skills[:1]]
        first.languages = ["eu"]
        # Its demo reviews and their completed bookings go first (they refer to it).
        await uow.session.execute(delete(Review).where(Review.specialist_id == second.id))
        await uow.session.execute(delete(Booking).where(Booking.specialist_id == second.id))
        await uow.session.execute(delete(Specialist).where(Specialist.id == second.id))
        await uow.commit()
        edited = first.id
    await rows_match()
    page = await run_search(db, {"skills": ["zither-tuning"], "languages": ["eu"]})
    assert [item.id for item in page.items] in ([edited], [])
    assert page.facets.skills.get("zither-tuning") == 1
