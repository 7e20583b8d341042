"""SQLite connections lent to units of work, with or without an ORM session.

Most tool calls run only statements sent straight to the driver (``Direct``). Through an ORM
session each such transaction also pays for the session itself, a checkout from SQLAlchemy's
pool and the trips through its async adapter to begin, commit and close: more than all of
the call's statements together. So on a file database a unit of work borrows a ``Lent``
connection instead: its statements begin (``BEGIN IMMEDIATE``), run and commit on the driver
connection directly, and the ORM session is only made if the unit of work asks for one.

That session must see the same transaction, so each lent connection comes with an engine of
its own whose one pooled connection (``StaticPool``) is that very connection, configured
exactly as the main engine's are (``store.engine.make_lent_engine``). When the session begins
while the unit of work's direct statements already began the transaction, the engine's
``begin`` hook leaves it as it is; the session's commit or rollback then ends the whole
transaction.

An event listener on the main engine does not see the ORM statements of a unit of work:
they run on the lent connection's engine. Listen on ``sqlalchemy.engine.Engine`` (every
engine) instead.
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agent_server.kernel.store.engine import make_lent_engine, make_sessionmaker
from agent_server.kernel.store.sqlite_inline import InlineConnection


class Lent:
    """One SQLite connection, and the engine and sessions that use only it."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self._driver: InlineConnection | None = None

    async def driver(self) -> InlineConnection:
        """The driver connection, opened (and configured) on first use."""
        driver = self._driver
        if driver is None:
            async with self.engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
            assert isinstance(driver, InlineConnection)
            self._driver = driver
        return driver

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open on the connection (``False`` before it opens)."""
        return self._driver is not None and self._driver.in_transaction

    async def commit(self) -> None:
        """Commit the transaction open on the connection, if one is."""
        if self._driver is not None and self._driver.in_transaction:
            await self._driver.commit()

    async def end(self) -> None:
        """Roll back whatever the borrower left open."""
        if self._driver is not None and self._driver.in_transaction:
            await self._driver.rollback()


class SqlitePool:
    """Idle ``Lent`` connections of one database file; at most ``keep`` stay open."""

    def __init__(self, url: URL, *, keep: int, echo: bool = False) -> None:
        self._url = url.render_as_string(hide_password=False)
        self._keep = keep
        self._echo = echo
        self._idle: list[Lent] = []

    def take(self) -> Lent:
        """An idle connection, or a new one (opened when first used)."""
        if self._idle:
            return self._idle.pop()
        engine = make_lent_engine(self._url, echo=self._echo)
        return Lent(engine, make_sessionmaker(engine))

    async def give_back(self, lent: Lent) -> None:
        """Take ``lent`` back, rolled back; closed if it failed or enough are idle."""
        try:
            await lent.end()
        except Exception:
            await lent.engine.dispose()
            raise
        if len(self._idle) < self._keep:
            self._idle.append(lent)
        else:
            await lent.engine.dispose()

    async def close(self) -> None:
        """Close the idle connections (lent ones close when given back)."""
        self._keep = 0
        idle, self._idle = self._idle, []
        for lent in idle:
            await lent.engine.dispose()

    @property
    def idle(self) -> int:
        """How many connections wait to be lent."""
        return len(self._idle)


def is_file_database(url: URL) -> bool:
    """Whether a SQLite URL names a file (an in-memory database exists once per connection)."""
    database = url.database or ""
    return bool(database) and database != ":memory:" and "mode=memory" not in str(url)
