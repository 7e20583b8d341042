"""Money events: deposit.confirmed from the crediting transaction, balance.low once per
crossing of the threshold by a charge, and money in every payload as the rest of the product
shows it: ``{amount, currency, text}`` with the amount an integer in base units."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from billing_support import fund, make_agent, pending_deposit
from events_support import outbox, schedule, specialist

from agent_server.booking.availability import make_slot_id
from agent_server.booking.schedules import ScheduleOwner
from agent_server.booking.service import book_slot
from agent_server.events.balance import emit_if_balance_low
from agent_server.kernel.store import Database
from agent_server.services.deposits import DEPOSIT_FOLLOW_UP
from billing.config import BillingConfig
from billing.meter import Admission, MeteredCall, run_metered
from billing.prices import PriceList, ToolPrice
from wallets.crediting import credit_confirmed
from wallets.models import Deposit
from wallets.rates import FakeRateSource

CENTS_30 = 300_000


@pytest.fixture
def config() -> BillingConfig:
    return BillingConfig(
        prices=PriceList(
            {
                "search": ToolPrice("search", CENTS_30),
                "book": ToolPrice("book", CENTS_30, hold=True),
            }
        ),
        rates=FakeRateSource(),
        balance_low_usd_micros=1_000_000,
    )


async def ok(call: MeteredCall) -> dict[str, Any]:
    return {"ok": True}


async def call(db: Database, agent: int, tool: str, config: BillingConfig) -> int | None:
    metered = await run_metered(
        db,
        Admission(agent, tool, on_balance_low=emit_if_balance_low),
        ok,
        config=config,
    )
    assert metered.receipt is not None
    return metered.receipt.balance_after


async def low_events(db: Database, agent: int) -> list[dict[str, Any]]:
    return [e.payload for e in await outbox(db, agent) if e.type == "balance.low"]


async def test_balance_low_fires_once_each_time_a_charge_crosses_the_threshold(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db, currency="USDC")
    await fund(db, agent, "USDC", 1_500_000)

    balances = [await call(db, agent, "search", config) for _ in range(4)]
    assert balances == [1_200_000, 900_000, 600_000, 300_000]
    events = await low_events(db, agent)
    assert events == [
        {
            "currency": "USDC",
            "balance": {"amount": 900_000, "currency": "USDC", "text": "0.90 USDC"},
            "balance_usd": {"amount": 900_000, "currency": "USD", "text": "0.90 USD"},
            "threshold_usd": {"amount": 1_000_000, "currency": "USD", "text": "1.00 USD"},
            "rate_usd_micros": 1_000_000,
        }
    ]

    await fund(db, agent, "USDC", 2_000_000)  # 2.3 USDC: above the threshold again
    balances = [await call(db, agent, "book", config) for _ in range(5)]
    assert balances == [2_000_000, 1_700_000, 1_400_000, 1_100_000, 800_000]
    events = await low_events(db, agent)
    assert [e["balance"]["amount"] for e in events] == [900_000, 800_000]


async def test_two_concurrent_charges_across_the_threshold_emit_one_event(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db, currency="USDC")
    await fund(db, agent, "USDC", 1_100_000)
    after = await asyncio.gather(*(call(db, agent, "search", config) for _ in range(2)))
    assert sorted(b for b in after if b is not None) == [500_000, 800_000]
    assert [e["balance"]["amount"] for e in await low_events(db, agent)] == [800_000]


async def test_a_confirmed_deposit_emits_deposit_confirmed_with_the_credit(db: Database) -> None:
    agent = await make_agent(db, currency="USDC")
    deposit = await pending_deposit(db, agent, "USDC", 25_000_000)

    async with db.uow() as uow:
        assert await credit_confirmed(
            uow,
            deposit,
            rates=FakeRateSource(),
            activation_usd_micros=0,
            confirmations=3,
            follow_up=DEPOSIT_FOLLOW_UP,
        )
        # Not committed: the credit and its event go together.
    assert await outbox(db, agent) == []

    async with db.uow() as uow:
        fresh = await uow.session.get(Deposit, deposit.id)
        assert fresh is not None
        assert await credit_confirmed(
            uow,
            fresh,
            rates=FakeRateSource(),
            activation_usd_micros=0,
            confirmations=3,
            follow_up=DEPOSIT_FOLLOW_UP,
        )
        await uow.commit()
    (event,) = await outbox(db, agent)
    assert event.type == "deposit.confirmed"
    data = event.payload
    assert (data["deposit_id"], data["currency"]) == (deposit.id, "USDC")
    assert data["amount"] == {"amount": 25_000_000, "currency": "USDC", "text": "25.00 USDC"}
    assert data["usd_micros"] == 25_000_000 and "amount_base_units" not in data
    assert data["tx_hash"] == deposit.tx_hash and data["confirmations"] == 3
    assert data["ledger_transaction_id"] is not None
    assert "kind" not in data


async def test_a_booking_event_shows_its_price_as_money(db: Database) -> None:
    booker = await make_agent(db, name="booker")
    expert = await specialist(db)
    auto = await schedule(db, ScheduleOwner.specialist(expert), auto_accept=True)
    tuesday_9 = datetime(2026, 3, 3, 9, tzinfo=UTC)  # the clock starts the Monday before
    async with db.uow() as uow:
        await book_slot(
            uow, agent_id=booker, slot_id=make_slot_id(auto, tuesday_9), idempotency_key=None
        )
        await uow.commit()
    created = [e for e in await outbox(db, booker) if e.type == "booking.created"]
    assert created[0].payload["booking"]["price"] == {
        "amount": 50_000_000,
        "currency": "USD",
        "text": "50.00 USD",
    }
