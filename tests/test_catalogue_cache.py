"""Cached search pages and profiles: the database's catalogue counter decides when they go
stale, on both backends, so a change is seen by the very next call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel
from sqlalchemy import update
from test_bookings import book, make_agents, make_schedule, specialist_schedule

from agent_server.booking import cache
from agent_server.booking.availability import parse_slot_id
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import CancelledBy, Schedule, Specialist
from agent_server.booking.schedules import ScheduleOwner
from agent_server.booking.search import specialists
from agent_server.booking.search.answer import SearchPage
from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.specialists import search_specialists as search_now
from agent_server.booking.service import cancel_booking
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database


async def version(db: Database) -> int:
    async with db.uow() as uow:
        found = await cache.catalogue_version(uow)
    assert found is not None
    return found


async def first_search_slot(db: Database, query: SearchQuery) -> str:
    async with db.uow() as uow:
        page = (await cache.search_specialists(uow, query, now=db.clock.now())).value
    return next(iter(page.items[0].schedules[0].slots))


async def profile_slots(db: Database, specialist: int, timezone: str = "UTC") -> list[str]:
    async with db.uow() as uow:
        view = (
            await cache.view_profile(uow, specialist, now=db.clock.now(), timezone=timezone)
        ).value
    return [slot_id for sched in view.schedules for slot_id in sched.slots]


async def test_every_catalogue_change_counts_but_the_next_free_hint_does_not(
    db: Database, backend: str
) -> None:
    v0 = await version(db)
    specialist, schedule = await specialist_schedule(db)
    v1 = await version(db)
    assert v1 > v0

    async with db.uow() as uow:  # search keeps this hint fresh: not a change
        await uow.session.execute(
            update(Schedule).where(Schedule.id == schedule).values(next_free_at=None)
        )
        await uow.commit()
    assert await version(db) == v1

    (agent,) = await make_agents(db)
    slot = (await profile_slots(db, specialist))[0]
    booking = await book(db, agent, slot)
    v2 = await version(db)
    assert v2 > v1

    async with db.uow() as uow:
        await cancel_booking(uow, booking.id, CancelledBy.AGENT, agent, "other")
        await uow.commit()
    v3 = await version(db)
    assert v3 > v2

    async with db.uow() as uow:  # three rows in one transaction
        await uow.session.execute(
            update(Specialist).where(Specialist.id == specialist).values(about="Analyst")
        )
        await uow.session.execute(
            update(Schedule).where(Schedule.id == schedule).values(label="Mornings")
        )
        await uow.session.execute(
            update(Schedule).where(Schedule.id == schedule).values(capacity=2)
        )
        await uow.commit()
    v4 = await version(db)
    if backend == "postgres":
        assert v4 == v3 + 1  # counted once per transaction, at commit
    else:
        assert v4 > v3

    async with db.uow() as uow:  # a change rolled back is no change
        await uow.session.execute(
            update(Specialist).where(Specialist.id == specialist).values(about="Gone")
        )
    assert await version(db) == v4


async def test_a_booking_leaves_the_cached_search_and_profile_at_once(db: Database) -> None:
    specialist, _schedule = await specialist_schedule(db)
    (agent,) = await make_agents(db)
    query = SearchQuery.parse({})
    answers = cache.answer_cache(db)

    first = await first_search_slot(db, query)
    slots = await profile_slots(db, specialist)
    assert slots[0] == first
    hits = answers.hits
    assert await first_search_slot(db, query) == first
    assert await profile_slots(db, specialist) == slots
    assert answers.hits == hits + 2  # both answered from the cache

    await book(db, agent, first)

    after = await first_search_slot(db, query)
    assert after != first
    assert first not in await profile_slots(db, specialist)
    assert after == (await profile_slots(db, specialist))[0]


async def test_answers_hold_for_the_minute_they_were_asked_in(
    db: Database, clock: FakeClock
) -> None:
    specialist, _schedule = await specialist_schedule(db, min_notice_minutes=0)
    clock.set(clock.now().replace(hour=9, minute=59, second=30))
    # As of the end of the minute: a slot starting at 10:00 is still shown.
    first = (await profile_slots(db, specialist))[0]
    _schedule_id, start = parse_slot_id(first)
    assert start == clock.now().replace(hour=10, minute=0, second=0)

    clock.advance(timedelta(seconds=20))
    assert (await profile_slots(db, specialist))[0] == first  # same minute, same answer
    clock.advance(timedelta(seconds=20))  # 10:00:10: that slot has started
    assert (await profile_slots(db, specialist))[0] != first


async def test_different_arguments_get_their_own_answers(db: Database) -> None:
    specialist, schedule = await specialist_schedule(db)
    await make_schedule(db, ScheduleOwner.specialist(specialist), label="Evenings")
    async with db.uow() as uow:
        utc = (await cache.view_profile(uow, specialist, now=db.clock.now())).value
        tokyo = (
            await cache.view_profile(uow, specialist, now=db.clock.now(), timezone="Asia/Tokyo")
        ).value
    assert utc is not tokyo
    slot_id, in_utc = next(iter(utc.schedules[0].slots.items()))
    _, start = parse_slot_id(slot_id)
    assert in_utc.startswith(f"{start:%Y-%m-%d %a %H:%M}-")
    in_tokyo = start.astimezone(ZoneInfo("Asia/Tokyo"))
    assert tokyo.schedules[0].slots[slot_id].startswith(f"{in_tokyo:%Y-%m-%d %a %H:%M}-")
    assert {s.id for s in utc.schedules} >= {schedule}


class FacetCounts:
    """Counts the facet countings a search runs (each reads the ``walked`` rows in SQL)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.runs = 0
        counting = specialists.count_facets

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.runs += 1
            return await counting(*args, **kwargs)

        monkeypatch.setattr(specialists, "count_facets", counted)


async def page_of(db: Database, **raw: Any) -> SearchPage:
    async with db.uow() as uow:
        page = await cache.search_specialists(uow, SearchQuery.parse(raw), now=db.clock.now())
        await uow.commit()
    return page.value


async def test_every_page_of_a_search_shares_its_facets(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load_demo_data(db, 30, seed=5)
    counts = FacetCounts(monkeypatch)
    first = await page_of(db, limit=4)
    assert counts.runs == 1
    assert first.next_cursor is not None
    second = await page_of(db, limit=4, cursor=first.next_cursor)
    wider = await page_of(db, limit=9)
    assert counts.runs == 1  # neither counted again
    assert {i.id for i in second.items}.isdisjoint(i.id for i in first.items)
    assert len(wider.items) == 9
    # What they reuse is what counting would give.
    async with db.uow() as uow:
        counted = await search_now(
            uow,
            SearchQuery.parse({"limit": 4, "cursor": first.next_cursor}),
            now=cache.minute_end(clock.now()),
        )
    assert second.facets == wider.facets == counted.facets == first.facets
    assert first.facets.counted > 4

    other = await page_of(db, limit=4, sort="price")  # another search: its own facets
    assert counts.runs == 3  # the check above, and this one

    await specialist_schedule(db)  # a catalogue change
    after = await page_of(db, limit=4, cursor=first.next_cursor)
    assert counts.runs == 4
    assert after.facets.counted == first.facets.counted + 1

    clock.advance(timedelta(minutes=1))  # another minute: counted as of then
    await page_of(db, limit=4, sort="price", cursor=other.next_cursor)
    assert counts.runs == 5


async def test_a_kept_answer_is_the_same_to_every_caller_whatever_one_does_with_it(
    db: Database,
) -> None:
    """A kept page is kept as its JSON: each caller gets a body of its own, the same as the
    first, and its model read back equals the page first found."""
    await load_demo_data(db, 12, seed=4)
    query = SearchQuery(limit=3)
    async with db.uow() as uow:
        first = await cache.search_specialists(uow, query, now=db.clock.now())
        model = first.value
        body, text = first.as_json()
    body["items"].clear()  # one caller changes what it got
    async with db.uow() as uow:
        again = await cache.search_specialists(uow, query, now=db.clock.now())
        assert again is first  # kept
        body_again, text_again = again.as_json()
    assert text_again == text and body_again == SearchPage.model_validate_json(text).model_dump(
        mode="json"
    )
    assert len(body_again["items"]) == 3
    assert again.value == model


class _Note(BaseModel):
    text: str


def test_the_cache_keeps_the_newest_answers_its_byte_budget_holds() -> None:
    """Never-repeated searches leave at most ``budget`` bytes of answers behind, the
    newest; each answer is weighed once its first caller has serialised it."""
    kept = cache.AnswerCache(entries=100, budget=50_000)
    for n in range(20):
        answer = cache.Answer(_Note(text="x" * 10_000))
        kept.put(("search", n), 1, answer)
        answer.as_json()  # its first caller serialises it: about 10 KB
        assert answer.nbytes > 10_000
        assert kept.bytes <= kept.budget
    kept.put(("facets", 0), 1, object())
    present = [n for n in range(20) if kept.get(("search", n), 1) is not None]
    assert present == [16, 17, 18, 19]  # four fit beside the facets' 1 KB
    assert kept.bytes == 4 * answer.nbytes  # the facets are counted at the next put
    kept.put(("search", 19), 1, answer)  # stored anew: weighed again at the next put
    assert kept.bytes == 3 * answer.nbytes + cache.OTHER_BYTES


def test_the_cache_keeps_at_most_its_entries() -> None:
    kept = cache.AnswerCache(entries=3)
    for n in range(5):
        kept.put(n, 1, object())
    assert [n for n in range(5) if kept.get(n, 1) is not None] == [2, 3, 4]
