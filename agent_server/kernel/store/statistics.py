"""Planner statistics: refresh them after a bulk load instead of waiting for autovacuum.

Rows inserted in bulk leave a table's statistics empty (or stale) until autovacuum's next
ANALYZE, and until then PostgreSQL plans as if the table were tiny: search over freshly loaded
demo data ran several times slower. SQLite keeps no statistics at all until ``ANALYZE`` writes
``sqlite_stat1``; with it, its planner picks indexes from real row counts too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import text

from agent_server.kernel.store.uow import Database

_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


async def analyze(db: Database, tables: Sequence[str]) -> None:
    """Refresh the planner statistics of ``tables`` (one short transaction)."""
    if not tables:
        return
    for table in tables:
        if not _TABLE_NAME.match(table):
            raise ValueError(f"not a table name: {table!r}")
    async with db.uow() as uow:
        if db.is_sqlite:
            for table in tables:  # SQLite analyses one table (or index) per statement
                await uow.session.execute(text(f"ANALYZE {table}"))
        else:
            await uow.session.execute(text(f"ANALYZE {', '.join(tables)}"))
        await uow.commit()
