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

from datetime import UTC, datetime

import pytest

from agent_server.booking.availability import BLOCKS_FROM, BLOCKS_UNTIL
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


def test_a_search_asks_for_week_blocks_only_where_schedules_keep_them() -> None:
    """Days or hours leave out the blocks of the week (UTC) no fitting slot can start in; a
    search without them, or whose window reaches past the years the stored blocks hold for,
    leaves no schedule out by its blocks."""
    now = datetime(2026, 3, 2, 8, tzinfo=UTC)

    def asked(raw: dict[str, object], at: datetime = now) -> int | None:
        return make_plan(SearchQuery.parse(raw), at, sqlite=True).asked_blocks

    monday = {"days_of_week": ["mon"], "hours_from": "09:00", "hours_to": "10:00"}
    assert asked({}) is None
    assert asked({"sort": "price"}) is None
    # 09:00-10:00 UTC on Mondays, with the hour's margin each side: blocks 06-09 and 09-12.
    assert asked({**monday, "timezone": "UTC"}) == (1 << 2) | (1 << 3)
    # The same hours in Tokyo (UTC+9) are Monday 00:00-01:00 UTC: with the margin, the first
    # block of the week and the last (Sunday evening).
    assert asked({**monday, "timezone": "Asia/Tokyo"}) == 1 | (1 << 55)
    # Weekends: Saturday and Sunday's sixteen blocks, and the margin's hour either side.
    weekend = (((1 << 16) - 1) << 40) | (1 << 39) | 1
    assert asked({"days_of_week": ["sat", "sun"], "timezone": "UTC"}) == weekend
    late = datetime(BLOCKS_UNTIL.year, 12, 28, tzinfo=UTC)
    assert asked({**monday, "timezone": "UTC"}, late) is None
    early = datetime(BLOCKS_FROM.year - 1, 12, 30, 8, tzinfo=UTC)  # a Monday
    assert asked({**monday, "timezone": "UTC"}, early) is None


def test_a_schedule_free_only_after_the_last_days_asked_has_nothing_that_fits() -> None:
    """Cutting starts at ``next_free_at`` when that is later; one past the last stretch of
    the days asked (though inside the window) has no fitting slot, and cuts none."""
    from datetime import timedelta

    from agent_server.booking.availability import ScheduleSpec
    from agent_server.booking.search.evaluation import FoundSchedule, _cut

    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
    query = {"days_of_week": ["wed"], "date_from": "2026-03-04", "date_to": "2026-03-09"}
    plan = make_plan(SearchQuery.parse(query), now, True)
    last = plan.stretches[-1][1]  # an hour past the end of Wednesday the 4th
    assert plan.stretch_week is not None and last + timedelta(days=4) < plan.window_end
    spec = ScheduleSpec.build(
        id=1, timezone="UTC", weekly_hours={"wed": [["09:00", "17:00"]]}, slot_minutes=60
    )
    bound = last + timedelta(days=4, hours=11)  # nothing free before Monday noon
    cut = _cut(plan, FoundSchedule(1, 1, "Advice", 1, "USD", 1, bound, spec), {})
    assert cut.fitting == [] and cut.first_free is None
    earlier = _cut(plan, FoundSchedule(1, 1, "Advice", 1, "USD", 1, None, spec), {})
    assert [s.start.hour for s in earlier.fitting] == [9, 10, 11]  # without the bound
