"""Benchmarks of Agent Server; run them with ``python -m bench`` (see ``bench/__main__.py``).

``Context`` is what each benchmark's ``run(ctx)`` receives: the backend, scratch databases
and options. ``Ratio`` is one line of the table its ``ratios(rows)`` returns: a measurement
against its baseline from the same run.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import statistics
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_server.kernel.store.migrate import upgrade

RESULTS_DIR = Path(__file__).resolve().parent / "results"


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
