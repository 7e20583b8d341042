"""The free monthly quota: calls of a tool an agent makes free each calendar month (UTC)
before its price applies. Only a successful call uses one: it is taken in the call's own
transaction, just before it commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent_server.kernel.store import Direct, UnitOfWork, direct_rows
from billing.models import FreeQuotaUse
from billing.prices import ToolPrice

QUOTA: Table = FreeQuotaUse.__table__  # type: ignore[assignment]


def period_of(at: datetime) -> str:
    """The usage period (``YYYY-MM``, UTC) of a moment."""
    return f"{at.year}-{at.month:02d}"  # what strftime("%Y-%m") gives, at a third of its cost


# The free calls one agent has used of one tool's quota in one month (no row: none yet).
QUOTA_USED_SELECT = select(QUOTA.c.used).where(
    QUOTA.c.agent_id == bindparam("agent_id"),
    QUOTA.c.tool == bindparam("tool"),
    QUOTA.c.period == bindparam("period"),
)
_QUOTA_USED = Direct(QUOTA_USED_SELECT)


def _take_free_call_statement(sqlite: bool) -> Any:
    """``INSERT ... ON CONFLICT DO UPDATE SET used = used + 1 WHERE used < :limit RETURNING
    used`` for the free quota: a row back is a free call taken, none means the month's quota
    is used up. The database settles concurrent calls: a conflicting insert waits for the
    other writer and then updates the committed row only if it is still under the limit."""
    dialect_insert = sqlite_insert if sqlite else pg_insert
    stmt = dialect_insert(QUOTA).values(
        agent_id=bindparam("agent_id"),
        tool=bindparam("tool"),
        period=bindparam("period"),
        used=1,
    )
    return stmt.on_conflict_do_update(
        index_elements=[QUOTA.c.agent_id, QUOTA.c.tool, QUOTA.c.period],
        set_={"used": QUOTA.c.used + 1},
        where=QUOTA.c.used < bindparam("limit"),
    ).returning(QUOTA.c.used)


TAKE_FREE_CALL = {sqlite: Direct(_take_free_call_statement(sqlite)) for sqlite in (True, False)}


def free_applies(price: ToolPrice, held: bool) -> bool:
    """Whether calls of this tool can be free at all: it has a monthly quota and is not a
    held (side-effecting) call, which always pays its reserved price."""
    return price.free_per_month > 0 and not held


async def take_free_call(uow: UnitOfWork, agent_id: int, price: ToolPrice) -> bool:
    """Take one free call of this month's quota, if any is left, in ONE statement.

    Run just before the call commits, in its transaction: a call that fails rolls it back
    with everything else, so only a successful call uses the quota, and on PostgreSQL the
    quota row is locked only while the call commits. ``False`` when a concurrent call took
    the last free one meanwhile: this call is then charged."""
    if price.free_per_month <= 0:
        return False
    taken = await direct_rows(
        uow,
        TAKE_FREE_CALL[uow.db.is_sqlite],
        {
            "agent_id": agent_id,
            "tool": price.tool,
            "period": period_of(uow.clock.now()),
            "limit": price.free_per_month,
        },
    )
    return bool(taken)


async def quota_used(uow: UnitOfWork, agent_id: int, price: ToolPrice) -> int:
    """Free calls of ``price.tool`` the agent has used this month (a read; no lock)."""
    rows = await direct_rows(
        uow,
        _QUOTA_USED,
        {"agent_id": agent_id, "tool": price.tool, "period": period_of(uow.clock.now())},
    )
    return int(rows[0].used) if rows else 0


async def free_quota_left(uow: UnitOfWork, agent_id: int, price: ToolPrice) -> int:
    """Free calls of ``price.tool`` the agent has left this month (a read; no lock)."""
    if price.free_per_month <= 0:
        return 0
    return max(price.free_per_month - await quota_used(uow, agent_id, price), 0)
