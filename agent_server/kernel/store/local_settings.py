"""Settings of one transaction on PostgreSQL: commit without waiting for the disk
(``skipping_flush_wait``, inside an insert), plan each statement for its own values
(``plan_each_time``). SQLite needs neither."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.sql import Insert, text

from agent_server.kernel.store.direct import Direct, direct_execute
from agent_server.kernel.store.uow import UnitOfWork


def skipping_flush_wait(stmt: Insert) -> Insert:
    """``stmt``, an INSERT of one row, that on PostgreSQL also lets its transaction's commit
    answer without waiting for the database to flush it to disk, with no round trip of its
    own: it returns ``set_config('synchronous_commit', 'off', true)``, ``SET LOCAL`` as a
    function. The commit stays atomic and isolated, but if the database server itself
    crashes (not this process) within a fraction of a second after it, at most three times
    ``wal_writer_delay``, the transaction may be lost, never half kept. PostgreSQL reads the
    setting when the transaction commits, so turning it off at any statement before the
    commit is the same as turning it off first; it takes effect only if the statement
    inserts its row (RETURNING runs once per row). PostgreSQL only: SQLite has no
    ``set_config``, and in WAL mode with ``synchronous=NORMAL`` (``store.engine``) it
    commits every transaction that way."""
    return stmt.returning(func.set_config("synchronous_commit", "off", True))


PLAN_EACH_TIME = Direct(text("SET LOCAL plan_cache_mode TO force_custom_plan"))
"""What ``plan_each_time`` runs (``booking.search.warm`` compiles it ahead)."""


async def plan_each_time(uow: UnitOfWork) -> None:
    """Let PostgreSQL plan each statement of ``uow``'s transaction for its own parameters.

    A statement prepared once (as asyncpg prepares every one) is planned for its values a
    few times; then PostgreSQL may keep one generic plan for any values. A search's
    statements depend on their values (a keyset slice of a few hundred index entries, or a
    bound every row passes), and a generic plan of one may sort thousands of rows where
    the values' own plan reads a few hundred. For this transaction only (one round trip);
    SQLite plans every statement alike, so there this does nothing."""
    if not uow.db.is_sqlite:
        await direct_execute(uow, PLAN_EACH_TIME, {})
