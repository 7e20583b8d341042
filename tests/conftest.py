"""Shared fixtures: real SQLite and PostgreSQL databases, migrated by Alembic, a fake clock and
local SMTP servers.

``db`` runs a test once per backend. The PostgreSQL database is created for the test session,
migrated once and emptied between tests. Without a server on 127.0.0.1:5432 the PostgreSQL
runs are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from db_support import PG_ADMIN_URL, START, pg_admin, truncate_all
from smtp_sink import SmtpSink

from agent_server.kernel.clock import FakeClock
from agent_server.kernel.logs import configure_logging
from agent_server.kernel.store import Database, make_engine
from agent_server.kernel.store.migrate import upgrade

# Our logging set-up from the start, as the CLI does: never structlog's defaults, whose rich
# tracebacks print local variables (API keys among them).
configure_logging("INFO", "console")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _pg_url(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Run blocking set-up that owns its event loop, even from inside a running one."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def _pg_admin_sync(sql: str) -> None:
    asyncio.run(pg_admin(PG_ADMIN_URL, sql))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session."""
    name = f"agent_server_test_{secrets.token_hex(4)}"
    try:
        _in_thread(_pg_admin_sync, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc!r}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = _pg_url(name)
    _in_thread(upgrade, url)
    yield url
    _in_thread(_pg_admin_sync, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    _in_thread(upgrade, f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For tests that reconfigure logging: the suite's configuration again afterwards."""
    yield
    configure_logging("INFO", "console")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


_truncate_all = truncate_all


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    """A local SMTP server for one test, recording what it is sent."""
    server = SmtpSink()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    """A local SMTP server for a module's tests (browser tests serve one site per module)."""
    server = SmtpSink()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database_url(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> AsyncIterator[str]:
    """The URL of an empty, migrated database on the test's backend."""
    if backend == "sqlite":
        path = tmp_path / "test.db"
        shutil.copyfile(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
        await _truncate_all(url)
        yield url


@pytest.fixture
async def db(database_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    """A ``Database`` on an empty migrated database, reading time from ``clock``."""
    database = Database(make_engine(database_url), clock)
    yield database
    await database.dispose()
