"""``Direct`` statements: on SQLite they skip the ORM session but must send exactly what
SQLAlchemy sends, in the unit of work's transaction; on PostgreSQL they are the session's."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from billing_support import make_agent
from sqlalchemy import Table, bindparam, event, insert, select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, StatementError

from agent_server.accounts import ratelimit
from agent_server.accounts.models import RateCounter
from agent_server.booking import cache, service, specialist_mail
from agent_server.booking.schedules import reading
from agent_server.kernel.store import Database, Direct, direct_execute, direct_rows, make_engine
from agent_server.kernel.store.direct import compile_direct
from billing import escrow
from billing.meter import calls, holds, payers, quota
from billing.models import UsageRecord

_USAGE: Table = UsageRecord.__table__  # type: ignore[assignment]
_COUNTERS: Table = RateCounter.__table__  # type: ignore[assignment]

INSERT_USAGE = Direct(
    insert(_USAGE).values({c.key: bindparam(c.key) for c in _USAGE.columns if c.key != "id"})
)
COUNTER = Direct(
    insert(_COUNTERS)
    .values(key=bindparam("key"), window_start=7, hits=3)  # literal binds
    .returning(_COUNTERS.c.hits, _COUNTERS.c.window_start)
)
BUMP = Direct(
    update(_COUNTERS)
    .where(_COUNTERS.c.key.like(bindparam("prefix")))
    .values(hits=_COUNTERS.c.hits + bindparam("by"))
)
BUMP_RETURNING = Direct(
    update(_COUNTERS)
    .where(_COUNTERS.c.key.like(bindparam("prefix")))
    .values(hits=_COUNTERS.c.hits + 1)
    .returning(_COUNTERS.c.key, _COUNTERS.c.hits)
)
HITS = Direct(
    select(_COUNTERS.c.hits).where(_COUNTERS.c.key == bindparam("key")).order_by(_COUNTERS.c.key)
)
FIRST_KEYS = Direct(select(_COUNTERS.c.key).order_by(_COUNTERS.c.key).limit(2))


def usage(agent_id: int, call_id: str, at: datetime, free: bool) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "agent_id": agent_id,
        "tool": "search-specialists",
        "period": at.strftime("%Y-%m"),
        "free": free,
        "price_usd_micros": 0 if free else 10_000,
        "currency": None if free else "USDC",
        "amount": 0 if free else 10_000,
        "transaction_id": None,
        "created_at": at,
    }


MOMENTS = [
    datetime(2026, 3, 2, 8, 0, tzinfo=UTC),  # a whole second
    datetime(2026, 3, 2, 8, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 3, 2, 10, 30, 1, 5, tzinfo=timezone(timedelta(hours=2))),  # not UTC
]


@pytest.mark.parametrize("at", MOMENTS)
@pytest.mark.parametrize("free", [True, False])
async def test_a_datetime_and_a_boolean_are_stored_as_through_the_orm(
    db: Database, at: datetime, free: bool
) -> None:
    agent = await make_agent(db)
    async with db.uow() as uow:
        assert await direct_execute(uow, INSERT_USAGE, usage(agent, "direct", at, free)) == 1
        await uow.session.execute(insert(_USAGE), usage(agent, "orm", at, free))
        await uow.commit()
    columns = [c.key for c in _USAGE.columns if c.key not in ("id", "call_id")]
    async with db.uow() as uow:
        rows = {
            row.call_id: {c: getattr(row, c) for c in columns}
            for row in (await uow.session.execute(select(UsageRecord))).scalars()
        }
        stored = {
            call_id: (created_at, flag)
            for call_id, created_at, flag in await uow.session.execute(
                text("SELECT call_id, created_at, free FROM billing_usage")
            )
        }
    assert rows["direct"] == rows["orm"]
    assert rows["direct"]["created_at"] == at and rows["direct"]["created_at"].tzinfo == UTC
    assert rows["direct"]["free"] is free
    assert stored["direct"] == stored["orm"]  # the very same text (SQLite) or values


async def test_rows_come_back_through_returning_with_literal_binds_applied(db: Database) -> None:
    async with db.uow() as uow:
        assert await direct_rows(uow, COUNTER, {"key": "a:1"}) == [(3, 7)]
        assert await direct_rows(uow, COUNTER, {"key": "a:2"}) == [(3, 7)]
        assert await direct_rows(uow, COUNTER, {"key": "b:1"}) == [(3, 7)]
        assert await direct_execute(uow, BUMP, {"prefix": "a:%", "by": 10}) == 2
        assert sorted(await direct_rows(uow, BUMP_RETURNING, {"prefix": "a:%"})) == [
            ("a:1", 14),
            ("a:2", 14),
        ]
        assert await direct_execute(uow, BUMP_RETURNING, {"prefix": "b:%"}) == 1
        assert await direct_rows(uow, FIRST_KEYS, {}) == [("a:1",), ("a:2",)]  # LIMIT 2
        await uow.commit()
    async with db.uow() as uow:
        assert await direct_rows(uow, HITS, {"key": "a:1"}) == [(14,)]
        assert await direct_rows(uow, HITS, {"key": "b:1"}) == [(4,)]
        assert await direct_rows(uow, HITS, {"key": "none"}) == []
        found = await uow.session.get(RateCounter, "b:1")
        assert found is not None and (found.window_start, found.hits) == (7, 4)


async def test_statements_of_a_rolled_back_unit_of_work_leave_nothing(db: Database) -> None:
    async with db.uow() as uow:  # the direct statement begins the transaction
        await direct_rows(uow, COUNTER, {"key": "gone"})
    async with db.uow() as uow:
        await direct_rows(uow, COUNTER, {"key": "kept"})
        await uow.commit()
        # After a commit the session begins a new transaction, maybe on another connection:
        # the next statement must run in it, not on the connection of the committed one.
        await direct_rows(uow, COUNTER, {"key": "after-commit"})
    async with db.uow() as uow:
        await direct_rows(uow, COUNTER, {"key": "rolled-back"})
        await uow.rollback()
        await direct_rows(uow, COUNTER, {"key": "after-rollback"})
        await uow.commit()
    async with db.uow() as uow:
        keys = (await uow.session.execute(select(RateCounter.key))).scalars().all()
    assert sorted(keys) == ["after-rollback", "kept"]


async def test_pending_orm_changes_are_flushed_first(db: Database) -> None:
    async with db.uow() as uow:
        uow.session.add(RateCounter(key="pending", window_start=1, hits=5))
        assert await direct_rows(uow, HITS, {"key": "pending"}) == [(5,)]
        await uow.commit()
    async with db.uow() as uow:
        assert await direct_rows(uow, HITS, {"key": "pending"}) == [(5,)]


async def test_errors_are_sqlalchemys(db: Database) -> None:
    async with db.uow() as uow:
        with pytest.raises(StatementError, match="A value is required for bind parameter 'key'"):
            await direct_rows(uow, HITS, {})
    async with db.uow() as uow:
        with pytest.raises(StatementError, match="naive datetime"):
            await direct_execute(uow, INSERT_USAGE, usage(1, "x", datetime(2026, 3, 2), True))
    async with db.uow() as uow:
        await direct_rows(uow, COUNTER, {"key": "code-482913"})
        with pytest.raises(IntegrityError) as twice:
            await direct_rows(uow, COUNTER, {"key": "code-482913"})
    # As the engine's own errors: the parameters stay out of the message (and so the log).
    assert "code-482913" not in str(twice.value)
    assert "parameters hidden" in str(twice.value)


HOT: dict[str, tuple[Direct, dict[str, Any]]] = {
    "rate limit hit": (
        ratelimit._UPSERT["sqlite"],
        {"key": "agent:1:search", "window_start": 1_772_438_400},
    ),
    "catalogue version": (cache._VERSION, {}),
    "paying wallets": (payers.PAYERS, {"agent_id": 1}),
    "free call": (
        quota.TAKE_FREE_CALL[True],
        {"agent_id": 1, "tool": "view-profile", "period": "2026-03", "limit": 100},
    ),
    "usage": (
        calls.INSERT_USAGE,
        usage(1, "c0ffee", datetime(2026, 3, 2, 8, 0, 0, 250000, tzinfo=UTC), False),
    ),
    "seats held": (
        service._SEATS_HELD,
        {
            "schedule_id": 1,
            "start": datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=1))),
        },
    ),
    "booking by key": (service._BY_KEY, {"agent_id": 1, "key": "booking-0001"}),
    "live agent": (service._LIVE_AGENT, {"agent_id": 1}),
    "slot price": (reading._PRICE, {"schedule_id": 1}),
    "booking mail reader": (specialist_mail._READER, {"specialist_id": 1, "booker_id": None}),
    "escrow of a booking": (escrow._ESCROW_POSTING, {"booking_id": 1}),
    "wallet balance": (holds._BALANCE, {"account_id": 1}),
    "hold settled": (
        holds._SETTLE,
        {"hold_id": 1, "status": "captured", "at": datetime(2026, 3, 2, 8, 0, 1, tzinfo=UTC)},
    ),
}


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("name", list(HOT))
async def test_the_hot_statements_send_what_sqlalchemy_sends(db: Database, name: str) -> None:
    direct, params = HOT[name]
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    agent = await make_agent(db)
    params = {**params, "agent_id": agent} if "agent_id" in params else params
    event.listen(Engine, "before_cursor_execute", capture)
    try:
        async with db.uow() as uow:
            await uow.session.connection()
            sent.clear()
            await uow.session.execute(direct.statement, params)
    finally:
        event.remove(Engine, "before_cursor_execute", capture)
    compiled = direct.compiled(db.engine.dialect)
    assert sent == [(compiled.sql, tuple(compiled.arguments(params)))]


def test_statements_that_need_sqlalchemy_at_execution_are_refused() -> None:
    dialect = sqlite.dialect()
    expanding = select(_COUNTERS.c.hits).where(
        _COUNTERS.c.key.in_(bindparam("keys", expanding=True))
    )
    with pytest.raises(ArgumentError, match="expanding"):
        compile_direct(expanding, dialect)
    with pytest.raises(ArgumentError, match="every column"):
        # ``used`` has a Python-side default SQLAlchemy would compute at execution time.
        compile_direct(
            insert(quota.QUOTA).values(
                agent_id=bindparam("agent_id"), tool=bindparam("tool"), period=bindparam("p")
            ),
            dialect,
        )
    compiled = compile_direct(COUNTER.statement, dialect)
    # A literal bind's value can be given by its name, as through SQLAlchemy...
    assert compiled.arguments({"key": "k", "hits": 9}) == ["k", 7, 9]
    # ...but through SQLAlchemy a key that names no bind would add a column to the INSERT.
    with pytest.raises(ArgumentError, match="does not take"):
        INSERT_USAGE.compiled(dialect).arguments({**usage(1, "x", MOMENTS[0], True), "id": 5})


async def test_with_echo_on_direct_statements_are_logged_too(
    database_url: str, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    echoing = Database(make_engine(database_url, echo=True, shortcuts=True), clock, shortcuts=True)
    try:
        with caplog.at_level(logging.INFO, logger="sqlalchemy.engine.Engine"):
            async with echoing.uow() as uow:
                await direct_rows(uow, COUNTER, {"key": "echo:1"})  # rows back
                await direct_execute(uow, BUMP, {"prefix": "echo:%", "by": 2})  # a count back
                await uow.session.execute(text("SELECT :marker"), {"marker": "echo:orm"})
                await uow.commit()
    finally:
        await echoing.dispose()
    logged = [r.getMessage() for r in caplog.records if r.name == "sqlalchemy.engine.Engine"]
    assert any(m.startswith("INSERT INTO rate_counters") for m in logged), logged
    assert any(m.startswith("UPDATE rate_counters") for m in logged), logged
    assert sum(m.startswith("[direct] [SQL parameters hidden") for m in logged) == 2, logged
    # Parameters never reach the log: some hold one-time codes (a mail body for the outbox).
    assert not any("echo:" in m for m in logged), logged


async def test_a_statement_built_again_on_demand_keeps_its_sql_not_its_tree(
    db: Database,
) -> None:
    """With ``rebuild``, the tree is let go once compiled; the statement still runs, through
    the shortcut and through the session (shortcuts off), and compiles for another dialect."""
    builds = []

    def build() -> Any:
        builds.append(1)
        return select(_COUNTERS.c.hits).where(_COUNTERS.c.key == bindparam("key"))

    lazy = Direct(build(), rebuild=build)
    lazy.compiled(db.engine.dialect)
    assert len(builds) == 1 and lazy._statement is None  # compiled, tree let go
    async with db.uow() as uow:
        await direct_execute(uow, COUNTER, {"key": "lazy"})
        assert await direct_rows(uow, lazy, {"key": "lazy"}) == [(3,)]  # either way
        await uow.commit()
    async with db.uow() as uow:  # the session's way builds it again, once
        rows = (await uow.session.execute(lazy.ordinary, {"key": "lazy"})).all()
        assert [tuple(r) for r in rows] == [(3,)]
        assert lazy.ordinary is lazy.ordinary
    assert len(builds) == 2
    assert "hits" in lazy.compiled(sqlite.dialect()).sql  # another dialect: built again
