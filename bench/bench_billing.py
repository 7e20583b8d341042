"""Charges per second against a bare single-row UPDATE, on SQLite and PostgreSQL.

Each backend gets a fresh, migrated database. The baseline is the cheapest durable write the
store can do: one transaction with one ``UPDATE counter SET n = n + 1 WHERE id = :id``. A
charge is a whole metered read-tool call (``run_metered`` with an operation that does
nothing): price look-up, payer choice, the conditional wallet debit, a balanced ledger
transaction with its entries, the usage record, and (on PostgreSQL) the deferred balance
check at commit. Both run sequentially and with concurrent workers (one agent per worker), in
the same process and run, in alternating rounds (the medians are reported). Target:
charges/s >= 0.3 x the baseline.

    python -m bench --only billing [--pg] [--quick] [-o calls 2000] [-o workers 8]
    python -m bench.bench_billing        # both backends, one table
"""

from __future__ import annotations

import asyncio
import os
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.kernel.store import Database, make_engine
from bench import Context, Ratio
from billing.config import BillingConfig
from billing.meter import Admission, MeteredCall, run_metered
from billing.prices import load_price_list
from billing.wallet_funds import adjust_balance
from wallets.rates import StaticRateSource

PG_ADMIN_URL = os.environ.get(
    "AGENT_SERVER_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
TARGET_RATIO = 0.3
ROUNDS = 5


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
    """Baseline and charges on the migrated database at ``url``."""
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
                Admission(agents[worker], "search-specialists"),
                _nothing,
                config=config,
            )

        results = []
        for mode, count in (("sequential", 1), (f"{workers} workers", workers)):
            per_round = max(calls // count // ROUNDS, 1)
            await _timed(count, per_round, bare_update)  # warm up
            await _timed(count, per_round, charge)
            # Alternate short rounds so a load change on the machine hits both sides alike.
            baselines, charged = [], []
            for _ in range(ROUNDS):
                baselines.append(await _timed(count, per_round, bare_update))
                charged.append(await _timed(count, per_round, charge))
            results.append(
                Result(backend, mode, statistics.median(baselines), statistics.median(charged))
            )
        return results
    finally:
        await db.dispose()


async def run(ctx: Context) -> list[Result]:
    """The ``python -m bench`` entry: the context's backend, in a scratch database."""
    calls = int(ctx.options.get("calls", 300 if ctx.quick else 2000))
    workers = int(ctx.options.get("workers", 8))
    async with ctx.scratch_database("billing") as url:
        return await bench_backend(ctx.backend, url, calls, workers)


def ratios(rows: list[dict[str, Any]]) -> list[Ratio]:
    """Charges per second against the bare single-row UPDATE of the same rounds."""
    return [
        Ratio(
            benchmark="billing",
            backend=str(row["backend"]),
            case="charge (metered read call)",
            mode=str(row["mode"]),
            value=float(row["charges_per_s"]),
            baseline_value=float(row["baseline_per_s"]),
            unit="/s",
            baseline="bare UPDATE",
            target=f">= {TARGET_RATIO}",
        )
        for row in rows
    ]


def main() -> int:
    """Both backends in one run (PostgreSQL only if it answers), printed as one table."""
    results: list[Result] = []
    for ctx in (Context(), Context(pg_admin_url=PG_ADMIN_URL)):
        try:
            results += asyncio.run(run(ctx))
        except OSError as exc:  # no PostgreSQL server: say so and go on
            print(f"{ctx.backend} skipped: {exc!r}")
    print("billing: charges per second vs a bare single-row UPDATE (same run)")
    for result in results:
        print("  " + result.line())
    return 0 if all(r.ratio >= TARGET_RATIO for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
