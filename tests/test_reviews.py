"""Reviews on both backends: one per finished booking, by its booker; ratings from real rows,
race-safe; search filters and sorts by them; profiles show and page them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from test_bookings import (
    MON_9,
    book,
    make_agents,
    make_schedule,
    specialist_schedule,
)

from agent_server.accounts.models import Agent
from agent_server.booking import cache
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import CancelledBy, Review, Specialist
from agent_server.booking.reviews import (
    REASON_ALREADY_REVIEWED,
    REASON_NOT_FINISHED,
    leave_review,
)
from agent_server.booking.schedules import ScheduleOwner
from agent_server.booking.search import SearchQuery, search_specialists, view_profile
from agent_server.booking.service import complete_booking
from agent_server.events.models import OutboxEvent
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import BookingConflict, Forbidden, NotFound, ValidationFailed
from agent_server.kernel.store import Database, make_engine

AFTER_MONDAY = MON_9 + timedelta(hours=3)  # Monday's 09:00-12:00 slots have all ended


async def finished_bookings(
    db: Database, clock: FakeClock, schedule: int, agents: list[int]
) -> list[int]:
    """One completed Monday booking per agent (09:00, 10:00, 11:00, then Tuesday...)."""
    ids = []
    for i, agent in enumerate(agents):
        start = MON_9 + timedelta(days=i // 3, hours=i % 3)
        ids.append((await book(db, agent, make_slot_id(schedule, start))).id)
    clock.set(MON_9 + timedelta(days=len(agents) // 3 + 1))
    async with db.uow() as uow:
        for booking_id in ids:
            await complete_booking(uow, booking_id, CancelledBy.SYSTEM, None)
        await uow.commit()
    return ids


async def review(db: Database, agent: int, booking_id: int, rating: int, text: str = "") -> Any:
    async with db.uow() as uow:
        try:
            made = await leave_review(uow, agent, booking_id, rating, text)
        except (BookingConflict, Forbidden, NotFound, ValidationFailed) as exc:
            return exc
        await uow.commit()
        return made


async def rating_of(db: Database, specialist: int) -> tuple[float, int]:
    async with db.uow() as uow:
        row = (
            await uow.session.execute(
                select(Specialist.rating, Specialist.review_count).where(
                    Specialist.id == specialist
                )
            )
        ).one()
        return float(row[0]), int(row[1])


async def test_a_booker_reviews_a_completed_booking_once(db: Database, clock: FakeClock) -> None:
    specialist, schedule = await specialist_schedule(db)
    booker, other = await make_agents(db, 2)
    pending = await book(db, booker, make_slot_id(schedule, MON_9 + timedelta(days=1)))
    [done] = await finished_bookings(db, clock, schedule, [booker])

    early = await review(db, booker, pending.id, 5)
    assert isinstance(early, BookingConflict)
    assert early.details["reason"] == REASON_NOT_FINISHED
    assert early.details["status"] == "accepted"
    stranger = await review(db, other, done, 5)
    assert isinstance(stranger, Forbidden)
    bad = await review(db, booker, done, 6)
    assert isinstance(bad, ValidationFailed) and bad.details["fields"][0]["field"] == "rating"
    assert isinstance(await review(db, booker, 10**9, 4), NotFound)
    assert await rating_of(db, specialist) == (0.0, 0)

    first = await review(db, booker, done, 4, "Clear and kind.")
    assert isinstance(first, Review)
    again = await review(db, booker, done, 1, "changed my mind")
    assert isinstance(again, BookingConflict)
    assert again.details["reason"] == REASON_ALREADY_REVIEWED
    assert await rating_of(db, specialist) == (4.0, 1)

    async with db.uow() as uow:
        events = (
            await uow.session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "review.created")
            )
        ).all()
        count = (await uow.session.execute(select(func.count(Review.id)))).scalar_one()
        sent = [(e.agent_id, e.payload) for e in events]
    assert count == 1
    assert [(agent, payload["role"]) for agent, payload in sent] == [(booker, "booker")]
    data = sent[0][1]["review"]
    assert (data["rating"], data["text"], data["subject_rating"]) == (4, "Clear and kind.", 4.0)


async def test_concurrent_reviews_of_one_specialist_all_count(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    specialist, schedule = await specialist_schedule(db)
    agents = await make_agents(db, 12)
    bookings = await finished_bookings(db, clock, schedule, agents)
    ratings = [5, 4, 3, 5, 2, 5, 4, 1, 5, 3, 4, 4]
    racing = Database(make_engine(database_url, pool_size=12), db.clock)
    try:
        results = await asyncio.gather(
            *(
                review(racing, agent, booking_id, rating)
                for agent, booking_id, rating in zip(agents, bookings, ratings, strict=True)
            )
        )
    finally:
        await racing.dispose()
    assert all(isinstance(r, Review) for r in results), results
    assert await rating_of(db, specialist) == (round(sum(ratings) / len(ratings), 2), 12)


async def test_an_agent_provider_gets_the_rating(db: Database, clock: FakeClock) -> None:
    provider, booker = await make_agents(db, 2)
    schedule = await make_schedule(db, ScheduleOwner.agent(provider))
    [done] = await finished_bookings(db, clock, schedule, [booker])
    made = await review(db, booker, done, 3, "fine")
    assert isinstance(made, Review) and made.provider_agent_id == provider
    async with db.uow() as uow:
        agent = await uow.session.get(Agent, provider)
        assert agent is not None
        assert (agent.rating, agent.review_count) == (3.0, 1)
        roles = (
            await uow.session.scalars(
                select(OutboxEvent.payload).where(OutboxEvent.type == "review.created")
            )
        ).all()
    assert sorted(p["role"] for p in roles) == ["booker", "provider"]


async def search_ids(db: Database, **query: Any) -> list[int]:
    async with db.uow() as uow:
        page = await search_specialists(uow, SearchQuery.parse(query), now=db.clock.now())
        await uow.commit()
    return [item.id for item in page.items]


async def cached_ids(db: Database, **query: Any) -> list[int]:
    async with db.uow() as uow:
        answer = await cache.search_specialists(uow, SearchQuery.parse(query), now=db.clock.now())
        await uow.commit()
    return [item["id"] for item in answer.as_json()[0]["items"]]


async def test_search_sorts_and_filters_by_real_ratings(db: Database, clock: FakeClock) -> None:
    people = [await specialist_schedule(db) for _ in range(4)]
    a, b, c, d = (specialist for specialist, _ in people)
    agents = await make_agents(db, 5)
    # (specialist index, booker): A twice, B once, C twice (the second reviewed later).
    plan = [(0, agents[0]), (0, agents[1]), (1, agents[2]), (2, agents[3]), (2, agents[4])]
    ids = [
        (
            await book(
                db, agent, make_slot_id(people[i][1], MON_9 + timedelta(days=n // 3, hours=n % 3))
            )
        ).id
        for n, (i, agent) in enumerate(plan)
    ]
    clock.set(MON_9 + timedelta(days=2))
    async with db.uow() as uow:
        for booking_id in ids:
            await complete_booking(uow, booking_id, CancelledBy.SYSTEM, None)
        await uow.commit()
    for (_, agent), booking_id, rating in zip(plan[:4], ids[:4], [4, 4, 5, 4], strict=True):
        assert isinstance(await review(db, agent, booking_id, rating), Review)

    # A 4.0 from two reviews outranks C's 4.0 from one; D has none.
    assert await search_ids(db, sort="rating") == [b, a, c, d]
    assert await search_ids(db, sort="rating", order="asc") == [d, c, a, b]
    assert await cached_ids(db, sort="rating", min_rating=4) == [b, a, c]
    assert await cached_ids(db, sort="rating", min_rating=4.5) == [b]
    # Paging walks the same order.
    first = await search_specialists_page(db, sort="rating", limit=2)
    assert [item.id for item in first.items] == [b, a]
    assert first.next_cursor is not None
    second = await search_specialists_page(db, sort="rating", limit=2, cursor=first.next_cursor)
    assert [item.id for item in second.items] == [c, d]

    # A new review moves C (4.5 from two) above A, and the cached search sees it.
    assert isinstance(await review(db, agents[4], ids[4], 5), Review)
    assert await cached_ids(db, sort="rating", min_rating=4) == [b, c, a]
    assert await cached_ids(db, sort="rating", min_rating=4.5) == [b, c]


async def search_specialists_page(db: Database, **query: Any) -> Any:
    async with db.uow() as uow:
        page = await search_specialists(uow, SearchQuery.parse(query), now=db.clock.now())
        await uow.commit()
    return page


async def test_the_catalogue_version_moves_when_a_rating_changes(
    db: Database, clock: FakeClock
) -> None:
    _, schedule = await specialist_schedule(db)
    [booker] = await make_agents(db)
    [done] = await finished_bookings(db, clock, schedule, [booker])
    async with db.uow() as uow:
        before = await cache.catalogue_version(uow)
    assert isinstance(await review(db, booker, done, 5), Review)
    async with db.uow() as uow:
        after = await cache.catalogue_version(uow)
    assert before is not None and after is not None and after > before


async def test_the_profile_shows_the_newest_reviews_and_pages_the_rest(
    db: Database, clock: FakeClock
) -> None:
    specialist, schedule = await specialist_schedule(db)
    agents = await make_agents(db, 5)
    bookings = await finished_bookings(db, clock, schedule, agents)
    for n, (agent, booking_id) in enumerate(zip(agents, bookings, strict=True)):
        assert isinstance(await review(db, agent, booking_id, 1 + n, f"review {n}"), Review)

    async def profile(cursor: str | None = None) -> Any:
        async with db.uow() as uow:
            return await view_profile(uow, specialist, now=db.clock.now(), reviews_cursor=cursor)

    first = await profile()
    assert [r.text for r in first.reviews] == ["review 4", "review 3", "review 2"]
    assert (first.rating, first.review_count) == (3.0, 5)
    assert first.next_reviews_cursor is not None
    rest = await profile(first.next_reviews_cursor)
    assert [(r.rating, r.text) for r in rest.reviews] == [(2, "review 1"), (1, "review 0")]
    assert rest.next_reviews_cursor is None
    with pytest.raises(ValidationFailed) as err:
        await profile("not-a-cursor")
    assert err.value.details["fields"][0]["field"] == "reviews_cursor"
