"""The profile index: the specialists it matches are the database's, and it is never stale.

It is built from the database and used only while ``catalogue_state.profiles`` stays; a
change to a specialist's skills, languages, country or city, or a new or removed specialist,
moves that counter (database triggers), and bookings and schedules do not. A search right
after such a change gets the new answer: from a rebuilt index, or without one while this
process may not rebuild yet.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import CATALOGUE_ROW, CatalogueState, Schedule, Specialist
from agent_server.booking.search import profiles
from agent_server.booking.search.facets import count_facets
from agent_server.booking.search.plan import make_plan
from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.specialists import search_specialists
from agent_server.booking.search.walk import walk_page
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database, make_engine


async def _index(db: Database) -> profiles.ProfileIndex:
    async with db.uow() as uow:
        index = await profiles.build_index(uow)
    assert index is not None
    return index


async def _people(db: Database) -> list[tuple[int, list[str], list[str], str, str]]:
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(
                Specialist.id,
                Specialist.skills,
                Specialist.languages,
                Specialist.country,
                func.lower(Specialist.city),
            )
        )
        return [(r[0], list(r[1]), list(r[2]), r[3], r[4]) for r in rows]


async def _counters(db: Database) -> tuple[int, int]:
    async with db.uow() as uow:
        row = (
            await uow.session.execute(
                select(CatalogueState.version, CatalogueState.profiles).where(
                    CatalogueState.id == CATALOGUE_ROW
                )
            )
        ).one()
        return int(row[0]), int(row[1])


DEFAULT_SPARSE = profiles.SPARSE


@pytest.mark.parametrize("sparse", [1, DEFAULT_SPARSE, 10**9])
async def test_the_index_matches_the_specialists_sql_would(
    db: Database, monkeypatch: pytest.MonkeyPatch, sparse: int
) -> None:
    """Whether values are kept as the ranks of those listing them (``sparse`` 1: those not
    every specialist lists), as masks (10**9) or both, the index matches the same ones."""
    monkeypatch.setattr(profiles, "SPARSE", sparse)
    await load_demo_data(db, 300, seed=11)
    index = await _index(db)
    kinds = {type(v) for listing in (index.skills, index.cities) for v in listing.values()}
    assert len(kinds) == (2 if sparse == DEFAULT_SPARSE else 1)
    people = await _people(db)
    skills = sorted({s for p in people for s in p[1]})
    languages = sorted({lang for p in people for lang in p[2]})
    countries = sorted({p[3] for p in people})
    cities = sorted({p[4] for p in people})
    rng = random.Random(5)
    checked = 0
    for _ in range(200):
        raw: dict[str, Any] = {}
        if rng.random() < 0.6:
            raw["skills"] = rng.sample(skills, rng.choice((1, 1, 2)))
        if rng.random() < 0.5:
            raw["languages"] = rng.sample(languages, rng.choice((1, 2)))
        if rng.random() < 0.2:
            raw["country"] = rng.choice(countries)
        if rng.random() < 0.2:
            raw["city"] = rng.choice(cities).title()  # the filter folds case, as SQL does
        if not raw:
            continue
        query = SearchQuery.parse(raw)
        expected = [
            sid
            for sid, their_skills, spoken, country, city in people
            if all(s in their_skills for s in query.skills)
            and (not query.languages or any(lang in spoken for lang in query.languages))
            and (query.country is None or country == query.country)
            and (query.city is None or city == query.city.lower())
        ]
        assert index.ids_of(index.matching(query)) == sorted(expected), raw
        checked += 1
    assert checked > 150
    assert index.ids_of(index.matching(SearchQuery.parse({"skills": ["no-such-skill"]}))) == []


async def test_profile_changes_move_the_counter_and_bookable_changes_do_not(
    db: Database,
) -> None:
    await load_demo_data(db, 20, seed=3)
    version, before = await _counters(db)
    async with db.uow() as uow:
        await uow.session.execute(update(Schedule).values(label="Renamed"))
        await uow.commit()
    changed_version, unchanged = await _counters(db)
    assert changed_version > version and unchanged == before
    async with db.uow() as uow:
        first = await uow.session.scalar(select(Specialist).order_by(Specialist.id).limit(1))
        assert first is not None
        first.rating = 4.9  # not what the index holds
        await uow.commit()
    assert (await _counters(db))[1] == before
    async with db.uow() as uow:
        first = await uow.session.scalar(select(Specialist).order_by(Specialist.id).limit(1))
        assert first is not None
        first.skills = [*first.skills, "glassblowing"]
        await uow.commit()
    assert (await _counters(db))[1] > before


async def _add_to_one_with_a_schedule(db: Database, field: str, value: str) -> int:
    """Add ``value`` to the ``field`` list (skills, languages) of a specialist who has a
    schedule; their id."""
    async with db.uow() as uow:
        chosen = (
            await uow.session.scalars(
                select(Specialist).where(Specialist.id.in_(select(Schedule.specialist_id)))
            )
        ).first()
        assert chosen is not None
        setattr(chosen, field, [*getattr(chosen, field), value])
        await uow.commit()
        return chosen.id


async def _found(db: Database, clock: FakeClock, raw: dict[str, Any]) -> list[int]:
    async with db.uow() as uow:
        page = await search_specialists(uow, SearchQuery.parse(raw), now=clock.now())
        await uow.commit()
    return [hit.id for hit in page.items]


@pytest.mark.parametrize("rebuild_seconds", [0.0, 3600.0])
async def test_a_search_right_after_a_profile_change_sees_it(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, rebuild_seconds: float
) -> None:
    """The search right after the change goes without the index; with a rebuild allowed, a
    new one is built in the background. Either way the answer is the database's."""
    await load_demo_data(db, 60, seed=4)
    wanted = {"skills": ["glassblowing"], "sort": "price"}
    assert await _found(db, clock, wanted) == []  # builds the index: nobody lists it
    monkeypatch.setattr(profiles, "REBUILD_SECONDS", rebuild_seconds)
    chosen_id = await _add_to_one_with_a_schedule(db, "skills", "glassblowing")
    assert await _found(db, clock, wanted) == [chosen_id]  # without waiting for an index
    await profiles.index_settled(db)  # the one built in the background, when allowed
    async with db.uow() as uow:
        kept = await profiles.profile_index(uow)
    assert (kept is not None) == (rebuild_seconds == 0.0)
    if kept is not None:
        assert kept.ids_of(kept.matching(SearchQuery.parse(wanted))) == [chosen_id]
    clock.advance(timedelta(minutes=1))
    async with db.uow() as uow:
        gone = await uow.session.get(Specialist, chosen_id)
        assert gone is not None
        gone.skills = [s for s in gone.skills if s != "glassblowing"]
        await uow.commit()
    assert await _found(db, clock, wanted) == []


async def test_a_serving_process_builds_the_index_before_its_first_search(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load_demo_data(db, 30, seed=6)
    await profiles.warm_profile_index(db)

    async def not_again(uow: Any) -> None:
        raise AssertionError("the index was built again")

    monkeypatch.setattr(profiles, "build_index", not_again)
    async with db.uow() as uow:
        kept = await profiles.profile_index(uow)
    assert kept is not None and kept.ids
    assert await _found(db, clock, {"skills": ["no-such-skill"]}) == []


async def test_a_change_made_by_another_process_reaches_this_ones_next_search(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    """Each process keeps its own index; the counter in the database tells it a change was
    made elsewhere, so a search never answers from a stale one."""
    await load_demo_data(db, 60, seed=8)
    wanted = {"languages": ["tlh"], "sort": "rating"}
    await profiles.warm_profile_index(db)
    assert await _found(db, clock, wanted) == []
    other = Database(make_engine(database_url), clock)
    try:
        chosen_id = await _add_to_one_with_a_schedule(other, "languages", "tlh")
    finally:
        await other.dispose()
    assert await _found(db, clock, wanted) == [chosen_id]


async def test_facets_counted_with_the_index_are_those_sql_counts(
    db: Database, clock: FakeClock
) -> None:
    """Skills counted from the index's lists equal SQL's ``GROUP BY`` over the same
    specialists, for the statement's and for the walk's specialists."""
    await load_demo_data(db, 400, seed=12)
    index = await _index(db)
    people = await _people(db)
    skills = sorted({s for p in people for s in p[1]})
    rng = random.Random(9)
    compared = 0
    for n in range(40):
        raw: dict[str, Any] = {"sort": rng.choice(["rating", "price", "next_available"])}
        if rng.random() < 0.4:
            raw["skills"] = [rng.choice(skills)]
        if rng.random() < 0.3:
            raw["price_max"] = rng.choice([60, 120, 300]) * 1_000_000
        if rng.random() < 0.3:
            raw["days_of_week"] = ["mon", "sat"]
        plan = make_plan(SearchQuery.parse(raw), clock.now(), db.is_sqlite)
        async with db.uow() as uow:
            walk = await walk_page(uow, plan, index) if n % 2 else None
            with_index = await count_facets(uow, plan, walk, index)
            without = await count_facets(uow, plan, walk, None)
        assert with_index == without, raw
        compared += with_index.counted > 0
    assert compared > 20
