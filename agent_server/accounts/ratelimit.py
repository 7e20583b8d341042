"""Fixed-window rate limits kept in the database, so every server process shares them.

One row per limited key holds the current window's start and hit count. A hit is one
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` statement (SQLite and PostgreSQL alike):
the database serialises concurrent hits on the same key, so the count is exact across
processes without Redis. Housekeeping deletes the rows of windows that have ended
(``purge_rate_counters``): a key's next hit starts a new window whether its row is there or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Table, bindparam, case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from agent_server.accounts.models import RateCounter
from agent_server.kernel.store import Database, Direct, UnitOfWork, direct_rows

MAX_WINDOW_SECONDS = 3600
"""The longest window a limit may use: a row whose window started longer ago than this has
ended, which is what lets ``purge_rate_counters`` delete it."""


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
    if not 0 < window_seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"a rate window lasts 1 to {MAX_WINDOW_SECONDS} seconds")
    now = uow.clock.now().timestamp()
    window_start = int(now) - int(now) % window_seconds
    upsert = _UPSERT["postgresql" if not uow.db.is_sqlite else "sqlite"]
    (counter,) = await direct_rows(uow, upsert, {"key": key, "window_start": window_start})
    allowed = counter.hits <= limit
    retry_after = 0 if allowed else max(1, math.ceil(counter.window_start + window_seconds - now))
    return RateDecision(allowed, int(counter.hits), limit, window_seconds, retry_after)


_CURRENT = Direct(
    select(_COUNTERS.c.hits, _COUNTERS.c.window_start).where(_COUNTERS.c.key == bindparam("key"))
)


async def peek(uow: UnitOfWork, key: str, *, limit: int, window_seconds: int) -> RateDecision:
    """Whether one more hit of ``key`` would be within ``limit`` now, without counting it (a
    read: no lock). ``hit`` decides; this lets a caller refuse before doing any work."""
    rows = await direct_rows(uow, _CURRENT, {"key": key})
    current = (int(rows[0].hits), int(rows[0].window_start)) if rows else None
    return window_decision(uow, current, limit=limit, window_seconds=window_seconds)


def window_decision(
    uow: UnitOfWork,
    current: tuple[int, int] | None,
    *,
    limit: int,
    window_seconds: int,
) -> RateDecision:
    """``peek``'s answer from a counter row already read: (hits, window start) or None."""
    now = uow.clock.now().timestamp()
    window_start = int(now) - int(now) % window_seconds
    if current is None or current[1] < window_start:
        return RateDecision(True, 0, limit, window_seconds, 0)
    hits, started = current
    if hits < limit:
        return RateDecision(True, hits, limit, window_seconds, 0)
    retry_after = max(1, math.ceil(started + window_seconds - now))
    return RateDecision(False, hits, limit, window_seconds, retry_after)


async def purge_rate_counters(
    db: Database,
    older_than: timedelta = timedelta(hours=1),
    *,
    batch_size: int = 1000,
    max_batches: int = 100,
) -> int:
    """Delete the counters whose window started more than ``older_than`` ago; how many.

    Such a window has ended (no window is longer than ``MAX_WINDOW_SECONDS``), so deleting its
    row changes no decision: the key's next hit starts a new window either way. Deletes at most
    ``batch_size`` rows per transaction, so a large backlog never holds long locks, and at most
    ``max_batches`` batches per call; the next call goes on where this one stopped.
    """
    if older_than.total_seconds() < MAX_WINDOW_SECONDS:
        raise ValueError("only windows that have ended may be purged")
    total = 0
    for _ in range(max_batches):
        async with db.uow() as uow:
            cutoff = int(uow.clock.now().timestamp() - older_than.total_seconds())
            stale = _COUNTERS.c.window_start < cutoff
            batch = select(_COUNTERS.c.key).where(stale).limit(batch_size).scalar_subquery()
            # The age is checked again on the row itself: a hit that started a new window
            # since the batch was chosen keeps its row.
            deleted = await uow.session.execute(
                delete(_COUNTERS).where(_COUNTERS.c.key.in_(batch), stale)
            )
            await uow.commit()
        count = int(deleted.rowcount)  # type: ignore[attr-defined]
        total += count
        if count < batch_size:
            break
    return total
