"""The unit of work: one database transaction around one service operation.

Services are plain async functions that take a ``UnitOfWork``::

    async def cancel_booking(uow: UnitOfWork, cmd: CancelBooking) -> Booking:
        async with uow:
            ...
            await uow.commit()

Whatever was not committed when the block ends is rolled back.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from agent_server.kernel.clock import Clock, SystemClock
from agent_server.kernel.store.engine import is_sqlite, make_sessionmaker
from agent_server.kernel.store.shortcuts import (
    asyncpg_error,
    inline_sqlite_works,
    missing_session_internals,
    unavailable,
    wanted,
)
from agent_server.kernel.store.sqlite_pool import Lent, SqlitePool, is_file_database


class Database:
    """The engine, its session factory and the clock the services read time from.

    ``direct``: whether ``Direct`` statements go straight to the driver (else through the ORM
    session), and on a SQLite file, units of work borrow their connection from ``lent`` (see
    ``agent_server.kernel.store.sqlite_pool``) rather than from the engine's pool. On
    PostgreSQL (``held``) a unit of work whose first statement goes straight to the driver
    checks its connection out of the engine's pool without an ORM session, and begins and
    commits its transaction on the driver (``UnitOfWork``). These are shortcuts
    (``store.shortcuts``), taken unless ``shortcuts`` (default:
    ``AGENT_SERVER_DATABASE_SHORTCUTS``) is off or the installed libraries lack what they need.
    """

    def __init__(
        self, engine: AsyncEngine, clock: Clock | None = None, *, shortcuts: bool | None = None
    ) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
        self.clock: Clock = clock or SystemClock()
        self.is_sqlite: bool = is_sqlite(engine.url.drivername)
        self.echo: bool = bool(engine.echo)  # statements sent straight to the driver log too
        self.direct: bool = wanted(shortcuts)
        if self.direct and (missing := missing_session_internals()):
            unavailable("direct", missing)
            self.direct = False
        self.lent: SqlitePool | None = None
        lend = self.direct and self.is_sqlite and inline_sqlite_works()
        if lend and is_file_database(engine.url):
            # Keep as many idle as the engine's pool may hold: its size plus as many overflow.
            pool: Any = engine.sync_engine.pool
            keep = 2 * int(pool.size()) if hasattr(pool, "size") else 10
            self.lent = SqlitePool(engine.url, keep=keep, echo=bool(engine.echo))
        self.held: bool = self.direct and not self.is_sqlite

    def uow(self) -> UnitOfWork:
        """A fresh unit of work."""
        return UnitOfWork(self)

    async def dispose(self) -> None:
        if self.lent is not None:
            await self.lent.close()
        await self.engine.dispose()


class UnitOfWork:
    """One transaction: statements sent straight to the driver and, when asked for, an ORM
    session in the same transaction; rolled back unless committed.

    Most tool calls send only statements straight to the driver. An ORM session would add
    its own bookkeeping to each such transaction (making the session, its transaction and
    connection objects, committing and closing through them: on PostgreSQL about 0.2 ms of
    the process's CPU per unit of work). So the connection of a unit of work that begins with
    such a statement comes without a session: on a SQLite file a ``Lent`` one, on PostgreSQL
    one checked out of the engine's pool (``_held``, with the pool's checks). A session asked
    for later is bound to that same connection and transaction, and ``commit`` ends both.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock
        self._committed = False
        self._session: AsyncSession | None = None
        self._lent: Lent | None = None
        self._driver: tuple[object, Dialect, Any, Any] | None = None
        self._held: tuple[AsyncConnection, Any, Any] | None = None

    async def __aenter__(self) -> Self:
        self._session = None
        self._lent = None
        self._committed = False
        self._driver = None
        self._held = None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, lent, held = self._session, self._lent, self._held
        self._session = self._lent = self._held = None
        self._driver = None
        try:
            if session is not None:
                try:
                    if not self._committed:
                        await session.rollback()
                finally:
                    await session.close()
        finally:
            if lent is not None and self.db.lent is not None:
                await self.db.lent.give_back(lent)
            if held is not None:
                await _give_back(held)

    @property
    def session(self) -> AsyncSession:
        """The ORM session of this unit of work, made on first use."""
        if self._session is None:
            lent = self._borrowed()
            if lent is not None:
                self._session = lent.sessions()
            elif self._held is not None:
                self._session = self.db.sessions(bind=self._held[0])
            else:
                self._session = self.db.sessions()
        return self._session

    def _borrowed(self) -> Lent | None:
        """The connection lent to this unit of work (borrowed now if need be); None where
        connections are not lent."""
        if self._lent is None and self.db.lent is not None:
            self._lent = self.db.lent.take()
        return self._lent

    @property
    def has_session(self) -> bool:
        """Whether the ORM session was made (only then can it hold pending changes)."""
        return self._session is not None

    async def commit(self) -> None:
        if self._session is not None:
            await self._session.commit()
        if self._lent is not None:
            await self._lent.commit()
        if self._held is not None:
            await _end_held(self._held, commit=True)
        self._committed = True

    @property
    def committed(self) -> bool:
        """Whether this unit of work's transaction was committed."""
        return self._committed

    async def rollback(self) -> None:
        if self._session is not None:
            await self._session.rollback()
        if self._lent is not None:
            await self._lent.end()
        if self._held is not None:
            await _end_held(self._held, commit=False)

    async def flush(self) -> None:
        """Flush the session's pending changes (a unit of work without a session has none)."""
        if self._session is not None:
            await self._session.flush()

    async def driver_connection(self) -> tuple[Dialect, Any]:
        """The dialect and the driver's own connection (aiosqlite's, asyncpg's) of this unit of
        work's transaction, begun if it was not. Statements sent to it run in the transaction
        but bypass the session: it does not flush for them.

        Kept while the session's transaction lasts: asking the session costs two trips through
        its async adapter (some 20 microseconds), which a statement sent straight to SQLite
        would otherwise spend mostly here.
        """
        dialect, driver, _adapter = await self._connections()
        return dialect, driver

    async def dbapi_connection(self) -> tuple[Dialect, Any]:
        """The dialect and SQLAlchemy's DBAPI adapter around the driver's connection (kept as
        ``driver_connection`` is)."""
        dialect, _driver, adapter = await self._connections()
        return dialect, adapter

    async def _connections(self) -> tuple[Dialect, Any, Any]:
        lent = self._borrowed() if self._session is None else None
        if lent is not None:
            # No session: the lent connection itself, in a transaction begun here.
            driver = await lent.driver()
            if not driver.in_transaction:
                await driver.begin_immediate()
            return self.db.engine.dialect, driver, None
        if self._session is None and self.db.held:
            # No session: a connection of the engine's pool, its transaction begun by the
            # first statement (``store.direct``) and ended by ``commit`` or ``rollback``.
            if self._held is None:
                connection = await self.db.engine.connect()
                try:
                    raw = await connection.get_raw_connection()
                except BaseException:
                    await connection.close()
                    raise
                self._held = (connection, raw.driver_connection, raw.dbapi_connection)
            return self.db.engine.dialect, self._held[1], self._held[2]
        transaction = self.session.sync_session.get_transaction()
        known = self._driver
        if known is not None and transaction is known[0] and transaction is not None:
            if transaction.is_active:  # not left unusable by a failed flush
                return known[1], known[2], known[3]
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        # A lent connection has an engine of its own, made from the same URL: its statements
        # compile as for the database's engine, so they compile once, not once per connection.
        dialect = self.db.engine.dialect if self._lent is not None else connection.dialect
        self._driver = (
            self.session.sync_session.get_transaction(),
            dialect,
            raw.driver_connection,
            raw.dbapi_connection,
        )
        return dialect, raw.driver_connection, raw.dbapi_connection


async def _end_held(held: tuple[AsyncConnection, Any, Any], *, commit: bool) -> None:
    """Commit or roll back the transaction the driver has open on a held connection (none
    once a session bound to it has ended it), as SQLAlchemy's asyncpg adapter would: the
    transaction is let go whether or not its end succeeded, and a failure to commit (a
    deferred constraint) is raised as its ``sqlalchemy.exc`` class."""
    connection, _driver, adapter = held
    transaction = adapter._transaction
    if transaction is None:
        return
    adapter._transaction = None
    try:
        await (transaction.commit() if commit else transaction.rollback())
    except Exception as exc:
        dialect = connection.dialect
        raise DBAPIError.instance(
            "COMMIT" if commit else "ROLLBACK",
            None,
            asyncpg_error(adapter, dialect, exc),
            dialect.loaded_dbapi.Error,
            dialect=dialect,
        ) from exc


async def _give_back(held: tuple[AsyncConnection, Any, Any]) -> None:
    """Return a held connection to the pool, its transaction rolled back if still open; one
    that failed to roll back is discarded, not pooled."""
    connection = held[0]
    try:
        await _end_held(held, commit=False)
    except BaseException:
        await connection.invalidate()
        raise
    finally:
        await connection.close()
