"""A search's walk reads its slice of the sort index and no more, on SQLite, and checks
its filters there.

Each walk statement is bounded by two positions of its sort index (``sql.rows_after`` and
``sql.rows_upto``), so reading a slice costs the same wherever in the catalogue it lies.
SQLite takes one range per index: if a filter on the sort column (the price bounds for the
price sort, ``min_rating`` for the rating sort) offered itself as a range too, SQLite would
take that one and read row by row from the filter's bound, past the slice, until the page
filled: on a large catalogue with a rare filter, to the end of the index on every slice.
"""

from __future__ import annotations

import pytest

from agent_server.booking.demo import load_demo_data
from agent_server.booking.search.plan import make_plan
from agent_server.booking.search.query import SearchQuery, SortBy
from agent_server.booking.search.sql import (
    first_position,
    last_position,
    params,
    position_params,
    shape_of,
    walk_query,
)
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database

SORT_INDEX = {
    SortBy.PRICE: ("ix_schedules_price_order", "(price_usd_micros,specialist_id)"),
    SortBy.RATING: ("ix_specialists_rating", "(rating,review_count)"),
    SortBy.NEXT_AVAILABLE: ("ix_schedules_next_free", "(next_free_at,specialist_id)"),
}

CASES = [
    {"sort": sort, "order": order, **filters}
    for sort, order in (
        ("price", "asc"),
        ("price", "desc"),
        ("rating", "asc"),
        ("rating", "desc"),
        ("next_available", "asc"),
    )
    for filters in (
        {},
        {"price_min": 20_000_000, "price_max": 150_000_000, "min_rating": 4.0},
        {"skills": ["python"], "languages": ["de"], "q": "tax", "price_max": 90_000_000},
        # Days and hours: the schedules' week blocks are checked in the index too.
        {"days_of_week": ["sat"], "hours_from": "09:00", "hours_to": "12:00", "timezone": "UTC"},
    )
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("raw", CASES, ids=lambda raw: "-".join(map(str, raw.values())))
async def test_a_walk_slice_is_one_range_of_the_sort_index_on_both_sides(
    db: Database, clock: FakeClock, raw: dict[str, object]
) -> None:
    await load_demo_data(db, 30, seed=3)
    plan = make_plan(SearchQuery.parse(raw), clock.now(), sqlite=True)
    shape = shape_of(plan)
    assert shape.blocks == ("hours_from" in raw)
    values = dict(params(plan), lim=11)
    values.update(position_params("a", first_position(shape)))
    values.update(position_params("e", last_position(shape)))
    async with db.uow() as uow:
        dialect, driver = await uow.driver_connection()
        compiled = walk_query(shape).compiled(dialect)
        steps = await driver.execute_fetchall(
            "EXPLAIN QUERY PLAN " + compiled.sql, compiled.arguments(values)
        )
    first = str(steps[0][3])
    index, lead = SORT_INDEX[plan.sort]
    assert index in first, steps
    # Both ends of the range are the walk's positions, not a filter's bound.
    assert f"{lead}>(?,?) AND {lead}<(?,?)" in first, steps
    # The filters on the walked rows are checked in the index (migration 0015); only words
    # of ``q`` need a specialist's own row.
    if "q" not in raw:
        assert "COVERING INDEX" in first, steps
        assert not any("INTEGER PRIMARY KEY" in str(step[3]) for step in steps), steps
