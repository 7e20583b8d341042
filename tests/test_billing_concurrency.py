"""Many agents calling paid tools at once, with failures and empty wallets: the ledger stays
exact. Every reply the callers saw is replayed against a plain-Python reference model, which
must agree with the database to the base unit."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import pytest
from billing_support import audit_ledger, fund, make_agent
from sqlalchemy import func, select, text

from agent_server.kernel.errors import BookingConflict, InsufficientFunds
from agent_server.kernel.store import Database
from billing.config import BillingConfig
from billing.ledger import account_balance_from_entries, system_account
from billing.meter import Admission, MeteredCall, Receipt, run_metered
from billing.models import (
    AccountKind,
    IdempotencyKey,
    IdempotencyStatus,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
)
from billing.prices import PriceList, ToolPrice
from billing.wallet_funds import balances
from wallets.rates import FakeRateSource

AGENTS = 20
FREE_VIEWS = 5
TOOLS = {
    "search-specialists": ToolPrice("search-specialists", 10_000),
    "view-profile": ToolPrice("view-profile", 20_000, free_per_month=FREE_VIEWS),
    "create-schedule": ToolPrice("create-schedule", 100_000, hold=True),
}
RATES = {"BTC": 61_234_567_891, "ETH": 2_987_654_321, "USDT": 1_000_000, "USDC": 999_800}
DECIMALS = {"BTC": 8, "ETH": 9, "USDT": 6, "USDC": 6}  # ETH in gwei


def expected_price(usd_micros: int, currency: str) -> int:
    """The reference model's own conversion: ceil(usd * 10^decimals / rate)."""
    numerator = usd_micros * 10 ** DECIMALS[currency]
    rate = RATES[currency]
    return numerator // rate + (1 if numerator % rate else 0)


@dataclass
class Planned:
    agent: int
    tool: str
    fails: bool
    key: str | None = None  # a held call with a key: its claim and hold in one transaction


@dataclass
class Outcome:
    planned: Planned
    kind: str  # "paid" | "refused" | "failed"
    receipt: Receipt | None = None
    details: dict[str, Any] | None = None


async def run_load(db: Database, calls: int, workers: int) -> None:
    rng = random.Random(20260302)
    rates = FakeRateSource(RATES)
    config = BillingConfig(prices=PriceList(dict(TOOLS)), rates=rates)
    agents: list[int] = []
    funded: dict[tuple[int, str], int] = defaultdict(int)
    for index in range(AGENTS):
        agent = await make_agent(db, name=f"load{index}")
        agents.append(agent)
        # Small, random balances: many agents run dry before their calls end.
        for currency in rng.sample(sorted(RATES), k=rng.choice([1, 1, 2])):
            usd = rng.randint(30_000, 1_500_000)
            amount = expected_price(usd, currency)
            await fund(db, agent, currency, amount)
            funded[(agent, currency)] += amount
    plan = [
        Planned(
            agent=rng.choice(agents),
            tool=rng.choice(sorted(TOOLS)),
            fails=rng.random() < 0.2,
            key=f"load-{n:08}" if rng.random() < 0.5 else None,
        )
        for n in range(calls)
    ]
    queue: asyncio.Queue[Planned] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    outcomes: list[Outcome] = []
    connections: set[Any] = set()

    async def worker() -> None:
        while not queue.empty():
            planned = queue.get_nowait()

            async def operation(call: MeteredCall, planned: Planned = planned) -> dict[str, Any]:
                if not db.is_sqlite:
                    pid = await call.uow.session.execute(text("SELECT pg_backend_pid()"))
                    connections.add(pid.scalar_one())
                await asyncio.sleep(0)  # let other calls interleave mid-transaction
                if planned.fails:
                    raise BookingConflict("slot taken", {"reason": "full"})
                return {"ok": True}

            try:
                metered = await run_metered(
                    db,
                    Admission(planned.agent, planned.tool, idempotency_key=planned.key),
                    operation,
                    config=config,
                )
            except InsufficientFunds as exc:
                outcomes.append(Outcome(planned, "refused", details=exc.details))
            except BookingConflict:
                outcomes.append(Outcome(planned, "failed"))
            else:
                outcomes.append(Outcome(planned, "paid", receipt=metered.receipt))

    await asyncio.gather(*(worker() for _ in range(workers)))
    assert len(outcomes) == calls
    if not db.is_sqlite:
        assert len(connections) >= 8

    # --- the reference model: replay what the callers saw --------------------------------
    model = dict(funded)
    model_revenue: dict[str, int] = defaultdict(int)
    successes: Counter[tuple[int, str]] = Counter()
    free_seen: Counter[int] = Counter()
    paid_calls = 0
    for outcome in outcomes:
        planned = outcome.planned
        if outcome.kind == "failed":
            assert planned.fails
            continue
        if outcome.kind == "refused":
            details = outcome.details or {}
            assert details["balance"] < details["price"]
            continue
        assert not planned.fails
        receipt = outcome.receipt
        assert receipt is not None and receipt.tool == planned.tool
        successes[(planned.agent, planned.tool)] += 1
        if receipt.free:
            assert planned.tool == "view-profile" and receipt.amount == 0
            free_seen[planned.agent] += 1
            continue
        currency = receipt.currency
        assert currency is not None
        price = expected_price(TOOLS[planned.tool].price_usd_micros, currency)
        assert receipt.amount == price
        assert receipt.price_usd_micros == TOOLS[planned.tool].price_usd_micros
        assert receipt.balance_after is not None and receipt.balance_after >= 0
        model[(planned.agent, currency)] -= price
        model_revenue[currency] += price
        paid_calls += 1
    for agent in agents:
        assert free_seen[agent] == min(successes[(agent, "view-profile")], FREE_VIEWS)

    # --- the database agrees, to the base unit --------------------------------------------
    await audit_ledger(db)
    async with db.uow() as uow:
        for agent in agents:
            held = await balances(uow, agent)
            expected = {c: b for (a, c), b in model.items() if a == agent}
            assert held == {c: expected[c] for c in held}
            assert set(held) == set(expected)
        charges = (
            await uow.session.execute(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.kind == "charge")
            )
        ).scalar_one()
        assert charges == paid_calls
        for currency, earned in model_revenue.items():
            revenue = await system_account(uow, AccountKind.REVENUE, currency)
            assert await account_balance_from_entries(uow, revenue.id) == earned
        holds_left = {
            c: await account_balance_from_entries(
                uow, (await system_account(uow, AccountKind.HOLDS, c)).id
            )
            for c in RATES
        }
        assert set(holds_left.values()) == {0}
        # Each wallet's history, in the order its row lock was taken, never dips below zero.
        wallets = (
            await uow.session.execute(
                select(LedgerAccount.id).where(LedgerAccount.kind == AccountKind.WALLET.value)
            )
        ).scalars()
        for wallet in wallets:
            running = 0
            for debit, credit in await uow.session.execute(
                select(LedgerEntry.debit, LedgerEntry.credit)
                .where(LedgerEntry.account_id == wallet)
                .order_by(LedgerEntry.id)
            ):
                running += credit - debit
                assert running >= 0
    kinds = Counter(o.kind for o in outcomes)
    # The plan really exercised every branch.
    assert kinds["paid"] > calls // 10 and kinds["refused"] > calls // 10 and kinds["failed"] > 0
    keyed = Counter(o.kind for o in outcomes if o.planned.key and TOOLS[o.planned.tool].hold)
    assert keyed["paid"] > 0 and keyed["refused"] > 0 and keyed["failed"] > 0
    # Only a successful call's key keeps its answer; a refused or failed one is free again.
    async with db.uow() as uow:
        kept = set(
            (
                await uow.session.execute(
                    select(IdempotencyKey.key).where(
                        IdempotencyKey.status == IdempotencyStatus.DONE.value
                    )
                )
            ).scalars()
        )
        left = (
            await uow.session.execute(
                select(func.count())
                .select_from(IdempotencyKey)
                .where(IdempotencyKey.status != IdempotencyStatus.DONE.value)
            )
        ).scalar_one()
    assert kept == {o.planned.key for o in outcomes if o.planned.key and o.kind == "paid"}
    assert left == 0


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
async def test_two_thousand_concurrent_calls_on_postgres_keep_the_ledger_exact(
    db: Database,
) -> None:
    await run_load(db, calls=2000, workers=16)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_concurrent_calls_on_sqlite_keep_the_ledger_exact(db: Database) -> None:
    await run_load(db, calls=1000, workers=8)
