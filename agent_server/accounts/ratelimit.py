"""Fixed-window rate limits kept in the database, so every server process shares them.

One row per limited key holds the current window's start and hit count. A hit is one
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement (SQLite and PostgreSQL alike):
the database serialises concurrent hits on the same key, so the count is exact across
processes without Redis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, case
from sqlalchemy.dialects import postgresql, sqlite

from agent_server.accounts.models import RateCounter
from agent_server.store import Direct, UnitOfWork, direct_rows


@dataclass(frozen=True)
class RateDecision:
    """The outcome of one hit: allowed or not, and when the window resets."""

    allowed: bool
    hits: int
    limit: int
    window_seconds: int
    retry_after: int  # seconds until the window resets; 0 when allowed


_COUNTERS: Table = RateCounter.__table__  # type: ignore[assignment]


def _upsert(insert: Any) -> Any:
    # On the table, not the mapped class: a Core statement, which the session runs without
    # the ORM's bulk-insert handling and SQLite runs directly.
    stmt = insert(_COUNTERS).values(
        key=bindparam("key"), window_start=bindparam("window_start"), hits=1
    )
    current = _COUNTERS.c.window_start >= stmt.excluded.window_start
    return stmt.on_conflict_do_update(
        index_elements=["key"],
        set_={
            # A clock that lags another process's never restarts a newer window.
            "hits": case((current, _COUNTERS.c.hits + 1), else_=1),
            "window_start": case(
                (current, _COUNTERS.c.window_start), else_=stmt.excluded.window_start
            ),
        },
    ).returning(_COUNTERS.c.hits, _COUNTERS.c.window_start)


_UPSERT = {
    "postgresql": Direct(_upsert(postgresql.insert)),
    "sqlite": Direct(_upsert(sqlite.insert)),
}


async def hit(uow: UnitOfWork, key: str, *, limit: int, window_seconds: int) -> RateDecision:
    """Count one hit of ``key`` in the current window and say whether it is within ``limit``.

    Runs in the caller's transaction and does not commit. Refused hits are counted too; they
    stop counting when the window ends.
    """
    now = uow.clock.now().timestamp()
    window_start = int(now) - int(now) % window_seconds
    upsert = _UPSERT["postgresql" if not uow.db.is_sqlite else "sqlite"]
    ((hits, started),) = await direct_rows(uow, upsert, {"key": key, "window_start": window_start})
    allowed = hits <= limit
    retry_after = 0 if allowed else max(1, math.ceil(started + window_seconds - now))
    return RateDecision(allowed, int(hits), limit, window_seconds, retry_after)
