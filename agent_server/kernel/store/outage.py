"""Telling a database that cannot serve right now from a statement that failed.

``database_unavailable(exc)`` is true when ``exc`` (or the database error it wraps) says the
database could not be reached or used at that moment, whatever the statement was:

* no connection could be made (``DatabaseUnreachable``: PostgreSQL connections are opened
  through ``connect_postgres``, which raises it for a refused, reset or timed-out connect),
  or the connection was lost (asyncpg's ``ConnectionDoesNotExistError`` or "connection is
  closed", an error SQLAlchemy marked ``connection_invalidated``, SQLSTATE class 08);
* PostgreSQL is starting, stopping or out of resources: class 57P (admin or crash shutdown,
  cannot connect now) and class 53 (too many connections, disk full, out of memory);
* the engine's connection pool stayed exhausted for its whole timeout;
* the transaction lost to another one and may simply be retried: a deadlock (40P01), a
  serialization failure (40001), a lock held past the lock timeout (55P03) or a SQLite lock
  held past the busy timeout.

Only database errors count: a network error of anything else (mail, a chain node) is not one,
even when it is the cause of the error raised. Callers answer such a failure with a retryable
error (``SERVICE_UNAVAILABLE``) rather than an internal one: nothing is wrong with the call,
and the same call may succeed a moment later.
"""

from __future__ import annotations

import sqlite3
import sys
from typing import Any

from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from agent_server.kernel.store.sqlite_inline import is_busy

RETRY_AFTER_SECONDS = 5
"""What a caller is told to wait before retrying."""

_SQLSTATE_CLASSES = ("08", "53", "57P")
_SQLSTATES = ("40001", "40P01", "55P03")


class DatabaseUnreachable(ConnectionError):
    """A connection to the database could not be opened (refused, reset, timed out)."""


async def connect_postgres(*args: Any, **kwargs: Any) -> Any:
    """``asyncpg.connect``, with a failure to reach the server raised as
    ``DatabaseUnreachable`` (the engine's ``async_creator_fn``, see ``store.engine``)."""
    import asyncpg  # imported by the first connection: a process on SQLite never needs it

    try:
        return await asyncpg.connect(*args, **kwargs)
    except (OSError, TimeoutError) as exc:
        raise DatabaseUnreachable(f"cannot connect to the database: {exc!r}") from exc


def _database_errors(exc: BaseException) -> list[BaseException]:
    """``exc`` and the driver errors it wraps (SQLAlchemy's ``orig`` and its cause)."""
    found = [exc]
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        found.append(orig)
        if orig.__cause__ is not None:
            found.append(orig.__cause__)  # the asyncpg error behind the adapter's
    return found


def _connection_lost(err: BaseException) -> bool:
    """Whether asyncpg says the connection is gone (no asyncpg error can exist before the
    first PostgreSQL connection imported it)."""
    asyncpg: Any = sys.modules.get("asyncpg")
    if asyncpg is None:
        return False
    if isinstance(err, asyncpg.ConnectionDoesNotExistError):
        return True
    # Dropped by the server before the statement (SQLAlchemy's own test), raw and as
    # SQLAlchemy's adapter raises it.
    interface = (asyncpg.InterfaceError, AsyncAdapt_asyncpg_dbapi.InterfaceError)
    return isinstance(err, interface) and "connection is closed" in str(err)


def _unavailable(err: BaseException) -> bool:
    if isinstance(err, PoolTimeout | DatabaseUnreachable) or _connection_lost(err):
        return True
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    if isinstance(err, sqlite3.OperationalError) and is_busy(err):
        return True
    state = getattr(err, "sqlstate", None)  # asyncpg's errors, and the adapter's
    return isinstance(state, str) and (state in _SQLSTATES or state.startswith(_SQLSTATE_CLASSES))


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means the database cannot serve right now (see the module docstring);
    for a group of errors (from a task group), whether each of them does."""
    if isinstance(exc, BaseExceptionGroup):
        return all(database_unavailable(inner) for inner in exc.exceptions)
    return any(_unavailable(err) for err in _database_errors(exc))
