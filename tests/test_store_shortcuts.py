"""The store's shortcuts past SQLAlchemy and aiosqlite (``agent_server.kernel.store.shortcuts``):
taken with the installed libraries, switched off by the setting, and left off by themselves,
with a warning, when the internals they need are gone; rows come back named either way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from structlog.testing import capture_logs

from agent_server.accounts.models import RateCounter
from agent_server.kernel.store import (
    Database,
    Direct,
    direct_execute,
    direct_rows,
    make_engine,
    shortcuts,
)
from agent_server.kernel.store.rows import NamedRow
from agent_server.kernel.store.sqlite_inline import InlineConnection

_COUNTERS: Table = RateCounter.__table__  # type: ignore[assignment]
ADD = Direct(
    insert(_COUNTERS).values(key=bindparam("key"), window_start=60, hits=bindparam("hits"))
)
COUNTER = Direct(
    select(_COUNTERS.c.key, _COUNTERS.c.hits, (_COUNTERS.c.hits * 2).label("doubled"))
    .where(_COUNTERS.c.key.like(bindparam("prefix")))
    .order_by(_COUNTERS.c.key)
)
TOTAL = Direct(select(func.count(), func.sum(_COUNTERS.c.hits)).select_from(_COUNTERS))
BUMP = Direct(
    update(_COUNTERS)
    .where(_COUNTERS.c.key.like(bindparam("prefix")))
    .values(hits=_COUNTERS.c.hits + 1)
    .returning(_COUNTERS.c.key, _COUNTERS.c.hits)
)


@pytest.fixture
async def plain(database_url: str, clock: Any) -> AsyncIterator[Database]:
    """A database with every shortcut off."""
    database = Database(make_engine(database_url, shortcuts=False), clock, shortcuts=False)
    yield database
    await database.dispose()


@pytest.fixture
async def fast(database_url: str, clock: Any) -> AsyncIterator[Database]:
    """A database with every shortcut on (what the installed libraries allow)."""
    database = Database(make_engine(database_url, shortcuts=True), clock, shortcuts=True)
    yield database
    await database.dispose()


async def _the_same_work(db: Database) -> dict[str, Any]:
    """Rows, counts and a refusal, as a caller of ``direct_rows`` sees them."""
    async with db.uow() as uow:
        added = [
            await direct_execute(uow, ADD, {"key": key, "hits": hits})
            for key, hits in (("a:1", 3), ("a:2", 5), ("b:1", 7))
        ]
        rows = await direct_rows(uow, COUNTER, {"prefix": "a:%"})
        bumped = await direct_rows(uow, BUMP, {"prefix": "a:%"})
        counted = await direct_execute(uow, BUMP, {"prefix": "b:%"})
        ((count, total),) = await direct_rows(uow, TOTAL, {})
        went_through_session = uow.has_session
        await uow.commit()
    with pytest.raises(IntegrityError):
        async with db.uow() as uow:
            await direct_execute(uow, ADD, {"key": "a:1", "hits": 1})
    async with db.uow() as uow:
        kept = await direct_rows(uow, COUNTER, {"prefix": "%"})
    return {
        "added": added,
        "rows": [(row.key, row.hits, row.doubled) for row in rows],
        "as tuples": rows,
        "named": [row._asdict() for row in bumped],
        "counted": counted,
        "totals": (count, total),
        "kept": kept,
        "session": went_through_session,
    }


async def test_with_the_shortcuts_off_statements_give_the_same_named_rows_counts_and_errors(
    plain: Database, fast: Database
) -> None:
    assert not plain.direct and plain.lent is None
    slow = await _the_same_work(plain)
    assert slow["session"]  # the ordinary way: every statement through the ORM session
    await _truncate(fast)
    quick = await _the_same_work(fast)
    assert {k: v for k, v in slow.items() if k != "session"} == {
        k: v for k, v in quick.items() if k != "session"
    }
    assert quick["rows"] == [("a:1", 3, 6), ("a:2", 5, 10)]
    assert quick["as tuples"] == [("a:1", 3, 6), ("a:2", 5, 10)]  # still plain tuples too
    assert quick["named"] == [{"key": "a:1", "hits": 4}, {"key": "a:2", "hits": 6}]
    assert quick["counted"] == 1 and quick["added"] == [1, 1, 1]
    assert quick["totals"] == (3, 18)
    assert [tuple(row) for row in quick["kept"]] == [("a:1", 4, 8), ("a:2", 6, 12), ("b:1", 8, 16)]


async def _truncate(db: Database) -> None:
    async with db.uow() as uow:
        await uow.session.execute(_COUNTERS.delete())
        await uow.commit()


async def test_every_shortcut_is_taken_with_the_installed_libraries(fast: Database) -> None:
    # A library upgrade that takes away what a shortcut needs fails here, not in production.
    assert shortcuts.missing_session_internals() == []
    assert fast.direct
    async with fast.uow() as uow:
        await direct_rows(uow, TOTAL, {})
        _, driver = await uow.driver_connection()
        if fast.is_sqlite:
            assert shortcuts.inline_sqlite_works()
            assert isinstance(driver, InlineConnection)
            assert fast.lent is not None and not uow.has_session  # a lent connection
        else:
            _, adapter = await uow.dbapi_connection()
            assert shortcuts.missing_asyncpg_internals(adapter) == []
    assert fast.direct  # still: nothing was found missing on the way


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_with_the_shortcuts_off_sqlite_runs_on_aiosqlite_s_own_threads(
    plain: Database,
) -> None:
    async with plain.uow() as uow:
        _, driver = await uow.driver_connection()
        assert isinstance(driver, aiosqlite.Connection)
        assert not isinstance(driver, InlineConnection)
        (busy,) = (await uow.session.execute(select(func.count()))).one()
        assert busy == 1


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_concurrent_writers_without_shortcuts_wait_for_each_other_and_all_commit(
    plain: Database,
) -> None:
    async def write(n: int) -> None:
        async with plain.uow() as uow:
            await direct_execute(uow, ADD, {"key": f"writer-{n}", "hits": n})
            await asyncio.sleep(0.01)  # holding the write lock while the others wait
            await uow.commit()

    await asyncio.gather(*(write(n) for n in range(6)))
    async with plain.uow() as uow:
        assert await direct_rows(uow, TOTAL, {}) == [(6, 15)]


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which shortcuts were reported unavailable, and which adapters were checked."""
    monkeypatch.setattr(shortcuts, "_reported", set())
    monkeypatch.setattr(shortcuts, "_asyncpg_checked", {})


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_missing_asyncpg_adapter_internal_turns_the_shortcut_off_once_and_logged(
    fast: Database, monkeypatch: pytest.MonkeyPatch, reported: None
) -> None:
    gone = (*shortcuts.ASYNCPG_ADAPTER_INTERNALS, "_renamed_in_a_later_release")
    monkeypatch.setattr(shortcuts, "ASYNCPG_ADAPTER_INTERNALS", gone)
    with capture_logs() as logs:
        async with fast.uow() as uow:
            assert await direct_execute(uow, ADD, {"key": "k", "hits": 2}) == 1
            assert await direct_rows(uow, COUNTER, {"prefix": "k"}) == [("k", 2, 4)]
            await uow.commit()
    assert not fast.direct
    warnings = [e for e in logs if e["event"] == "store.shortcut_unavailable"]
    assert [(w["shortcut"], w["missing"]) for w in warnings] == [
        ("direct", ["_renamed_in_a_later_release"])
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_missing_session_internal_leaves_direct_statements_and_lending_off(
    database_url: str, clock: Any, monkeypatch: pytest.MonkeyPatch, reported: None
) -> None:
    monkeypatch.setattr(shortcuts, "SESSION_INTERNALS", ("_is_clean_renamed",))
    with capture_logs() as logs:
        db = Database(make_engine(database_url, shortcuts=True), clock, shortcuts=True)
    try:
        assert not db.direct and db.lent is None
        async with db.uow() as uow:
            assert await direct_execute(uow, ADD, {"key": "k", "hits": 2}) == 1
            rows = await direct_rows(uow, COUNTER, {"prefix": "k"})
            assert uow.has_session
        assert isinstance(rows[0], NamedRow) and rows[0].doubled == 4
    finally:
        await db.dispose()
    assert [e["missing"] for e in logs if e["event"] == "store.shortcut_unavailable"] == [
        ["_is_clean_renamed"]
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_an_aiosqlite_that_hands_calls_to_its_thread_leaves_sqlite_connections_its_own(
    database_url: str, clock: Any, monkeypatch: pytest.MonkeyPatch, reported: None
) -> None:
    async def handed_to_a_thread(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # what a hand-off to a worker thread looks like to the loop
        return fn(*args, **kwargs)

    monkeypatch.setattr(InlineConnection, "_execute", handed_to_a_thread)
    shortcuts.inline_sqlite_works.cache_clear()
    try:
        with capture_logs() as logs:
            db = Database(make_engine(database_url, shortcuts=True), clock, shortcuts=True)
        try:
            assert db.lent is None  # lending needs inline connections
            async with db.uow() as uow:
                _, driver = await uow.driver_connection()
                assert not isinstance(driver, InlineConnection)
                assert await direct_execute(uow, ADD, {"key": "k", "hits": 2}) == 1
                await uow.commit()
        finally:
            await db.dispose()
    finally:
        shortcuts.inline_sqlite_works.cache_clear()
    assert [e["shortcut"] for e in logs if e["event"] == "store.shortcut_unavailable"] == [
        "sqlite_inline"
    ]
