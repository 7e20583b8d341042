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
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent_server.clock import Clock, SystemClock
from agent_server.store.engine import is_sqlite, make_sessionmaker


class Database:
    """The engine, its session factory and the clock the services read time from."""

    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = make_sessionmaker(engine)
        self.clock: Clock = clock or SystemClock()
        self.is_sqlite: bool = is_sqlite(engine.url.drivername)

    def uow(self) -> UnitOfWork:
        """A fresh unit of work."""
        return UnitOfWork(self)

    async def dispose(self) -> None:
        await self.engine.dispose()


class UnitOfWork:
    """A session bound to one transaction; rolled back unless committed."""

    session: AsyncSession

    def __init__(self, db: Database) -> None:
        self.db = db
        self.clock = db.clock
        self._committed = False
        self._driver: tuple[object, Dialect, Any, Any] | None = None

    async def __aenter__(self) -> Self:
        self.session = self.db.sessions()
        self._committed = False
        self._driver = None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if not self._committed:
                await self.session.rollback()
        finally:
            self._driver = None
            await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
        self._committed = True

    @property
    def committed(self) -> bool:
        """Whether this unit of work's transaction was committed."""
        return self._committed

    async def rollback(self) -> None:
        await self.session.rollback()

    async def flush(self) -> None:
        await self.session.flush()

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
        transaction = self.session.sync_session.get_transaction()
        known = self._driver
        if known is not None and transaction is known[0] and transaction is not None:
            if transaction.is_active:  # not left unusable by a failed flush
                return known[1], known[2], known[3]
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        self._driver = (
            self.session.sync_session.get_transaction(),
            connection.dialect,
            raw.driver_connection,
            raw.dbapi_connection,
        )
        return connection.dialect, raw.driver_connection, raw.dbapi_connection
