"""Alembic migrations, driven from code: upgrade, current revision, head revision, and
whether a database is ready to serve."""

from __future__ import annotations

import ast
import asyncio
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

# Alembic (with mako) is imported only to migrate: a serving process reads the head revision
# from the migration files' ``revision``/``down_revision`` lines instead.
if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
VERSION_TABLE = "alembic_version"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (blocking; runs its own event loop)."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    """Apply migrations from async code (in a worker thread with its own loop)."""
    await asyncio.to_thread(upgrade, url, revision)


def _assigned(module: ast.Module, name: str) -> object:
    """The literal a module assigns to ``name`` at its top, or ``...`` when it assigns none."""
    for node in module.body:
        target: ast.expr
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == name:
            return ast.literal_eval(value)
    return ...


@cache
def head_revision() -> str | None:
    """The newest migration's revision: the one no other migration names as its parent."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        module = ast.parse(path.read_text(), str(path))
        revision, parent = _assigned(module, "revision"), _assigned(module, "down_revision")
        if not isinstance(revision, str) or not (parent is None or isinstance(parent, str)):
            return _alembic_head()  # not a plain linear migration: alembic reads it
        revisions.add(revision)
        if parent is not None:
            parents.add(parent)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else _alembic_head()


def _alembic_head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _read_revision(sync_conn: Connection) -> str | None:
    # Alembic's own reader logs two lines each time it is built: too many for a probe.
    if not inspect(sync_conn).has_table(VERSION_TABLE):
        return None
    rows = sync_conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return str(rows[0]) if len(rows) == 1 else None


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (``None``: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_read_revision)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (absolute), or ``None`` for another database or memory."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or "mode=memory" in url:
        return None
    return Path(database).expanduser().absolute()


def absolute_database_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (against the current directory), so
    a process started elsewhere opens the same file; other URLs unchanged."""
    path = sqlite_file(url)
    if path is None:
        return url
    return make_url(url).set(database=str(path)).render_as_string(hide_password=False)


def shown_url(url: str) -> str:
    """A database URL fit for a message: without its password."""
    return make_url(url).render_as_string(hide_password=True)


async def database_problem(engine: AsyncEngine, url: str, *, wait: float = 10.0) -> str | None:
    """Why the database at ``url`` cannot serve, in one sentence with the next step, or
    ``None`` when it is reachable and migrated to the head revision.

    A SQLite file that does not exist is reported without opening it: opening it would
    create an empty database there.
    """
    shown = shown_url(absolute_database_url(url))
    upgrade_hint = f"run `agent-server db upgrade` with AGENT_SERVER_DATABASE_URL={shown}"
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return f"no database at {path}: {upgrade_hint}, or set AGENT_SERVER_DATABASE_URL"
    try:
        async with asyncio.timeout(wait):
            current = await current_revision(engine)
    except Exception as exc:  # unreachable, refused, wrong credentials, timed out
        cause = getattr(exc, "orig", None) or exc  # the driver's error, not SQLAlchemy's wrap
        text_ = str(cause).strip()
        detail = text_.splitlines()[0] if text_ else type(cause).__name__
        return f"cannot reach the database at {shown} ({detail[:200]})"
    head = head_revision()
    if current != head:
        at = f"at revision {current}" if current else "has no tables"
        return f"the database at {shown} is not migrated ({at}, head is {head}): {upgrade_hint}"
    return None
