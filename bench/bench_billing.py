"""Charges per second against a bare single-row UPDATE, on SQLite and PostgreSQL.

Each backend gets a fresh, migrated database. The baseline is the cheapest durable write the
store can do: one transaction with one ``UPDATE counter SET n = n + 1 WHERE id = :id``. A
charge is a whole metered read-tool call (``run_metered`` with an operation that does
nothing): price look-up, payer choice, the conditional wallet debit, a balanced ledger
transaction with its entries, the usage record, and (on PostgreSQL) the deferred balance
check at commit. Both run sequentially and with concurrent workers (one agent per worker), in
the same process and run. Target: charges/s >= 0.3 x the baseline.

    python -m bench.bench_billing [--calls N] [--workers W] [--backend sqlite|postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.store import Database, make_engine
from agent_server.store.migrate import upgrade
from billing.config import BillingConfig
from billing.deposits import adjust_balance
from billing.meter import MeteredCall, run_metered
from billing.prices import load_price_list
from wallets.rates import StaticRateSource

PG_ADMIN_URL = os.environ.get(
    "AGENT_SERVER_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TARGET_RATIO = 0.3


@dataclass
class Result:
    backend: str
    mode: str
    baseline_per_s: float
    charges_per_s: float

    @property
    def ratio(self) -> float:
        return self.charges_per_s / self.baseline_per_s

    def line(self) -> str:
        verdict = "ok" if self.ratio >= TARGET_RATIO else "BELOW TARGET"
        return (
            f"{self.backend:<9} {self.mode:<14} baseline {self.baseline_per_s:9.0f}/s   "
            f"charges {self.charges_per_s:9.0f}/s   ratio {self.ratio:5.2f}  "
            f"(target >= {TARGET_RATIO}) {verdict}"
        )


async def _admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def _setup(db: Database, agents: int) -> list[int]:
    ids = []
    async with db.uow() as uow:
        await uow.session.execute(
            text("CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, n BIGINT NOT NULL)")
        )
        now = datetime.now(UTC)
        for index in range(agents):
            await uow.session.execute(
                text("INSERT INTO bench_counter (id, n) VALUES (:id, 0)"), {"id": index}
            )
            agent = Agent(
                name=f"bench{index}",
                email=f"bench{index}@example.com",
                email_verified=True,
                status=AgentStatus.ACTIVE.value,
                api_key_hash=secrets.token_hex(32),
                api_key_prefix="as_bench",
                profile={},
                created_at=now,
                updated_at=now,
            )
            uow.session.add(agent)
            await uow.flush()
            ids.append(agent.id)
            await adjust_balance(
                uow, agent_id=agent.id, currency="USDC", amount=10**15, reason="bench"
            )
        await uow.commit()
    return ids


async def _timed(workers: int, per_worker: int, step: Callable[[int], Awaitable[None]]) -> float:
    async def loop(worker: int) -> None:
        for _ in range(per_worker):
            await step(worker)

    started = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(workers)))
    return workers * per_worker / (time.perf_counter() - started)


async def _nothing(call: MeteredCall) -> dict[str, Any]:
    return {}


async def bench_backend(backend: str, url: str, calls: int, workers: int) -> list[Result]:
    await asyncio.to_thread(upgrade, url)
    db = Database(make_engine(url, pool_size=max(workers, 5)))
    config = BillingConfig(prices=load_price_list(), rates=StaticRateSource())
    try:
        agents = await _setup(db, workers)

        async def bare_update(worker: int) -> None:
            async with db.uow() as uow:
                await uow.session.execute(
                    text("UPDATE bench_counter SET n = n + 1 WHERE id = :id"), {"id": worker}
                )
                await uow.commit()

        async def charge(worker: int) -> None:
            await run_metered(
                db,
                agent_id=agents[worker],
                tool="search-specialists",
                arguments={},
                idempotency_key=None,
                operation=_nothing,
                config=config,
            )

        results = []
        for mode, count in (("sequential", 1), (f"{workers} workers", workers)):
            per_worker = max(calls // count, 1)
            await _timed(count, max(per_worker // 10, 1), bare_update)  # warm up
            await _timed(count, max(per_worker // 10, 1), charge)
            baseline = await _timed(count, per_worker, bare_update)
            charges = await _timed(count, per_worker, charge)
            results.append(Result(backend, mode, baseline, charges))
        return results
    finally:
        await db.dispose()


async def run(calls: int = 2000, workers: int = 8, backends: tuple[str, ...] = ()) -> list[Result]:
    """Measure each backend; PostgreSQL is skipped (with a note) when it does not answer."""
    chosen = backends or ("sqlite", "postgres")
    results: list[Result] = []
    if "sqlite" in chosen:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            results += await bench_backend("sqlite", url, calls, workers)
    if "postgres" in chosen:
        name = f"agent_server_bench_{secrets.token_hex(4)}"
        try:
            await _admin(f'CREATE DATABASE "{name}"')
        except Exception as exc:  # no server: report and go on
            print(f"postgres  skipped: {exc!r}")
        else:
            try:
                base, _, _ = PG_ADMIN_URL.rpartition("/")
                results += await bench_backend("postgres", f"{base}/{name}", calls, workers)
            finally:
                await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000, help="Operations per measurement.")
    parser.add_argument("--workers", type=int, default=8, help="Concurrent workers.")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgres"])
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.calls, args.workers, tuple(args.backend or ())))
    print("billing: charges per second vs a bare single-row UPDATE (same run)")
    for result in results:
        print("  " + result.line())
    return 0 if all(r.ratio >= TARGET_RATIO for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
