"""Engines and sessions: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL (asyncpg)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import await_

from agent_server.kernel.store.outage import connect_postgres
from agent_server.kernel.store.shortcuts import inline_sqlite_works, wanted
from agent_server.kernel.store.sqlite_inline import begin_immediate, inline_connector

SQLITE_BUSY_TIMEOUT_MS = 30_000
WAL_PAGES = 10_000  # about 40 MB of 4 KiB pages
WAL_BYTES = 64 * 1024 * 1024
SQLITE_HEAP_LIMIT = 1024 * 1024
"""SQLite's memory in the whole process, soft (``PRAGMA soft_heap_limit``): past it, SQLite
reuses its page caches' clean pages rather than grow. Every connection would otherwise keep
up to 2 MB of pages, and a server keeps a connection per concurrent unit of work; a page read
again comes from the operating system's cache (in the bench, a search's CPU did not change
measurably between 4 MiB and 1 MiB)."""
SQLITE_STATEMENTS = 32
"""Prepared statements each SQLite connection keeps (the ``sqlite3`` module's LRU cache,
128 by default). A search's statement is a program of tens of KB, searches have many shapes,
and every connection of the pool keeps its own: at 128, a server's connections held about
4 MB of statements after a few thousand searches. The statements of one call, and of the
gate and the meter that every call runs, fit in 32."""


def is_sqlite(url: str) -> bool:
    """Whether a database URL points at SQLite."""
    return url.startswith("sqlite")


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    pool_timeout: float = 10.0,
    lock_timeout: float | None = None,
    shortcuts: bool | None = None,
) -> AsyncEngine:
    """An async engine configured for the backend the URL names.

    On PostgreSQL ``pool_size`` connections stay open and as many more open under load; a
    unit of work that finds them all busy for ``pool_timeout`` seconds fails (``store.outage``
    counts that as the database being unavailable). With ``lock_timeout`` (seconds), a
    PostgreSQL statement that waits longer than that for a row or table lock fails (lock
    not available, counted the same) instead of waiting for as long as the holder keeps it;
    SQLite's waits are bounded by its busy timeout anyway. PostgreSQL sessions run without
    JIT compilation and parallel workers (see below).

    Statement parameters never reach a log, neither ``echo``'s nor an error's message: some
    hold what must not be logged (a mail body with its one-time code, on its way to the
    outbox).

    SQLite connections run their calls on the event loop's thread (``store.sqlite_inline``)
    unless ``shortcuts`` (default: ``AGENT_SERVER_DATABASE_SHORTCUTS``) is off or the
    installed aiosqlite no longer allows it (``store.shortcuts``): then they are aiosqlite's
    own, with a worker thread each."""
    if is_sqlite(url):
        pooling: dict[str, Any] = (
            # One shared connection: each new one would be a new, empty database.
            {"poolclass": StaticPool}
            if ":memory:" in url or "mode=memory" in url
            # A pool of connections: opening one costs a file open and the PRAGMAs below.
            else {"pool_size": pool_size, "max_overflow": pool_size}
        )
        engine = create_async_engine(
            url,
            echo=echo,
            hide_parameters=True,
            connect_args={"cached_statements": SQLITE_STATEMENTS},
            **pooling,
        )
        _configure_sqlite(engine, inline=_inline_wanted(shortcuts))
        return engine
    # Every statement is short: compiling one to machine code (JIT, past a planner cost
    # that a facet count at 100,000 specialists reaches) or starting parallel workers for
    # it costs more CPU than it saves.
    server_settings = {"jit": "off", "max_parallel_workers_per_gather": "0"}
    if lock_timeout is not None:
        server_settings["lock_timeout"] = f"{max(1, round(lock_timeout * 1000))}ms"
    engine = create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        connect_args={"server_settings": server_settings},
    )
    _ping_on_checkout(engine)

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        # asyncpg.connect with the arguments the dialect parsed, a server that cannot be
        # reached raised as such (``store.outage``), not as a bare network error.
        cparams["async_creator_fn"] = connect_postgres

    return engine


PING_IDLE_AFTER = 5.0
"""Seconds a pooled PostgreSQL connection may sit idle and still be handed out unpinged."""


def _ping_on_checkout(engine: AsyncEngine) -> None:
    """PostgreSQL: check each connection as the pool hands it out.

    A connection the server closed (a restart, ``pg_terminate_backend``, a proxy's idle
    timeout) is seen closed by asyncpg as soon as the event loop reads the server's goodbye,
    without a round trip. One idle longer than ``PING_IDLE_AFTER`` may also have been dropped
    silently on the way (a firewall, a NAT), so it is asked ``SELECT 1`` first: one round
    trip, as a simple query (no prepared statement, so safe behind a transaction-pooling
    proxy too). ``pool_pre_ping`` would take three on every unit of work (the asyncpg
    adapter wraps its ping in BEGIN and ROLLBACK). A connection that fails either check is
    discarded and the pool tries another (SQLAlchemy's documented pessimistic disconnect
    handling), so a unit of work never starts on a connection known to be gone.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connected(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        connection = dbapi_conn.driver_connection
        if connection.is_closed():
            raise DisconnectionError("the server closed the connection")
        if time.monotonic() - record.info.get("idle_since", 0.0) < PING_IDLE_AFTER:
            return
        try:
            await_(connection.execute("SELECT 1"))
        except Exception as exc:
            raise DisconnectionError("the connection failed its ping") from exc


def make_lent_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """A SQLite engine over ONE connection, configured as ``make_engine``'s are: the engine
    of a connection that ``SqlitePool`` lends to units of work."""
    engine = create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        poolclass=StaticPool,
        connect_args={"cached_statements": SQLITE_STATEMENTS},
    )
    _configure_sqlite(engine, inline=True)
    return engine


def _inline_wanted(explicit: bool | None) -> bool:
    """Whether SQLite connections should run their calls inline (see ``make_engine``)."""
    return wanted(explicit) and inline_sqlite_works()


def _configure_sqlite(engine: AsyncEngine, *, inline: bool) -> None:
    if inline:

        @event.listens_for(engine.sync_engine, "do_connect")
        def _inline(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
            # The dialect opens our thread-less connection with the arguments it parsed.
            cparams["async_creator_fn"] = inline_connector(SQLITE_BUSY_TIMEOUT_MS / 1000)

    # An inline connection waits for the lock itself, asynchronously; aiosqlite's own waits
    # in its worker thread, inside SQLite.
    busy_timeout = 0 if inline else SQLITE_BUSY_TIMEOUT_MS

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN; we issue it ourselves
        # so that writers take the lock up front (BEGIN IMMEDIATE) and never deadlock.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout}")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Every call commits a few rows to the same hot pages (the wallet, the rate counter,
        # the newest index leaves). A checkpoint copies each page once however often the WAL
        # holds it, so checkpointing every WAL_PAGES pages rather than SQLite's 1,000 writes
        # far fewer pages per call; the WAL file is cut back to WAL_BYTES after each.
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
        cur.execute(f"PRAGMA journal_size_limit={WAL_BYTES}")
        cur.execute(f"PRAGMA soft_heap_limit={SQLITE_HEAP_LIMIT}")  # process-wide
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Straight to our connection: through ``exec_driver_sql`` this one statement would
        # cost more than most of the statements of the transaction it begins. A lent
        # connection's unit of work may have begun it already (``SqlitePool``): the session
        # then joins that transaction, and its commit or rollback ends it.
        driver = conn.connection.driver_connection
        if not driver.in_transaction:
            await_(begin_immediate(driver))


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
