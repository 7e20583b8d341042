"""Whether the store may take its shortcuts past SQLAlchemy and aiosqlite, or must go the
ordinary way through the ORM session.

Three shortcuts save most of the time SQLAlchemy and aiosqlite would spend on the few
statements every tool call runs; each leans on private internals of the pinned versions:

* ``store.sqlite_inline``: SQLite calls on the event loop's thread (aiosqlite's call queue);
* ``store.sqlite_pool``: units of work on lent SQLite connections (needs the first);
* ``store.direct``: statements sent straight to the driver (the session's ``_is_clean``;
  on PostgreSQL the asyncpg adapter's lock, transaction and error translation).

``AGENT_SERVER_DATABASE_SHORTCUTS=off`` turns them all off (``Settings.database_shortcuts``):
the same statements then run through the ORM session on stock aiosqlite, with the same rows
and the same errors, only slower. With it on (the default) each shortcut first checks that
the internals it needs are there; when a library upgrade took one away, that shortcut is
left off, once logged as ``store.shortcut_unavailable``, and the ordinary way serves instead.
The tests assert that every shortcut is taken with the pinned versions, so such an upgrade
fails a test rather than slowing production, and run the billing and ledger tests with the
shortcuts off.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Coroutine
from functools import cache
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from agent_server.kernel.logs import get_logger

log = get_logger(__name__)

SHORTCUTS_ENV = "AGENT_SERVER_DATABASE_SHORTCUTS"
_OFF = frozenset({"0", "false", "off", "no", "n", "f"})

# What ``store.direct`` uses of the asyncpg adapter of SQLAlchemy (``AsyncAdapt_asyncpg_
# connection``): its lock, its transaction and how it begins one, the asyncpg connection, and
# its translation of asyncpg errors to DBAPI ones.
ASYNCPG_ADAPTER_INTERNALS = (
    "_execute_mutex",
    "_transaction",
    "_start_transaction",
    "_connection",
    "_handle_exception",
)
# What ``store.direct`` asks the sync session before a statement (does it need a flush?).
SESSION_INTERNALS = ("_is_clean",)

_reported: set[str] = set()


def wanted(explicit: bool | None = None) -> bool:
    """Whether shortcuts are wanted: ``explicit`` when given, else the environment's
    ``AGENT_SERVER_DATABASE_SHORTCUTS`` (on unless "off", "false", "0" or "no")."""
    if explicit is not None:
        return explicit
    return os.environ.get(SHORTCUTS_ENV, "on").strip().lower() not in _OFF


def unavailable(shortcut: str, missing: list[str]) -> None:
    """Log, once per shortcut, that it is left off because ``missing`` internals are gone."""
    if shortcut not in _reported:
        _reported.add(shortcut)
        log.warning("store.shortcut_unavailable", shortcut=shortcut, missing=missing)


def missing_session_internals() -> list[str]:
    """The session internals ``store.direct`` needs that this SQLAlchemy lacks."""
    return [name for name in SESSION_INTERNALS if not callable(getattr(Session, name, None))]


_asyncpg_checked: dict[type, list[str]] = {}


def missing_asyncpg_internals(adapter: Any) -> list[str]:
    """The internals of SQLAlchemy's asyncpg adapter that ``store.direct`` needs and
    ``adapter`` lacks (checked once per adapter class)."""
    kind = type(adapter)
    missing = _asyncpg_checked.get(kind)
    if missing is None:
        missing = [n for n in ASYNCPG_ADAPTER_INTERNALS if not hasattr(adapter, n)]
        _asyncpg_checked[kind] = missing
    return missing


def asyncpg_error(adapter: Any, dialect: Dialect, exc: Exception) -> Exception:
    """An asyncpg error as the adapter's DBAPI error class (``IntegrityError``...), as
    SQLAlchemy's asyncpg adapter translates it."""
    if isinstance(exc, dialect.loaded_dbapi.Error):
        return exc
    try:
        adapter._handle_exception(exc)
    except Exception as translated:
        return translated
    return exc


def _finished(step: Coroutine[Any, Any, Any]) -> Any:
    """Run ``step`` to its end without an event loop; ``RuntimeError`` if it waits."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value
    step.close()
    raise RuntimeError("the call waited for another thread")


@cache
def inline_sqlite_works() -> bool:
    """Whether ``InlineConnection`` runs aiosqlite's calls at once on the calling thread, as
    it does with the pinned aiosqlite: a connection opened, queried and closed with no event
    loop must finish every call without waiting."""
    from agent_server.kernel.store.sqlite_inline import InlineConnection

    probe = InlineConnection(lambda: sqlite3.connect(":memory:"), busy_timeout=0)
    try:
        _finished(probe._connect())
        rows = _finished(probe.execute_fetchall("SELECT 41 + 1"))
        works = [tuple(row) for row in rows] == [(42,)]
        # Closed by hand: aiosqlite's ``close`` would look for an event loop to stop the
        # worker thread this connection never started.
        _finished(probe._execute(probe._conn.close))
        probe._connection = None
    except Exception as exc:  # any change of aiosqlite's internals lands here
        unavailable("sqlite_inline", [f"{type(exc).__name__}: {exc}"])
        return False
    if not works:
        unavailable("sqlite_inline", ["execute_fetchall"])
    return works
