"""Database constants and helpers shared by conftest.py and the tests that need them directly.

Tests import from here, never from ``conftest``: with several conftest.py files in the tree,
``import conftest`` may find the wrong one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_server.kernel.store import Direct
from agent_server.models import metadata

PG_ADMIN_URL = os.environ.get(
    "AGENT_SERVER_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
# PostgreSQL: whether the current transaction's commit waits for the WAL flush ("on", "off").
SYNCHRONOUS_COMMIT = Direct(text("SELECT current_setting('synchronous_commit')"))


async def pg_admin(admin_url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE or DROP DATABASE) at ``admin_url``."""
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


SEEDED_TABLES = {"catalogue_state"}
"""Tables whose rows the migrations create and the product expects to find: kept."""


async def truncate_all(url: str) -> None:
    """Empty every table of the product's schema (PostgreSQL), as freshly migrated."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            tables = [t for t in metadata.sorted_tables if t.name not in SEEDED_TABLES]
            names = ", ".join(f'"{t.name}"' for t in tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()
