"""Database constants and helpers shared by conftest.py and the tests that need them directly.

Tests import from here, never from ``conftest``: with several conftest.py files in the tree,
``import conftest`` may find the wrong one.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_server.models import metadata

PG_ADMIN_URL = os.environ.get(
    "AGENT_SERVER_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday


async def truncate_all(url: str) -> None:
    """Empty every table of the product's schema (PostgreSQL)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()
