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
from typing import Self

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

    async def __aenter__(self) -> Self:
        self.session = self.db.sessions()
        self._committed = False
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
