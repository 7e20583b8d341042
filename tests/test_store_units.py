"""Units of work: statements sent straight to the driver and ORM statements share one
transaction, whichever comes first; the connection comes without an ORM session (on a SQLite
file it is lent, see ``agent_server.kernel.store.sqlite_pool``; on PostgreSQL it is checked
out of the engine's pool) and the session is only made when asked for."""

from __future__ import annotations

import asyncio
import ctypes
import sqlite3
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest
from db_support import SYNCHRONOUS_COMMIT
from sqlalchemy import Table, bindparam, insert, select, text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agent_server.accounts.models import RateCounter
from agent_server.kernel.store import (
    Database,
    Direct,
    direct_execute,
    direct_rows,
    plan_each_time,
    skipping_flush_wait,
)
from agent_server.kernel.store import engine as store_engine
from agent_server.kernel.store.engine import SQLITE_HEAP_LIMIT, SQLITE_STATEMENTS, WAL_PAGES
from agent_server.kernel.store.outage import database_unavailable

_COUNTERS: Table = RateCounter.__table__  # type: ignore[assignment]
ADD = Direct(insert(_COUNTERS).values(key=bindparam("key"), window_start=1, hits=1))
HITS = Direct(select(_COUNTERS.c.hits).where(_COUNTERS.c.key == bindparam("key")))


async def _stored(db: Database, key: str) -> bool:
    async with db.uow() as uow:
        return bool(await direct_rows(uow, HITS, {"key": key}))


async def test_direct_statements_alone_make_no_session_and_commit(db: Database) -> None:
    async with db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "alone"})
        # Both backends: the connection is lent (SQLite) or checked out (PostgreSQL) alone.
        assert not uow.has_session
        await uow.commit()
    assert await _stored(db, "alone")


async def test_orm_statements_after_direct_ones_see_them_and_roll_back_with_them(
    db: Database,
) -> None:
    async with db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "direct-first"})
        seen = await uow.session.scalar(
            select(RateCounter.hits).where(RateCounter.key == "direct-first")
        )
        assert seen == 1
        uow.session.add(RateCounter(key="orm-second", window_start=1, hits=2))
        assert await direct_rows(uow, HITS, {"key": "orm-second"}) == [(2,)]  # flushed first
        # Not committed: both go.
    assert not await _stored(db, "direct-first")
    assert not await _stored(db, "orm-second")


async def test_orm_statements_after_direct_ones_commit_with_them(db: Database) -> None:
    async with db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "direct-before-orm"})
        uow.session.add(RateCounter(key="orm-after-direct", window_start=1, hits=1))
        await uow.commit()
    assert await _stored(db, "direct-before-orm")
    assert await _stored(db, "orm-after-direct")


async def test_a_session_made_but_unused_after_direct_statements_still_commits_them(
    db: Database,
) -> None:
    async with db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "session-idle"})
        assert uow.session is not None  # made, never used: the transaction is the driver's
        await uow.commit()
    assert await _stored(db, "session-idle")


async def test_direct_statements_after_orm_ones_commit_with_them(db: Database) -> None:
    async with db.uow() as uow:
        uow.session.add(RateCounter(key="orm-first", window_start=1, hits=1))
        await uow.flush()
        await direct_execute(uow, ADD, {"key": "direct-second"})
        await uow.commit()
    assert await _stored(db, "orm-first")
    assert await _stored(db, "direct-second")


async def test_work_after_a_commit_is_rolled_back_unless_committed_again(db: Database) -> None:
    async with db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "kept"})
        await uow.commit()
        await direct_execute(uow, ADD, {"key": "dropped"})
        assert uow.committed
    assert await _stored(db, "kept")
    assert not await _stored(db, "dropped")


async def test_an_explicit_rollback_undoes_direct_and_orm_work(db: Database) -> None:
    async with db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "undone-direct"})
        uow.session.add(RateCounter(key="undone-orm", window_start=1, hits=1))
        await uow.flush()
        await uow.rollback()
        await direct_execute(uow, ADD, {"key": "after-rollback"})
        await uow.commit()
    assert not await _stored(db, "undone-direct")
    assert not await _stored(db, "undone-orm")
    assert await _stored(db, "after-rollback")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_failed_unit_of_work_leaves_its_lent_connection_idle_and_unlocked(
    db: Database,
) -> None:
    assert db.lent is not None
    with pytest.raises(RuntimeError):
        async with db.uow() as uow:
            await direct_execute(uow, ADD, {"key": "failed"})  # takes the write lock
            raise RuntimeError("the operation failed")
    assert db.lent.idle == 1
    # The lock went with the rollback: another writer gets it at once (it would wait 30 s).
    async with asyncio.timeout(5), db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "next"})
        await uow.commit()
    assert db.lent.idle == 1  # the same connection, lent again
    assert not await _stored(db, "failed")
    assert await _stored(db, "next")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_concurrent_units_of_work_each_get_a_connection_and_all_commit(
    db: Database,
) -> None:
    assert db.lent is not None

    async def write(n: int) -> None:
        async with db.uow() as uow:
            await direct_execute(uow, ADD, {"key": f"writer-{n}"})
            await asyncio.sleep(0)  # the others try to begin meanwhile
            seen = await uow.session.scalar(
                select(RateCounter.hits).where(RateCounter.key == f"writer-{n}")
            )
            assert seen == 1
            await uow.commit()

    await asyncio.wait_for(asyncio.gather(*(write(n) for n in range(8))), 30)
    for n in range(8):
        assert await _stored(db, f"writer-{n}")
    assert 1 <= db.lent.idle <= 8
    await db.lent.close()
    assert db.lent.idle == 0


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_lent_and_pooled_sqlite_connections_are_configured_alike(db: Database) -> None:
    pragmas = (
        "journal_mode",
        "foreign_keys",
        "synchronous",
        "wal_autocheckpoint",
        "soft_heap_limit",
    )
    expected = ["wal", 1, 1, WAL_PAGES, SQLITE_HEAP_LIMIT]  # synchronous 1 is NORMAL

    async with db.engine.connect() as conn:
        pooled = [(await conn.exec_driver_sql(f"PRAGMA {p}")).scalar() for p in pragmas]
    async with db.uow() as uow:
        _, driver = await uow.driver_connection()
        lent = [(await driver.execute_fetchall(f"PRAGMA {p}"))[0][0] for p in pragmas]
    assert pooled == expected
    assert lent == expected


def _sqlite_memory() -> int:
    """The bytes SQLite holds in this process (its own count, ``sqlite3_memory_used``), read
    from the very library Python's sqlite3 module has loaded (another copy counts nothing)."""
    with open("/proc/self/maps") as maps:
        loaded = {line.split()[-1] for line in maps if "/libsqlite3" in line}
    assert len(loaded) == 1, f"one shared SQLite library in the process: {loaded}"
    library = ctypes.CDLL(loaded.pop())
    library.sqlite3_libversion.restype = ctypes.c_char_p
    assert library.sqlite3_libversion().decode() == sqlite3.sqlite_version
    library.sqlite3_memory_used.restype = ctypes.c_int64
    return int(library.sqlite3_memory_used())


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_sqlite_memory_stays_near_its_limit_however_many_connections_read(
    db: Database,
) -> None:
    """Six open connections each read 8 MB of rows: without the soft limit each would keep
    2 MB of pages (12 MB); with it SQLite's memory stays near SQLITE_HEAP_LIMIT."""
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE filler (id INTEGER PRIMARY KEY, body BLOB)")
        await conn.exec_driver_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
            "INSERT INTO filler SELECT i, randomblob(4000) FROM n"
        )
    before = _sqlite_memory()  # other tests' connections may hold some
    async with AsyncExitStack() as stack:
        for _ in range(6):  # each stays open, its pages cached, while the next one reads
            conn = await stack.enter_async_context(db.engine.connect())
            read = await conn.exec_driver_sql("SELECT sum(length(body)) FROM filler")
            assert read.scalar() == 2000 * 4000
            await conn.rollback()
        grown = _sqlite_memory() - before
    assert grown < SQLITE_HEAP_LIMIT + 1024 * 1024


def _wide_select(n: int) -> str:
    """A statement of its own (``n`` in it) that compiles to a program of tens of KB."""
    terms = ", ".join(f"coalesce(nullif(abs(id - {n}), {i}), {i}) * {i}" for i in range(150))
    return f"SELECT {terms} FROM filler WHERE id = {n}"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_sqlite_connection_keeps_a_bounded_number_of_prepared_statements(
    db: Database,
) -> None:
    """A connection that meets ever new statements keeps only its last SQLITE_STATEMENTS:
    past them its memory stops growing (the sqlite3 module's default keeps 128)."""
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql("CREATE TABLE filler (id INTEGER PRIMARY KEY)")
        await conn.exec_driver_sql("INSERT INTO filler VALUES (1)")
        await conn.commit()
        before = _sqlite_memory()
        for n in range(SQLITE_STATEMENTS):
            await conn.exec_driver_sql(_wide_select(n))
        first = _sqlite_memory() - before  # a full cache
        for n in range(SQLITE_STATEMENTS, 4 * SQLITE_STATEMENTS):
            await conn.exec_driver_sql(_wide_select(n))
        more = _sqlite_memory() - before - first
        await conn.rollback()
    assert first > SQLITE_STATEMENTS * 10_000, "each statement kept is a program of tens of KB"
    assert more < first / 4, f"{more} bytes more after {3 * SQLITE_STATEMENTS} new statements"


ADD_NO_FLUSH_WAIT = Direct(
    skipping_flush_wait(insert(_COUNTERS).values(key=bindparam("key"), window_start=1, hits=1))
)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_an_insert_can_skip_the_flush_wait_of_its_transaction_in_its_own_round_trip(
    db: Database,
) -> None:
    async with db.uow() as uow:
        assert await direct_rows(uow, SYNCHRONOUS_COMMIT, {}) == [("on",)]
        await direct_rows(uow, ADD_NO_FLUSH_WAIT, {"key": "relaxed-insert"})
        assert await direct_rows(uow, SYNCHRONOUS_COMMIT, {}) == [("off",)]
        await uow.commit()
    assert await _stored(db, "relaxed-insert")
    async with db.uow() as uow:
        assert await direct_rows(uow, SYNCHRONOUS_COMMIT, {}) == [("on",)]


PLANNER = Direct(
    text(
        "SELECT current_setting('plan_cache_mode'), current_setting('jit'),"
        " current_setting('max_parallel_workers_per_gather')"
    )
)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_postgres_sessions_run_short_statements_without_jit_or_workers(
    db: Database,
) -> None:
    """Each statement is short: no JIT compilation, no parallel workers; a search's
    transaction plans each statement for its own values, and only that transaction."""
    async with db.uow() as uow:
        assert await direct_rows(uow, PLANNER, {}) == [("auto", "off", "0")]
        await plan_each_time(uow)
        assert await direct_rows(uow, PLANNER, {}) == [("force_custom_plan", "off", "0")]
        await uow.commit()
    async with db.uow() as uow:  # the next transaction on a pooled connection: as before
        assert await direct_rows(uow, PLANNER, {}) == [("auto", "off", "0")]


async def _admin_rows(db: Database, sql: str, params: dict[str, object]) -> list[Any]:
    admin = create_async_engine(db.engine.url, poolclass=NullPool)
    try:
        async with admin.connect() as other:
            return list((await other.execute(text(sql), params)).all())
    finally:
        await admin.dispose()


async def _drop_backend(db: Database, pid: int) -> None:
    """The server ends that pooled, idle connection (a restart or an idle timeout would),
    and its goodbye reaches this process."""
    await _admin_rows(db, "SELECT pg_terminate_backend(:pid)", {"pid": pid})
    for _ in range(200):  # the backend exits within moments
        gone = not await _admin_rows(
            db, "SELECT 1 FROM pg_stat_activity WHERE pid = :pid", {"pid": pid}
        )
        if gone:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the event loop reads the closed socket


BACKEND_PID = Direct(text("SELECT pg_backend_pid()"))


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_pooled_connection_the_server_dropped_is_replaced_unseen(db: Database) -> None:
    async with db.uow() as uow:
        ((dropped,),) = await direct_rows(uow, BACKEND_PID, {})
    await _drop_backend(db, dropped)
    async with db.uow() as uow:
        await direct_execute(uow, ADD, {"key": "after-drop"})
        ((now,),) = await direct_rows(uow, BACKEND_PID, {})
        await uow.commit()
    assert now != dropped
    assert await _stored(db, "after-drop")


UNBALANCED = Direct(
    text(
        "INSERT INTO ledger_transactions (kind, reference, currency, amount, memo, created_at) "
        "VALUES ('charge', :ref, 'ETH', 5, '', now())"
    )
)
LEDGER_REFERENCES = Direct(text("SELECT reference FROM ledger_transactions"))


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_commit_refused_at_the_end_raises_and_the_connection_serves_on(
    db: Database,
) -> None:
    """Direct statements alone: the deferred ledger check refuses the transaction only at
    COMMIT. That raises as through a session (a ``DBAPIError``), nothing stays, and the
    connection goes back to the pool and serves the next unit of work."""
    pool: Any = db.engine.sync_engine.pool
    async with db.uow() as uow:
        ((first,),) = await direct_rows(uow, BACKEND_PID, {})
        await uow.commit()
    with pytest.raises(DBAPIError, match="has no entries"):
        async with db.uow() as uow:
            ((refused_on,),) = await direct_rows(uow, BACKEND_PID, {})
            await direct_execute(uow, UNBALANCED, {"ref": "refused"})
            await uow.commit()
    assert pool.checkedout() == 0
    async with db.uow() as uow:
        ((after,),) = await direct_rows(uow, BACKEND_PID, {})
        assert await direct_rows(uow, LEDGER_REFERENCES, {}) == []
        await direct_execute(uow, ADD, {"key": "after-refusal"})
        await uow.commit()
    assert first == refused_on == after  # one pooled connection throughout
    assert await _stored(db, "after-refusal")
    assert pool.checkedout() == 0


async def _last_query_after_checkout(db: Database) -> tuple[int, int, str]:
    """Check a pooled connection out and back without running anything on it: its backend
    before and after, and the last statement the server saw from it meanwhile."""
    async with db.uow() as uow:
        ((before,),) = await direct_rows(uow, BACKEND_PID, {})
    async with db.engine.connect():
        rows = await _admin_rows(
            db, "SELECT query FROM pg_stat_activity WHERE pid = :pid", {"pid": before}
        )
    async with db.uow() as uow:
        ((after,),) = await direct_rows(uow, BACKEND_PID, {})
    return before, after, str(rows[0][0]) if rows else ""


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_only_a_connection_idle_for_a_while_is_pinged_before_use(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection back in the pool a moment ago is handed out as it is (a round trip
    saved on every unit of work); one idle past ``PING_IDLE_AFTER`` is asked ``SELECT 1``
    first, since it may have been dropped on the way without a word."""
    before, after, last = await _last_query_after_checkout(db)
    assert before == after and last != "SELECT 1"
    monkeypatch.setattr(store_engine, "PING_IDLE_AFTER", 0.0)
    before, after, last = await _last_query_after_checkout(db)
    assert before == after and last == "SELECT 1"


def test_a_statement_on_a_connection_the_server_closed_counts_as_unavailable() -> None:
    """What a statement meets on a connection the server closed under it: the surfaces
    answer SERVICE_UNAVAILABLE, not INTERNAL_ERROR."""
    raw = asyncpg.InterfaceError("connection is closed")
    adapted = AsyncAdapt_asyncpg_dbapi.InterfaceError("connection is closed")
    assert database_unavailable(raw) and database_unavailable(adapted)
    assert not database_unavailable(asyncpg.InterfaceError("cannot use a closed cursor"))
