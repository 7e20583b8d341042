"""SQLite connections for the async engine that run each call on the event loop's own thread.

aiosqlite hands every call (open a cursor, execute, fetch, close) to a worker thread and waits
for the answer; each round trip costs a thread wake-up and an event-loop wake-up, hundreds of
microseconds, while our indexed statements take a few. ``InlineConnection`` keeps aiosqlite's
API, so SQLAlchemy's ``sqlite+aiosqlite`` dialect drives it unchanged, but runs every call
directly.

Waiting for another writer must not block the event loop (the writer holding the lock may be a
coroutine of this very loop), so the connection's busy timeout is zero and a call refused with
SQLITE_BUSY is retried asynchronously, with growing pauses, until ``busy_timeout`` seconds have
passed. A refused statement did nothing, so running it again is safe.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import aiosqlite

FIRST_PAUSE = 0.0005
LONGEST_PAUSE = 0.05


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether SQLite refused because another connection holds the lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(exc)


class _RunNow:
    """Stands in for aiosqlite's queue to its worker thread: runs each call at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # handed to the waiting caller, as the thread would
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An ``aiosqlite.Connection`` without its worker thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], busy_timeout: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _RunNow()  # type: ignore[assignment]
        self._busy_timeout = busy_timeout

    def __await__(self) -> Any:
        return self._connect().__await__()

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    async def begin_immediate(self) -> None:
        """``BEGIN IMMEDIATE``: take the write lock now (waiting for it as any call does)."""
        await self._execute(self._conn.execute, "BEGIN IMMEDIATE")

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        deadline = time.monotonic() + self._busy_timeout
        pause = FIRST_PAUSE
        while True:
            await asyncio.sleep(pause)
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise
            pause = min(pause * 2, LONGEST_PAUSE)


async def begin_immediate(driver: aiosqlite.Connection) -> None:
    """``BEGIN IMMEDIATE`` on ``driver``, inline or aiosqlite's own."""
    if isinstance(driver, InlineConnection):
        await driver.begin_immediate()
    else:
        await (await driver.execute("BEGIN IMMEDIATE")).close()


def inline_connector(busy_timeout: float) -> Callable[..., InlineConnection]:
    """What SQLAlchemy's aiosqlite dialect calls (``async_creator_fn``) to open a connection:
    the database and options it parsed from the URL, as for ``aiosqlite.connect``."""

    def connect(database: str, **kwargs: Any) -> InlineConnection:
        kwargs.pop("iter_chunk_size", None)
        kwargs["timeout"] = 0  # never wait inside SQLite: the loop would stop with it
        kwargs["check_same_thread"] = False  # the pool may close it from another thread
        return InlineConnection(lambda: sqlite3.connect(database, **kwargs), busy_timeout)

    return connect
