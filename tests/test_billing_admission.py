"""The admission between the gate and the meter, and quotes that agree with the calls.

The ``Admission`` carries the gate's pass into the meter's transactions and the balance hook
into its debits; ``quote`` must name the wallet, currency and amount the call itself then
charges (or the refusal it then gets) for the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from billing_support import fund, make_agent, wallet_balance
from sqlalchemy import select

from agent_server.accounts.models import AgentStatus, RateCounter
from agent_server.gate import Caller, GatePass
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import BookingConflict, InsufficientFunds, RateLimited
from agent_server.kernel.store import Database
from billing.config import BillingConfig
from billing.meter import Admission, ExtraPrice, MeteredCall, quote, run_metered
from billing.models import Hold, LedgerTransaction
from billing.prices import PriceList, ToolPrice
from wallets.rates import FakeRateSource

PRICES = PriceList(
    {
        "search-specialists": ToolPrice("search-specialists", 10_000),
        "view-profile": ToolPrice("view-profile", 20_000, free_per_month=1),
        "create-schedule": ToolPrice("create-schedule", 100_000, hold=True),
        "book-slot": ToolPrice("book-slot", 50_000, hold=True),
    }
)


@pytest.fixture
def config() -> BillingConfig:
    rates = FakeRateSource()
    rates.set("BTC", 60_000_000_000)
    rates.set("ETH", 3_000_000_000)
    return BillingConfig(prices=PRICES, rates=rates)


async def ok(call: MeteredCall) -> dict[str, Any]:
    return {"ok": True}


async def fails(call: MeteredCall) -> dict[str, Any]:
    raise BookingConflict("slot taken", {"reason": "full"})


def gate_for(agent: int, tool: str, limit: int = 5) -> GatePass:
    settings = Settings(rate_limits={tool: limit})
    caller = Caller(agent, "a", "a@example.com", AgentStatus.ACTIVE, True, "as_", "USDC")
    return GatePass(settings, caller, tool)


async def hits(db: Database) -> int:
    async with db.uow() as uow:
        return sum((await uow.session.execute(select(RateCounter.hits))).scalars())


async def test_a_read_calls_count_commits_only_with_the_successful_call(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    gate = gate_for(agent, "search-specialists")
    with pytest.raises(BookingConflict):
        await run_metered(
            db, Admission(agent, "search-specialists", gate=gate), fails, config=config
        )
    assert await hits(db) == 0  # rolled back with the call: the pipeline counts it apart
    assert await wallet_balance(db, agent, "USDC") == 1_000_000
    await run_metered(db, Admission(agent, "search-specialists", gate=gate), ok, config=config)
    assert await hits(db) == 1
    assert await wallet_balance(db, agent, "USDC") == 990_000


async def test_a_read_call_over_the_limit_is_refused_before_its_work_and_costs_nothing(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    ran: list[str] = []

    async def work(call: MeteredCall) -> dict[str, Any]:
        ran.append(call.call_id)
        return {}

    for _ in range(2):
        admission = Admission(
            agent, "search-specialists", gate=gate_for(agent, "search-specialists", 2)
        )
        await run_metered(db, admission, work, config=config)
    admission = Admission(
        agent, "search-specialists", gate=gate_for(agent, "search-specialists", 2)
    )
    with pytest.raises(RateLimited):
        await run_metered(db, admission, work, config=config)
    assert len(ran) == 2
    assert await wallet_balance(db, agent, "USDC") == 980_000


async def test_a_held_calls_count_commits_before_the_hold_even_when_the_call_fails(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    gate = gate_for(agent, "create-schedule")
    with pytest.raises(BookingConflict):
        await run_metered(db, Admission(agent, "create-schedule", gate=gate), fails, config=config)
    assert await hits(db) == 1
    assert await wallet_balance(db, agent, "USDC") == 1_000_000  # the hold went back


@dataclass
class Recorded:
    agent_id: int
    currency: str
    balance_before: int
    balance_after: int
    rate: int
    threshold_usd_micros: int


async def test_every_debit_reaches_the_admissions_balance_hook_and_nothing_else(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    told: list[Recorded] = []

    async def hook(uow: Any, **debit: Any) -> None:
        told.append(Recorded(**debit))

    await run_metered(
        db, Admission(agent, "search-specialists", on_balance_low=hook), ok, config=config
    )
    await run_metered(
        db, Admission(agent, "create-schedule", on_balance_low=hook), ok, config=config
    )
    await run_metered(db, Admission(agent, "search-specialists"), ok, config=config)
    threshold = config.balance_low_usd_micros
    assert told == [
        Recorded(agent, "USDC", 1_000_000, 990_000, 1_000_000, threshold),
        Recorded(agent, "USDC", 990_000, 890_000, 1_000_000, threshold),  # the hold
    ]


@dataclass(frozen=True)
class State:
    """Wallets (currency -> base units, in the order opened), the preferred currency, and
    free calls already used of view-profile this month."""

    wallets: dict[str, int]
    preferred: str | None = None
    free_used: int = 0


STATES = {
    "preferred covers": State({"USDC": 1_000_000, "BTC": 100_000}, "USDC"),
    "preferred short, next covers": State({"BTC": 10, "ETH": 10**18, "USDC": 5_000}, "BTC"),
    "only the last covers": State({"USDC": 1_000, "USDT": 2_000, "ETH": 10**17}, "USDC"),
    "none covers": State({"USDC": 1_000, "BTC": 5}, "BTC"),
    "no wallet": State({}, "ETH"),
    "free call left": State({"USDC": 1_000}, "USDC"),
    "free calls used up": State({"USDC": 100_000, "BTC": 100_000}, "BTC", free_used=1),
}
CALLS = {
    "read": ("search-specialists", None),
    "free quota": ("view-profile", None),
    "held": ("create-schedule", None),
    "held with a slot price": ("book-slot", ExtraPrice(400_000, "USD")),
    "held with a slot price in BTC": ("book-slot", ExtraPrice(500, "BTC")),
}


async def _agent_in(db: Database, state: State) -> int:
    agent = await make_agent(db, currency=state.preferred)
    for currency, amount in state.wallets.items():
        await fund(db, agent, currency, amount)
    return agent


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("state", list(STATES))
async def test_the_quote_names_the_payer_and_price_the_call_then_uses(
    db: Database, config: BillingConfig, state: str, call: str
) -> None:
    tool, extra = CALLS[call]
    agent = await _agent_in(db, STATES[state])
    for _ in range(STATES[state].free_used):
        await run_metered(db, Admission(agent, "view-profile"), ok, config=config)
    quoted = await quote(db, agent_id=agent, tool=tool, extra_price=extra, config=config)
    before = {c: await wallet_balance(db, agent, c) for c in STATES[state].wallets}
    admission = Admission(agent, tool, extra_price=extra)
    if not quoted.sufficient:
        with pytest.raises(InsufficientFunds) as refused:
            await run_metered(db, admission, ok, config=config)
        details = refused.value.details
        assert (details["currency"], details["price"], details["balance"]) == (
            quoted.currency,
            quoted.amount,
            quoted.balance,
        )
        assert details["price_usd_micros"] == quoted.price_usd_micros
        return
    metered = await run_metered(db, admission, ok, config=config)
    receipt = metered.receipt
    assert receipt is not None
    if quoted.free:
        assert receipt.free and receipt.amount == 0
        return
    assert receipt.currency == quoted.currency
    assert before[quoted.currency] == quoted.balance
    async with db.uow() as uow:
        hold = (
            await uow.session.execute(
                select(Hold.amount, Hold.currency).where(Hold.call_id == receipt.call_id)
            )
        ).first()
        charge = (
            await uow.session.execute(
                select(LedgerTransaction.amount, LedgerTransaction.currency).where(
                    LedgerTransaction.call_id == receipt.call_id,
                    LedgerTransaction.kind == "charge",
                )
            )
        ).first()
    # A held call reserves the whole quoted amount; a read call is charged it.
    debited = hold if hold is not None else charge
    assert debited is not None
    assert (debited.amount, debited.currency) == (quoted.amount, quoted.currency)
