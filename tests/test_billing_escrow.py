"""Escrow of slot prices: held at booking, refunded by policy on cancellation, paid out to the
specialist less commission on completion; each exactly once per booking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from billing_support import audit_ledger, fund, make_agent, make_schedule, wallet_balance
from sqlalchemy import select

from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import Booking, CancelledBy, Schedule
from agent_server.booking.schedules import ScheduleOwner
from agent_server.booking.service import book_slot
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import InsufficientFunds
from agent_server.kernel.store import Database
from agent_server.services.bookings import (
    booking_terms,
    cancel_booking,
    complete_booking,
    reject_booking,
    reschedule_booking,
)
from agent_server.services.clock import BookingClock, ClockConfig, release_escrow
from billing.config import BillingConfig
from billing.escrow import (
    EscrowAlreadySettled,
    escrow_booking,
    payout_booking,
    refund_booking,
)
from billing.ledger import account_balance_from_entries, open_account, system_account
from billing.meter import Admission, ExtraPrice, MeteredCall, run_metered
from billing.models import AccountKind
from billing.prices import load_price_list
from wallets.rates import FakeRateSource

START = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)  # 74 hours after the test clock's start
DISPUTE_WINDOW = timedelta(hours=72)
PRICE = 40_000_000  # 40 USD
FEE = 50_000
FUNDS = 100_000_000


@pytest.fixture
def config() -> BillingConfig:
    return BillingConfig(prices=load_price_list(), rates=FakeRateSource())


async def book(db: Database, config: BillingConfig, *, auto_accept: bool = True) -> tuple[int, int]:
    """A funded agent books a 40 USD slot through the meter; (agent id, booking id)."""
    agent = await make_agent(db)
    await fund(db, agent, "USDC", FUNDS)
    schedule = await make_schedule(db, price_amount=PRICE, auto_accept=auto_accept)
    slot = make_slot_id(schedule, START)

    async def operation(call: MeteredCall) -> dict[str, Any]:
        booking = await book_slot(call.uow, agent_id=agent, slot_id=slot, idempotency_key=None)
        await call.escrow(booking)
        return {"booking_id": booking.id}

    metered = await run_metered(
        db,
        Admission(
            agent, "book-slot", arguments={"slot_id": slot}, extra_price=ExtraPrice(PRICE, "USD")
        ),
        operation,
        config=config,
    )
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE - PRICE
    return agent, int(metered.result["booking_id"])


async def payee_and_revenue(db: Database, booking_id: int) -> tuple[int, int]:
    async with db.uow() as uow:
        booking = await uow.session.get(Booking, booking_id)
        assert booking is not None and booking.specialist_id is not None
        payable = await open_account(
            uow, AccountKind.PAYABLE, "USDC", specialist_id=booking.specialist_id
        )
        revenue = await system_account(uow, AccountKind.REVENUE, "USDC")
        return (
            await account_balance_from_entries(uow, payable.id),
            await account_balance_from_entries(uow, revenue.id),
        )


async def cancel(db: Database, booking_id: int, by: CancelledBy, actor: int | None) -> Any:
    async with db.uow() as uow:
        cancelled = await cancel_booking(uow, booking_id, by, actor, "no_time")
        await uow.commit()
        return cancelled.settlement


async def test_an_early_agent_cancellation_refunds_everything(
    db: Database, config: BillingConfig
) -> None:
    agent, booking = await book(db, config)
    settlement = await cancel(db, booking, CancelledBy.AGENT, agent)
    assert (settlement.refunded, settlement.paid_to_payee, settlement.commission) == (PRICE, 0, 0)
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE
    assert await payee_and_revenue(db, booking) == (0, FEE)
    await audit_ledger(db)


async def test_a_late_agent_cancellation_refunds_half_and_pays_the_rest_less_commission(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, booking = await book(db, config)
    clock.set(START - timedelta(hours=23, minutes=59))
    settlement = await cancel(db, booking, CancelledBy.AGENT, agent)
    assert (settlement.refunded, settlement.paid_to_payee, settlement.commission) == (
        20_000_000,
        18_000_000,
        2_000_000,
    )
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE - 20_000_000
    assert await payee_and_revenue(db, booking) == (18_000_000, FEE + 2_000_000)
    # Refunding again changes nothing and returns the same settlement.
    async with db.uow() as uow:
        row = await uow.session.get(Booking, booking)
        assert row is not None
        again = await refund_booking(uow, await booking_terms(uow, row))
        await uow.commit()
    assert again == settlement
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE - 20_000_000
    await audit_ledger(db)


async def test_a_cancellation_by_the_system_or_a_rejection_refunds_everything_even_late(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, booking = await book(db, config)
    clock.set(START - timedelta(hours=1))
    settlement = await cancel(db, booking, CancelledBy.SYSTEM, None)
    assert settlement.refunded == PRICE
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE

    clock.set(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    agent, booking = await book(db, config, auto_accept=False)
    clock.set(START - timedelta(hours=1))
    async with db.uow() as uow:
        row = await uow.session.get(Booking, booking)
        assert row is not None
        schedule = await uow.session.get(Schedule, row.schedule_id)
        assert schedule is not None and schedule.specialist_id is not None
        rejected = await reject_booking(
            uow, ScheduleOwner(specialist_id=schedule.specialist_id), booking
        )
        settlement = rejected.settlement
        await uow.commit()
    assert settlement is not None and settlement.refunded == PRICE
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE
    await audit_ledger(db)


async def test_completion_holds_the_escrow_and_the_window_pays_it_out_exactly_once(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, booking = await book(db, config)
    clock.set(START + timedelta(hours=1))
    async with db.uow() as uow:
        completed = await complete_booking(uow, booking, CancelledBy.SYSTEM, None)
        await uow.commit()
    assert completed.settlement is None
    # Before the dispute window passed the provider has nothing; the escrow is held.
    ticker = BookingClock(db, ClockConfig())
    clock.set(START + timedelta(hours=1) + DISPUTE_WINDOW - timedelta(seconds=1))
    assert (await ticker.tick()).released == 0
    assert await payee_and_revenue(db, booking) == (0, FEE)
    clock.set(START + timedelta(hours=1) + DISPUTE_WINDOW)
    settlements = []
    for _ in range(2):
        async with db.uow() as uow:
            settlements.append(
                await release_escrow(uow, booking, window=DISPUTE_WINDOW, policy=None)
            )
            await uow.commit()
    assert settlements[1] is None  # released already: nothing more to do
    assert settlements[0] is not None
    assert (settlements[0].paid_to_payee, settlements[0].commission) == (36_000_000, 4_000_000)
    assert (await ticker.tick()).released == 0
    assert await payee_and_revenue(db, booking) == (36_000_000, FEE + 4_000_000)
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE - PRICE
    async with db.uow() as uow:
        row = await uow.session.get(Booking, booking)
        assert row is not None
        with pytest.raises(EscrowAlreadySettled):
            await refund_booking(uow, await booking_terms(uow, row))
        again = await payout_booking(uow, await booking_terms(uow, row))
    assert again == settlements[0]
    await audit_ledger(db)


async def test_escrow_straight_from_the_wallet_never_overdraws(db: Database) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    schedule = await make_schedule(db, price_amount=PRICE)
    async with db.uow() as uow:
        booking = await book_slot(
            uow, agent_id=agent, slot_id=make_slot_id(schedule, START), idempotency_key=None
        )
        with pytest.raises(InsufficientFunds):
            await escrow_booking(
                uow, booking, amount=PRICE, currency="USDC", price_usd_micros=PRICE, rate=10**6
            )
    async with db.uow() as uow:
        assert (await uow.session.execute(select(Booking))).first() is None
    assert await wallet_balance(db, agent, "USDC") == 1_000_000


async def test_a_rescheduled_booking_keeps_its_escrow_and_pays_out_once(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, booking = await book(db, config)
    async with db.uow() as uow:
        row = await uow.session.get(Booking, booking)
        assert row is not None
        later = make_slot_id(row.schedule_id, START + timedelta(hours=2))
        new = await reschedule_booking(uow, agent, booking, later)
        old = await uow.session.get(Booking, booking)
        assert old is not None
        # The old booking, canceled by the move, has nothing left to refund.
        assert await refund_booking(uow, await booking_terms(uow, old)) is None
        await uow.commit()
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE - PRICE
    clock.set(START + timedelta(hours=3))
    async with db.uow() as uow:
        done = await complete_booking(uow, new.id, CancelledBy.SYSTEM, None)
        await uow.commit()
    assert done.settlement is None
    clock.set(START + timedelta(hours=3) + DISPUTE_WINDOW)
    assert (await BookingClock(db, ClockConfig()).tick()).released == 1
    assert await payee_and_revenue(db, new.id) == (36_000_000, FEE + 4_000_000)
    await audit_ledger(db)
