"""Loading demo data leaves the planner real statistics (both backends): search is planned from
actual row counts straight away, not once autovacuum gets round to the new rows."""

from __future__ import annotations

from sqlalchemy import func, select, text

from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import Review, Schedule
from agent_server.kernel.store import Database


async def planner_rows(db: Database) -> dict[str, float]:
    """The row count the planner's statistics give each demo table; none without statistics."""
    async with db.uow() as uow:
        if db.is_sqlite:
            analysed = await uow.session.scalar(
                text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
            )
            if not analysed:
                return {}
            # The first number of a table's (or one of its indexes') stat is its row count.
            rows = await uow.session.execute(text("SELECT tbl, stat FROM sqlite_stat1"))
            out: dict[str, float] = {}
            for table, stat in rows:
                out[table] = max(out.get(table, 0.0), float(stat.split()[0]))
            return out
        # Emptied by TRUNCATE, a table has reltuples -1 (never analysed) until ANALYZE runs.
        rows = await uow.session.execute(
            text(
                "SELECT relname, reltuples FROM pg_class"
                " WHERE relname IN ('specialists', 'schedules') AND relkind = 'r'"
                " AND reltuples > 0"
            )
        )
        return {table: float(n) for table, n in rows}


async def test_loading_demo_data_analyses_the_catalogue(db: Database) -> None:
    assert not await planner_rows(db)  # an empty store, never analysed
    await load_demo_data(db, 40, seed=5)
    async with db.uow() as uow:
        schedules = await uow.session.scalar(select(func.count(Schedule.id)))
    rows = await planner_rows(db)
    assert {t: rows[t] for t in ("specialists", "schedules")} == {
        "specialists": 40,
        "schedules": schedules,
    }
    # The demo reviews' completed bookings and reviews are analysed too (SQLite reports them).
    async with db.uow() as uow:
        reviews = await uow.session.scalar(select(func.count(Review.id)))
    assert reviews and rows.get("reviews", reviews) == reviews
    await load_demo_data(db, 10, seed=5)  # loading more refreshes them
    assert (await planner_rows(db))["specialists"] == 50


async def test_loading_nothing_analyses_nothing(db: Database) -> None:
    assert await load_demo_data(db, 0) == 0
    assert not await planner_rows(db)
