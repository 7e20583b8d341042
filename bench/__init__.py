"""Benchmarks of Agent Server; run them with ``python -m bench`` (see ``bench/__main__.py``).

``Context`` is what each benchmark's ``run(ctx)`` receives: the backend, scratch databases
and options. ``Ratio`` is one line of the table its ``ratios(rows)`` returns: a measurement
against its baseline from the same run.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import shutil
import statistics
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_server.kernel.store.migrate import upgrade

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CACHE_DIR = Path(__file__).resolve().parent / "cache"
"""Demo catalogues built once and copied for each run (git-ignored)."""


@dataclass
class Context:
    """What a benchmark gets: where to put databases and results, and its options."""

    pg_admin_url: str | None = None
    quick: bool = False
    options: dict[str, str] = field(default_factory=dict)
    results_dir: Path = RESULTS_DIR

    @property
    def backend(self) -> str:
        return "postgres" if self.pg_admin_url else "sqlite"

    @asynccontextmanager
    async def scratch_database(self, name: str) -> AsyncIterator[str]:
        """The URL of a new, migrated database, dropped (or deleted) afterwards."""
        if self.pg_admin_url:
            dbname = f"bench_{name}_{secrets.token_hex(3)}"
            await _pg_admin(self.pg_admin_url, f'CREATE DATABASE "{dbname}"')
            base, _, _ = self.pg_admin_url.rpartition("/")
            url = f"{base}/{dbname}"
            try:
                await asyncio.to_thread(upgrade, url)
                yield url
            finally:
                drop = f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'
                await _pg_admin(self.pg_admin_url, drop)
        else:
            directory = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
            url = f"sqlite+aiosqlite:///{directory / 'bench.db'}"
            try:
                await asyncio.to_thread(upgrade, url)
                yield url
            finally:
                shutil.rmtree(directory, ignore_errors=True)

    @asynccontextmanager
    async def catalogue(self, size: int, *, seed: int = 7) -> AsyncIterator[str]:
        """The URL of a fresh copy of a migrated database holding ``size`` demo specialists
        (``seed``), analyzed; dropped (or deleted) afterwards.

        Each copy's next-free-slot bounds are brought up to now, as a live server's
        maintenance keeps them. The catalogue itself is built once and kept: a SQLite file in
        ``CACHE_DIR``, or a PostgreSQL database used as the template of each copy, named by
        ``catalogue_key`` (the demo data's and the migrations' source, the size, the seed and
        the UTC day: demo schedules start on the day they are made). Older catalogues of the
        same size are removed when a new one is built.
        """
        key = catalogue_key(size, seed)
        if self.pg_admin_url:
            template = f"bench_cat_{size}_{key}"
            base, _, _ = self.pg_admin_url.rpartition("/")
            if not await _pg_exists(self.pg_admin_url, template):
                for old in await _pg_databases(self.pg_admin_url, f"bench_cat_{size}_"):
                    await _pg_admin(
                        self.pg_admin_url, f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)'
                    )
                building = f"bench_build_{size}_{secrets.token_hex(3)}"
                await _pg_admin(self.pg_admin_url, f'CREATE DATABASE "{building}"')
                try:
                    await _build_catalogue(f"{base}/{building}", size, seed)
                    await _pg_admin(
                        self.pg_admin_url, f'ALTER DATABASE "{building}" RENAME TO "{template}"'
                    )
                except BaseException:
                    await _pg_admin(self.pg_admin_url, f'DROP DATABASE IF EXISTS "{building}"')
                    raise
            dbname = f"bench_run_{size}_{secrets.token_hex(3)}"
            await _pg_admin(self.pg_admin_url, f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"')
            try:
                await _refresh_bounds(f"{base}/{dbname}")
                yield f"{base}/{dbname}"
            finally:
                drop = f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'
                await _pg_admin(self.pg_admin_url, drop)
        else:
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            cached = CACHE_DIR / f"catalogue-{size}-{key}.db"
            if not cached.exists():
                for stale in CACHE_DIR.glob(f"catalogue-{size}-*.db"):
                    stale.unlink()
                partial = CACHE_DIR / f"building-{size}-{secrets.token_hex(3)}.db"
                try:
                    await _build_catalogue(f"sqlite+aiosqlite:///{partial}", size, seed)
                    partial.rename(cached)
                finally:
                    partial.unlink(missing_ok=True)
            directory = Path(tempfile.mkdtemp(prefix=f"bench-cat-{size}-"))
            shutil.copyfile(cached, directory / "bench.db")
            try:
                await _refresh_bounds(f"sqlite+aiosqlite:///{directory / 'bench.db'}")
                yield f"sqlite+aiosqlite:///{directory / 'bench.db'}"
            finally:
                shutil.rmtree(directory, ignore_errors=True)


def catalogue_key(size: int, seed: int) -> str:
    """What a cached catalogue depends on: the demo data's and the migrations' source (a
    migration edited in place changes the schema as much as a new one), the size, the seed
    and the UTC day, as a short hash."""
    root = Path(__file__).resolve().parent.parent / "agent_server"
    digest = hashlib.sha256(f"{size}:{seed}:{datetime.now(UTC).date()}".encode())
    for folder in (root / "booking" / "demo", root / "migrations" / "versions"):
        for path in sorted(folder.glob("*.py")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


async def _build_catalogue(url: str, size: int, seed: int) -> None:
    from agent_server.booking.demo import load_demo_data
    from agent_server.booking.schedules.zone_rules import refresh_start_blocks
    from agent_server.kernel.store import Database, make_engine

    await asyncio.to_thread(upgrade, url)
    db = Database(make_engine(url))
    try:
        await load_demo_data(db, size, seed=seed)
        # What a server checks as it starts, done here once: no server of the run repeats it.
        await refresh_start_blocks(db)
        # Steady state of a live catalogue: statistics gathered and, on PostgreSQL, the
        # visibility map set (autovacuum's work), so index-only scans skip the heap.
        async with db.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("ANALYZE" if db.is_sqlite else "VACUUM ANALYZE"))
    finally:
        await db.dispose()


async def _refresh_bounds(url: str) -> None:
    """Bring the copy's next-free-slot bounds up to now, as a live server's maintenance pass
    keeps them (``agent_server.maintenance``): the catalogue was built hours earlier, and a
    bound time has passed makes every search sorted by the next available slot examine
    that schedule again until one stores it."""
    from agent_server.booking.next_free import refresh_passed
    from agent_server.kernel.store import Database, make_engine

    db = Database(make_engine(url))
    try:
        await refresh_passed(db, batch=5000, most=10**9)
    finally:
        await db.dispose()


async def _pg_exists(url: str, dbname: str) -> bool:
    return dbname in await _pg_databases(url, dbname)


async def _pg_databases(url: str, prefix: str) -> list[str]:
    """Databases whose name starts with ``prefix``."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            names = (await conn.execute(text("SELECT datname FROM pg_database"))).scalars()
            return [str(n) for n in names if str(n).startswith(prefix)]
    finally:
        await engine.dispose()


async def _pg_admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Ratio:
    """A measurement against the baseline measured in the same run, and its target.

    ``target`` is ``">= x"`` (higher is better, e.g. throughput) or ``"<= x"`` (lower is
    better, e.g. latency growth); empty when there is none.
    """

    benchmark: str
    backend: str
    case: str
    mode: str = ""
    value: float | None = None
    baseline_value: float | None = None
    unit: str = ""
    baseline: str = ""
    target: str = ""
    spread: str = ""  # the ratio's range over the rounds measured, lowest-highest

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline_value:
            return None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None without a target or a measurement."""
        if not self.target or self.ratio is None:
            return None
        sign, bound = self.target.split()
        return self.ratio >= float(bound) if sign == ">=" else self.ratio <= float(bound)

    def cells(self) -> tuple[str, ...]:
        def number(x: float | None) -> str:
            return "" if x is None else f"{x:,.1f}"

        measured = f"{number(self.value)} {self.unit}".strip()
        baseline = f"{number(self.baseline_value)} ({self.baseline})" if self.baseline else ""
        ratio = "" if self.ratio is None else f"{self.ratio:.3f}"
        verdict = {None: "", True: "ok", False: "BELOW TARGET"}[self.met]
        if self.target.startswith("<=") and self.met is False:
            verdict = "ABOVE TARGET"
        return (
            self.benchmark,
            self.backend,
            self.case,
            self.mode,
            measured,
            baseline,
            ratio,
            self.spread,
            self.target,
            verdict,
        )

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``samples``, interpolated."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[round(q) - 1]
