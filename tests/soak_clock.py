"""The booking clock and disputes in the soak.

Both servers run the booking clock (every 0.5 s) on the soak's database. Before the calls start,
``seed`` books, on the system clock of yesterday, for some agents a session that ended a few
minutes ago (accepted, 5 USDC in escrow from their wallets) and for others a pending booking
nobody answered (expired by the first tick, refunded in full). One ended session, a slot
earlier than the others, is never offered for dispute; the dispute window is set so that its
window closes a little while into the run, and the others' a slot (15 minutes) later. So
however fast or slow the machine: the agents can dispute their sessions (``open-dispute``)
throughout a reduced run, and an operator (``resolve_disputes``, in the soak's own process)
settles the open disputes with a refund, a release or a split, while the clocks of both
servers release at least the kept session's escrow, one server killed -9 meanwhile.
``settle_clock`` waits until the clock has caught up with everything due, so that the audit's
``Deadlines`` find nothing held past its time.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from soak_audit import AgentSetup, Deadlines, booking_consistency
from sqlalchemy import func, select

from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import (
    Booking,
    BookingChange,
    BookingStatus,
    Dispute,
    Schedule,
    Specialist,
)
from agent_server.booking.service import book_slot
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import AgentServerError
from agent_server.kernel.store import Database, make_engine
from agent_server.services.clock import RELEASED
from agent_server.services.disputes import resolve_dispute
from billing.escrow import escrow_booking
from billing.prices import load_price_list

USDC = 1_000_000
PRICE = 5 * USDC
SLOT = timedelta(minutes=15)
TICK = 0.5
PENDING_TTL = timedelta(hours=1)
GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class ClockPlan:
    """When the seeded sessions started (the kept one a slot before the others) and when the
    kept session's dispute window closes (the others' a slot later)."""

    kept_start: datetime
    slot_start: datetime
    window_closes: datetime

    @property
    def dispute_window(self) -> timedelta:
        return self.window_closes - (self.kept_start + SLOT)

    def env(self) -> dict[str, str]:
        return {
            "AGENT_SERVER_CLOCK_INTERVAL": str(TICK),
            "AGENT_SERVER_BOOKING_PENDING_TTL": str(int(PENDING_TTL.total_seconds())),
            "AGENT_SERVER_AUTO_COMPLETE_AFTER": "0",
            "AGENT_SERVER_DISPUTE_WINDOW": str(self.dispute_window.total_seconds()),
        }

    def deadlines(self) -> Deadlines:
        return Deadlines(PENDING_TTL, timedelta(0), self.dispute_window, GRACE)


def plan_clock(agents: int) -> ClockPlan:
    """Sessions that ended 15 to 30 minutes ago, the kept one a slot earlier; its window
    closes a little while into the run."""
    now = datetime.now(UTC)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % 15 + 30)
    while (start.hour, start.minute) in ((23, 45), (0, 0)):  # both slots inside 00:00-23:45
        start -= SLOT
    return ClockPlan(start - SLOT, start, now + timedelta(seconds=20 + agents))


async def _schedule(db: Database, *, capacity: int, auto_accept: bool) -> int:
    async with db.uow() as uow:
        now = uow.clock.now()
        specialist = Specialist(
            name="Soak Clockwork",
            timezone="UTC",
            email=f"clock-{secrets.token_hex(6)}@example.com",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(specialist)
        await uow.flush()
        days = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        schedule = Schedule(
            specialist_id=specialist.id,
            timezone="UTC",
            weekly_hours={d: [["00:00", "23:45"]] for d in days},
            start_date=date(2020, 1, 1),
            slot_minutes=15,
            price_amount=PRICE,
            price_currency="USDC",
            price_usd_micros=PRICE,
            capacity=capacity,
            auto_accept=auto_accept,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(schedule)
        await uow.flush()
        await uow.commit()
        return schedule.id


async def _book(db: Database, agent_id: int, slot_id: str) -> int:
    async with db.uow() as uow:
        booking = await book_slot(uow, agent_id=agent_id, slot_id=slot_id, idempotency_key=None)
        await escrow_booking(
            uow, booking, amount=PRICE, currency="USDC", price_usd_micros=PRICE, rate=10**6
        )
        await uow.commit()
        return booking.id


@dataclass(frozen=True)
class Seeded:
    """What ``seed`` made: the setups with what the escrows took from their opening funds
    (the audit's model adds the expiries' refunds back), the wallets the agents hold when the
    calls start (the pending ones expired by then), ended booking ids by agent, and the
    pending booking ids."""

    setups: list[AgentSetup]
    opening: dict[int, dict[str, int]]
    ended: dict[int, list[int]]
    pending: list[int]
    undisputed: list[int]  # ended a slot earlier, never disputed: the clock releases them


async def seed(url: str, setups: list[AgentSetup], plan: ClockPlan) -> Seeded:
    """Ended sessions for the rich agents and unanswered pending bookings for some, booked
    yesterday (see ``Seeded``); the first agent's ended session is the one kept from the
    disputes."""
    rich = [s for s in setups if s.funding.get("USDC", 0) >= 1000 * USDC]
    ended_by = rich[: max(2, len(rich) * 2 // 3)]
    pending_by = rich[-2:]
    yesterday = Database(make_engine(url), FakeClock(datetime.now(UTC) - timedelta(days=1)))
    try:
        ended_schedule = await _schedule(yesterday, capacity=len(ended_by), auto_accept=True)
        pending_schedule = await _schedule(yesterday, capacity=len(pending_by), auto_accept=False)
        kept = make_slot_id(ended_schedule, plan.kept_start)
        undisputed = [await _book(yesterday, ended_by[0].agent_id, kept)]
        ended: dict[int, list[int]] = {}
        for setup in ended_by[1:]:
            slot = make_slot_id(ended_schedule, plan.slot_start)
            ended[setup.agent_id] = [await _book(yesterday, setup.agent_id, slot)]
        pending = []
        for setup in pending_by:
            slot = make_slot_id(pending_schedule, plan.slot_start + timedelta(days=1))
            pending.append(await _book(yesterday, setup.agent_id, slot))
    finally:
        await yesterday.dispose()
    escrowed = {s.agent_id: 0 for s in setups}
    for setup in ended_by:
        escrowed[setup.agent_id] += PRICE
    opening = {
        s.agent_id: {**s.funding, "USDC": s.funding["USDC"] - escrowed[s.agent_id]}
        for s in setups
        if "USDC" in s.funding
    }
    for setup in pending_by:
        escrowed[setup.agent_id] += PRICE
    updated = [
        replace(s, funding={**s.funding, "USDC": s.funding["USDC"] - escrowed[s.agent_id]})
        if escrowed[s.agent_id]
        else s
        for s in setups
    ]
    return Seeded(updated, opening, ended, pending, undisputed)


async def wait_for_status(db: Database, ids: list[int], status: str, seconds: float) -> None:
    """Until every booking of ``ids`` has ``status`` (bounded; the audit tells the rest)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with db.uow() as uow:
            statuses = set(
                await uow.session.scalars(select(Booking.status).where(Booking.id.in_(ids)))
            )
        if statuses <= {status}:
            return
        await asyncio.sleep(TICK)


async def resolve_disputes(
    db: Database, stop: asyncio.Event, rng: random.Random, figures: dict[str, Any]
) -> None:
    """An operator settling open disputes as they come, once more after ``stop``."""
    policy = load_price_list().booking
    while True:
        last = stop.is_set()
        async with db.uow() as uow:
            open_ids = list(
                await uow.session.scalars(
                    select(Dispute.booking_id).where(Dispute.status == "open").limit(20)
                )
            )
        for booking_id in open_ids:
            resolution = rng.choice(["refund", "release", "split"])
            refund = rng.randint(1, PRICE - 1) if resolution == "split" else None
            try:
                async with db.uow() as uow:
                    await resolve_dispute(
                        uow,
                        booking_id,
                        resolution=resolution,
                        refund_amount=refund,
                        operator="soak:operator",
                        note=f"soak decision {resolution}",
                        policy=policy,
                    )
                    await uow.commit()
                figures[resolution] = figures.get(resolution, 0) + 1
            except AgentServerError:
                figures["refused"] = figures.get("refused", 0) + 1
        if last:
            return
        await asyncio.sleep(rng.uniform(0.2, 1.0))


async def settle_clock(db: Database, plan: ClockPlan, seconds: float = 60) -> None:
    """Until the window closed and the clocks caught up with whatever was due (bounded)."""
    while datetime.now(UTC) < plan.window_closes + GRACE:
        await asyncio.sleep(TICK)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        problems = await booking_consistency(db, plan.deadlines())
        if not any(" past " in p for p in problems):
            return
        await asyncio.sleep(TICK)


async def clock_figures(db: Database) -> dict[str, int]:
    async with db.uow() as uow:
        rows = (await uow.session.execute(select(Booking.status, Booking.cancel_reason_code))).all()
        disputes = list(await uow.session.scalars(select(Dispute.status)))
        released = await uow.session.scalar(
            select(func.count()).where(BookingChange.note.startswith(RELEASED))
        )
    return {
        "clock_releases": int(released or 0),
        "bookings_expired": sum(1 for _, code in rows if code == "expired"),
        "bookings_completed": sum(1 for s, _ in rows if s == BookingStatus.COMPLETED.value),
        "disputes_opened": len(disputes),
        "disputes_resolved": sum(1 for s in disputes if s == "resolved"),
    }
