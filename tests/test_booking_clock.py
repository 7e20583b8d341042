"""The booking clock: pending bookings expire with a full refund, accepted ones complete by
themselves after their end, and the escrow reaches the provider only once the dispute window
passed; reminders are mailed once. Every step happens exactly once, also with two clocks at
once on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from billing_support import audit_ledger, fund, make_agent, make_schedule, wallet_balance
from events_support import worker_config
from mcp_support import start_serve
from smtp_sink import free_port
from soak_audit import Deadlines, booking_consistency
from sqlalchemy import func, select, update
from webhook_receiver import Receiver

from agent_server.accounts.models import Agent
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import (
    Booking,
    BookingChange,
    CancelledBy,
    Schedule,
    Specialist,
)
from agent_server.booking.service import book_slot
from agent_server.events.models import OutboxEvent
from agent_server.events.worker import DeliveryWorker
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database, make_engine
from agent_server.mail import OutboxMail
from agent_server.services.bookings import accept_booking, complete_booking
from agent_server.services.clock import BookingClock, ClockConfig
from billing.config import BillingConfig
from billing.ledger import account_balance_from_entries, open_account
from billing.meter import Admission, ExtraPrice, MeteredCall, run_metered
from billing.models import AccountKind, LedgerTransaction
from billing.prices import load_price_list
from wallets.rates import FakeRateSource

START = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)  # 74 hours after the test clock's start
END = START + timedelta(hours=1)
PRICE = 40_000_000  # 40 USD, paid in USDC
FEE = 50_000
FUNDS = 100_000_000
PAID = 36_000_000  # the price less 10 % commission
CONFIG = ClockConfig()  # the defaults: 24 h pending, 2 h to complete, 72 h to dispute


@pytest.fixture
def config() -> BillingConfig:
    return BillingConfig(prices=load_price_list(), rates=FakeRateSource())


async def book(
    db: Database,
    config: BillingConfig,
    *,
    auto_accept: bool = True,
    start: datetime = START,
    provider: int | None = None,
) -> tuple[int, int]:
    """A funded agent books a 40 USD slot through the meter; (agent id, booking id). The
    schedule is a specialist's, or the agent ``provider``'s."""
    agent = await make_agent(db)
    await fund(db, agent, "USDC", FUNDS)
    schedule = await make_schedule(db, price_amount=PRICE, auto_accept=auto_accept)
    async with db.uow() as uow:
        row = await uow.session.get(Schedule, schedule)
        assert row is not None
        row.weekly_hours = {day: [["00:00", "23:00"]] for day in row.weekly_hours}
        if provider is not None:
            row.specialist_id, row.agent_id = None, provider
        await uow.commit()
    slot = make_slot_id(schedule, start)

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
    return agent, int(metered.result["booking_id"])


async def booking(db: Database, booking_id: int) -> Booking:
    async with db.uow() as uow:
        row = await uow.session.get(Booking, booking_id)
        assert row is not None
        uow.session.expunge(row)
        return row


async def provider_paid(db: Database, booking_id: int) -> int:
    row = await booking(db, booking_id)
    async with db.uow() as uow:
        payable = await open_account(
            uow, AccountKind.PAYABLE, "USDC", specialist_id=row.specialist_id
        )
        return await account_balance_from_entries(uow, payable.id)


async def trail(db: Database, booking_id: int) -> tuple[list[str], list[str], list[str]]:
    """The booking's history notes, its event types, and its ledger transaction kinds."""
    async with db.uow() as uow:
        notes = (
            await uow.session.execute(
                select(BookingChange.note)
                .where(BookingChange.booking_id == booking_id)
                .order_by(BookingChange.id)
            )
        ).scalars()
        events = (
            await uow.session.execute(
                select(OutboxEvent.type)
                .order_by(OutboxEvent.id)
                .where(OutboxEvent.payload["booking"]["id"].as_integer() == booking_id)
            )
        ).scalars()
        kinds = (
            await uow.session.execute(
                select(LedgerTransaction.kind)
                .where(LedgerTransaction.booking_id == booking_id)
                .order_by(LedgerTransaction.id)
            )
        ).scalars()
        return list(notes), list(events), list(kinds)


async def test_an_unanswered_booking_expires_with_a_full_refund_once(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, booking_id = await book(db, config, auto_accept=False)
    ticker = BookingClock(db, CONFIG)
    clock.advance(timedelta(hours=23, minutes=59))
    assert (await ticker.tick()).expired == 0
    assert (await booking(db, booking_id)).status == "pending"
    clock.advance(timedelta(minutes=1))
    assert (await ticker.tick()).expired == 1
    row = await booking(db, booking_id)
    assert (row.status, row.cancelled_by, row.cancel_reason_code) == (
        "canceled",
        "system",
        "expired",
    )
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE
    clock.advance(timedelta(hours=1))
    assert (await ticker.tick()).total() == 0
    notes, events, kinds = await trail(db, booking_id)
    assert notes == ["booked", "expired: not answered in time"]
    assert events == ["booking.created", "booking.expired"]
    assert kinds == ["escrow", "refund"]
    await audit_ledger(db)


async def test_a_pending_booking_expires_at_its_start_whatever_the_ttl(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, booking_id = await book(db, config, auto_accept=False)
    ticker = BookingClock(db, ClockConfig(pending_ttl=timedelta(days=30)))
    clock.set(START - timedelta(seconds=1))
    assert (await ticker.tick()).expired == 0
    clock.set(START)
    assert (await ticker.tick()).expired == 1
    assert (await booking(db, booking_id)).cancel_reason_code == "expired"
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE


async def test_an_accepted_booking_completes_after_its_end_and_pays_after_the_window(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, booking_id = await book(db, config)
    ticker = BookingClock(db, CONFIG)
    clock.set(END + timedelta(hours=1, minutes=59))
    assert (await ticker.tick()).completed == 0
    clock.set(END + timedelta(hours=2))
    assert (await ticker.tick()).completed == 1
    assert (await booking(db, booking_id)).status == "completed"
    # Completed, but the booker may still dispute: the escrow is held.
    clock.set(END + timedelta(hours=71, minutes=59))
    assert (await ticker.tick()).released == 0
    assert await provider_paid(db, booking_id) == 0
    clock.set(END + timedelta(hours=72))
    assert (await ticker.tick()).released == 1
    assert await provider_paid(db, booking_id) == PAID
    assert await wallet_balance(db, agent, "USDC") == FUNDS - FEE - PRICE
    clock.advance(timedelta(days=10))
    assert (await ticker.tick()).total() == 0
    notes, events, kinds = await trail(db, booking_id)
    assert notes[:2] == ["booked", "completed"]
    assert len(notes) == 3 and notes[2].startswith("escrow released: 36000000 USDC")
    assert events == [
        "booking.created",
        "booking.confirmed",
        "booking.completed",
        "booking.paid_out",
    ]
    assert kinds == ["escrow", "payout"]
    await audit_ledger(db)


def usdc(amount: int, text: str) -> dict[str, Any]:
    return {"amount": amount, "currency": "USDC", "text": text}


async def test_the_release_is_told_to_the_booker_and_the_providing_agent_by_webhook(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    with Receiver() as receiver:
        provider = await make_agent(db, name="provider")
        booker, booking_id = await book(db, config, provider=provider)
        async with db.uow() as uow:
            await uow.session.execute(
                update(Agent)
                .where(Agent.id.in_([booker, provider]))
                .values(callback_url=receiver.url)
            )
            await uow.commit()
        ticker = BookingClock(db, CONFIG)
        clock.set(END + timedelta(hours=2))
        assert (await ticker.tick()).completed == 1
        worker = DeliveryWorker(db, worker_config())
        while await worker.run_once():
            pass
        before = len(receiver.requests)
        clock.set(END + timedelta(hours=71, minutes=59))
        assert (await ticker.tick()).released == 0
        assert await worker.run_once() == 0
        clock.set(END + timedelta(hours=72))
        assert (await ticker.tick()).released == 1
        assert await worker.run_once() == 2
        clock.advance(timedelta(days=10))
        assert (await ticker.tick()).total() == 0
        assert await worker.run_once() == 0
    paid_out = [r.json() for r in receiver.requests[before:]]
    assert sorted((body["agent_id"], body["data"]["role"]) for body in paid_out) == sorted(
        [(booker, "booker"), (provider, "provider")]
    )
    for body in paid_out:
        assert body["event"] == "booking.paid_out"
        assert body["data"]["booking"]["id"] == booking_id
        assert body["data"]["booking"]["status"] == "completed"
        assert body["data"]["payout"] == {
            "escrowed": usdc(PRICE, "40.00 USDC"),
            "paid_to_provider": usdc(PAID, "36.00 USDC"),
            "commission": usdc(PRICE - PAID, "4.00 USDC"),
        }


async def test_a_booking_completed_by_its_provider_is_paid_only_after_the_window(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    _, booking_id = await book(db, config)
    row = await booking(db, booking_id)
    clock.set(END)
    async with db.uow() as uow:
        done = await complete_booking(uow, booking_id, CancelledBy.SPECIALIST, row.specialist_id)
        await uow.commit()
    assert done.settlement is None
    assert await provider_paid(db, booking_id) == 0
    ticker = BookingClock(db, CONFIG)
    clock.set(END + timedelta(hours=72))
    assert (await ticker.tick()).released == 1
    assert await provider_paid(db, booking_id) == PAID


async def test_the_specialist_is_reminded_once_when_they_asked_for_it(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    _, wanted = await book(db, config)
    _, unwanted = await book(db, config)
    async with db.uow() as uow:
        row = await uow.session.get(Booking, unwanted)
        assert row is not None
        specialist = await uow.session.get(Specialist, row.specialist_id)
        assert specialist is not None
        specialist.notify_reminder = False
        await uow.commit()
    ticker = BookingClock(db, CONFIG)
    clock.set(START - timedelta(hours=24, minutes=1))
    assert (await ticker.tick()).reminded == 0
    clock.set(START - timedelta(hours=23))
    assert (await ticker.tick()).reminded == 1
    assert (await ticker.tick()).reminded == 0
    assert (await booking(db, wanted)).reminder_sent_at == clock.now()
    assert (await booking(db, unwanted)).reminder_sent_at is None
    async with db.uow() as uow:
        mails = (
            await uow.session.execute(
                select(OutboxMail.to_addr, OutboxMail.subject).where(
                    OutboxMail.kind == "booking_reminder"
                )
            )
        ).all()
    assert len(mails) == 1
    assert f"booking #{wanted} starts at 2026-03-05T10:00:00Z" in mails[0][1]


async def test_a_pending_booking_accepted_in_time_does_not_expire(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    _, booking_id = await book(db, config, auto_accept=False)
    row = await booking(db, booking_id)
    from agent_server.booking.schedules import ScheduleOwner

    async with db.uow() as uow:
        await accept_booking(uow, ScheduleOwner(specialist_id=row.specialist_id), booking_id)
        await uow.commit()
    clock.advance(timedelta(hours=30))
    assert (await BookingClock(db, CONFIG).tick()).expired == 0
    assert (await booking(db, booking_id)).status == "accepted"


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_clocks_racing_move_each_booking_exactly_once(
    db: Database, database_url: str, config: BillingConfig, clock: FakeClock
) -> None:
    pending = [(await book(db, config, auto_accept=False))[1] for _ in range(4)]
    accepted = [(await book(db, config))[1] for _ in range(4)]
    other = Database(make_engine(database_url), clock)
    try:
        clocks = [BookingClock(db, CONFIG), BookingClock(other, CONFIG)]
        # First every pending booking expires and every accepted one completes...
        clock.set(END + timedelta(hours=2))
        ticks = await asyncio.gather(*(c.tick() for c in clocks))
        assert sum(t.expired for t in ticks) == 4
        assert sum(t.completed for t in ticks) == 4
        # ... then, the window passed, every completed one is paid out.
        clock.set(END + timedelta(hours=72))
        ticks = await asyncio.gather(*(c.tick() for c in clocks), *(c.tick() for c in clocks))
        assert sum(t.released for t in ticks) == 4
        assert sum(t.total() for t in ticks) == 4
    finally:
        await other.dispose()
    for booking_id in pending:
        notes, events, kinds = await trail(db, booking_id)
        assert (notes[1:], events[1:], kinds) == (
            ["expired: not answered in time"],
            ["booking.expired"],
            ["escrow", "refund"],
        )
    for booking_id in accepted:
        notes, events, kinds = await trail(db, booking_id)
        assert len(notes) == 3 and notes[1] == "completed"
        assert events[2:] == ["booking.completed", "booking.paid_out"]
        assert kinds == ["escrow", "payout"]
        assert await provider_paid(db, booking_id) == PAID
    async with db.uow() as uow:
        payouts = await uow.session.scalar(
            select(func.count()).where(LedgerTransaction.kind == "payout")
        )
    assert payouts == 4
    await audit_ledger(db)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_serve_runs_the_clock_with_short_settings(
    database_url: str, config: BillingConfig, tmp_path: Path
) -> None:
    """A real ``agent-server serve`` expires, completes and, after its (short) dispute window,
    pays out on its own, on the system clock."""
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    if start.hour == 23:  # keep the slot inside the schedule's 00:00-23:00 day
        start -= timedelta(hours=1)
    yesterday = Database(make_engine(database_url), FakeClock(now - timedelta(days=1)))
    try:
        _, ended = await book(yesterday, config, start=start)
        _, unanswered = await book(
            yesterday, config, auto_accept=False, start=start + timedelta(days=1)
        )
    finally:
        await yesterday.dispose()
    # The window closes 25 s from now: time for the server to start (slow on a busy machine)
    # and to expire and complete the bookings before it pays out.
    paid_from = now + timedelta(seconds=25)
    window = paid_from - (start + timedelta(hours=1))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=database_url,
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="true",
        AGENT_SERVER_CLOCK_INTERVAL="0.3",
        AGENT_SERVER_BOOKING_PENDING_TTL="3600",
        AGENT_SERVER_AUTO_COMPLETE_AFTER="0",
        AGENT_SERVER_DISPUTE_WINDOW=str(int(window.total_seconds())),
    )
    db = Database(make_engine(database_url))
    server = start_serve(env, port, tmp_path / "serve.log")
    try:

        async def until(what: Callable[[], Awaitable[bool]]) -> None:
            for _ in range(150):
                if await what():
                    return
                await asyncio.sleep(0.2)
            raise AssertionError((tmp_path / "serve.log").read_text()[-3000:])

        async def moved() -> bool:
            return (await booking(db, unanswered)).status == "canceled" and (
                await booking(db, ended)
            ).status == "completed"

        await until(moved)
        assert (await booking(db, unanswered)).cancel_reason_code == "expired"
        assert datetime.now(UTC) < paid_from, "the server took the whole window to start"
        assert await provider_paid(db, ended) == 0  # the window has not passed yet

        async def paid() -> bool:
            return await provider_paid(db, ended) > 0

        await until(paid)
        await asyncio.sleep(1)  # a few more ticks: nothing more happens
        assert await provider_paid(db, ended) == PAID
        assert (await trail(db, ended))[2] == ["escrow", "payout"]
        assert (await trail(db, unanswered))[2] == ["escrow", "refund"]
    finally:
        server.terminate()
        server.wait(timeout=20)
        await db.dispose()
    await audit_ledger(Database(make_engine(database_url)))


async def test_the_audit_finds_what_the_clock_left_past_its_time(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    _, pending = await book(db, config, auto_accept=False)
    _, accepted = await book(db, config, start=START + timedelta(hours=2))
    deadlines = Deadlines(
        CONFIG.pending_ttl, CONFIG.auto_complete_after, CONFIG.dispute_window, timedelta(0)
    )
    clock.set(START + timedelta(hours=6))  # both overdue: the start came, the end passed
    problems = await booking_consistency(db, deadlines)
    assert any(f"booking {pending} (pending): pending past" in p for p in problems)
    assert any(f"booking {accepted} (accepted): accepted past" in p for p in problems)
    ticker = BookingClock(db, CONFIG)
    await ticker.tick()
    assert await booking_consistency(db, deadlines) == []
    clock.advance(CONFIG.dispute_window)
    problems = await booking_consistency(db, deadlines)
    assert any("escrow held past the dispute window" in p for p in problems)
    await ticker.tick()
    assert await booking_consistency(db, deadlines) == []
