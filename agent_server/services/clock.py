"""The booking clock: moves bookings on by themselves, one booking per unit of work.

Every tick (``BookingClock.tick``; ``serve`` and ``agent-server worker`` run one every
``CLOCK_INTERVAL`` seconds):

======================  ============================================  ========================
step                    which bookings                                money step
======================  ============================================  ========================
``expire_booking``      pending, unanswered ``BOOKING_PENDING_TTL``   escrow refunded in full
                        after booking, or whose start has come
``auto_complete``       accepted, ``AUTO_COMPLETE_AFTER`` past the    none (escrow held)
                        end
``release_escrow``      completed, ``DISPUTE_WINDOW`` past the end,   escrow paid to the
                        never disputed, escrow still held             provider less commission
                                                                      (``booking.paid_out``)
``remind``              accepted, starting within ``REMINDER_BEFORE``  none; the specialist's
                        of a specialist who asked for reminders       reminder mail queued
======================  ============================================  ========================

Exactly once across processes: each unit of work picks one due booking with
``FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite serialises writers), reads it again under the
lock, checks it is still due, and does the booking change, its history line, its event and its
ledger transaction together; the escrow's own conditional update refuses a second settlement.
A booking that fails its step is logged and left for the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Protocol

from sqlalchemy import Select, select

from agent_server.booking import clock as booking_clock
from agent_server.booking import service as booking_service
from agent_server.booking.availability import make_slot_id
from agent_server.booking.events import emit_booking
from agent_server.booking.models import (
    Booking,
    BookingChange,
    BookingStatus,
    CancelledBy,
    Specialist,
)
from agent_server.events.outbox import BOOKING_PAID_OUT, iso
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import AgentServerError
from agent_server.kernel.logs import get_logger
from agent_server.kernel.money import Money
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.mail import OutgoingMail, queue_mail
from agent_server.services.bookings import Settled, booking_terms
from billing.config import BillingConfig
from billing.escrow import EscrowAlreadySettled, Settlement, payout_booking, refund_booking
from billing.models import Escrow, EscrowStatus
from billing.prices import BookingPolicy

log = get_logger(__name__)

RELEASED = "escrow released"
"""How a release's history line begins (status unchanged, the amounts after it)."""

MAX_PER_STEP = 200
"""Bookings one step moves in one tick at most; the rest wait for the next tick."""


@dataclass(frozen=True)
class ClockConfig:
    """The clock's times (``Settings``: BOOKING_PENDING_TTL, AUTO_COMPLETE_AFTER,
    DISPUTE_WINDOW, REMINDER_BEFORE) and the refund and commission policy."""

    pending_ttl: timedelta = timedelta(hours=24)
    auto_complete_after: timedelta = timedelta(hours=2)
    dispute_window: timedelta = timedelta(hours=72)
    reminder_before: timedelta = timedelta(hours=24)
    policy: BookingPolicy | None = None

    @classmethod
    def from_settings(cls, settings: Settings, policy: BookingPolicy | None = None) -> ClockConfig:
        return cls(
            pending_ttl=settings.booking_pending_ttl,
            auto_complete_after=settings.auto_complete_after,
            dispute_window=settings.dispute_window,
            reminder_before=settings.reminder_before,
            policy=policy,
        )


@dataclass
class Tick:
    """How many bookings each step moved in one tick."""

    expired: int = 0
    completed: int = 0
    released: int = 0
    reminded: int = 0

    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


# --- the steps, one booking each, in the caller's unit of work -------------------------------


async def expire_booking(
    uow: UnitOfWork, booking_id: int, *, ttl: timedelta, policy: BookingPolicy | None = None
) -> Settled | None:
    """Expire a pending booking that is still due, refunding its escrow in full; None if it
    is not due (any more)."""
    booking = await booking_clock.expire_booking(uow, booking_id, ttl)
    if booking is None:
        return None
    settlement = await refund_booking(uow, await booking_terms(uow, booking), policy=policy)
    return Settled(booking, settlement)


async def auto_complete(uow: UnitOfWork, booking_id: int, *, after: timedelta) -> Booking | None:
    """Complete an accepted booking ``after`` past its end; its escrow stays held."""
    booking = await booking_service.lock_booking(uow, booking_id)
    now = uow.clock.now()
    if booking.status != BookingStatus.ACCEPTED.value or booking.slot_end > now - after:
        return None
    return await booking_service.complete_booking(uow, booking_id, CancelledBy.SYSTEM, None)


async def release_escrow(
    uow: UnitOfWork,
    booking_id: int,
    *,
    window: timedelta,
    policy: BookingPolicy | None = None,
) -> Settlement | None:
    """Pay a completed booking's escrow to its provider, less the commission, once the dispute
    window after its end passed; None if it is not due (disputed, settled, or too early)."""
    booking = await booking_service.lock_booking(uow, booking_id)
    now = uow.clock.now()
    if booking.status != BookingStatus.COMPLETED.value or booking.slot_end + window > now:
        return None
    escrow = (
        await uow.session.execute(select(Escrow.status).where(Escrow.booking_id == booking.id))
    ).scalar_one_or_none()
    if escrow != EscrowStatus.HELD.value:
        return None
    settlement = await payout_booking(uow, await booking_terms(uow, booking), policy=policy)
    assert settlement is not None  # an escrow was held
    uow.session.add(
        BookingChange(
            booking_id=booking.id,
            at=now,
            actor=CancelledBy.SYSTEM.value,
            from_status=booking.status,
            to_status=booking.status,
            note=f"{RELEASED}: {settlement.paid_to_payee} {settlement.currency} "
            f"to the provider, {settlement.commission} commission",
        )
    )
    await uow.session.flush()
    await emit_booking(uow, BOOKING_PAID_OUT, booking, extra={"payout": payout_data(settlement)})
    return settlement


def payout_data(settlement: Settlement) -> dict[str, dict[str, object]]:
    """A released escrow as ``booking.paid_out`` describes it: money in base units."""

    def money(amount: int) -> dict[str, object]:
        return Money.of(amount, settlement.currency).model_dump()

    return {
        "escrowed": money(settlement.amount),
        "paid_to_provider": money(settlement.paid_to_payee),
        "commission": money(settlement.commission),
    }


def reminder_mail(booking: Booking, specialist: Specialist) -> OutgoingMail:
    slot = make_slot_id(booking.schedule_id, booking.slot_start)
    return OutgoingMail(
        to=specialist.email,
        subject=f"Reminder: booking #{booking.id} starts at {iso(booking.slot_start)}",
        body=(
            f"Hello {specialist.name},\n\n"
            f"your session of booking #{booking.id} ({slot}) starts at "
            f"{iso(booking.slot_start)} and ends at {iso(booking.slot_end)}.\n"
            + (f"Topic: {booking.topic}\n" if booking.topic else "")
            + (f"Where: {booking.location}\n" if booking.location else "")
            + "\nYou receive this reminder because you chose it on your dashboard.\n"
        ),
        kind="booking_reminder",
    )


async def remind(uow: UnitOfWork, booking_id: int) -> bool:
    """Queue the specialist's reminder of an accepted booking, once (``reminder_sent_at``)."""
    booking = await booking_service.lock_booking(uow, booking_id)
    if booking.specialist_id is None or booking.status != BookingStatus.ACCEPTED.value:
        return False
    specialist = await uow.session.get(Specialist, booking.specialist_id)
    if specialist is None or not specialist.notify_reminder:
        return False
    if not await booking_clock.claim_reminder(uow, booking.id):
        return False
    await queue_mail(uow, reminder_mail(booking, specialist))
    return True


# --- the tick --------------------------------------------------------------------------------

Step = Callable[[UnitOfWork, int], Awaitable[object | None]]


class BookingClock:
    """Runs the steps over every due booking, each in its own unit of work."""

    def __init__(self, db: Database, config: ClockConfig) -> None:
        self.db = db
        self.config = config

    def _release_due(self, uow: UnitOfWork) -> Select[int]:
        cutoff = uow.clock.now() - self.config.dispute_window
        return (
            select(Booking.id)
            .join(Escrow, Escrow.booking_id == Booking.id)
            .where(
                Booking.status == BookingStatus.COMPLETED.value,
                Booking.slot_end <= cutoff,
                Escrow.status == EscrowStatus.HELD.value,
            )
            .order_by(Booking.id)
            .limit(1)
            .with_for_update(skip_locked=True, of=Booking)
        )

    async def _run(self, name: str, due: Callable[[UnitOfWork], Select[int]], step: Step) -> int:
        moved = 0
        tried: list[int] = []
        for _ in range(MAX_PER_STEP):
            async with self.db.uow() as uow:
                query = due(uow)
                if tried:
                    query = query.where(Booking.id.not_in(tried))
                booking_id = (await uow.session.execute(query)).scalar_one_or_none()
                if booking_id is None:
                    break
                tried.append(booking_id)
                try:
                    done = await step(uow, booking_id)
                    await uow.commit()
                except (AgentServerError, EscrowAlreadySettled) as exc:
                    log.warning(
                        "clock.step_failed",
                        step=name,
                        booking_id=booking_id,
                        error_type=type(exc).__name__,
                        error=str(exc),
                    )
                    continue
            if done:
                moved += 1
                log.info(f"clock.{name}", booking_id=booking_id)
        return moved

    async def tick(self) -> Tick:
        """One pass of every step; how many bookings each moved."""
        cfg = self.config
        policy = cfg.policy

        async def expire(uow: UnitOfWork, booking_id: int) -> Settled | None:
            return await expire_booking(uow, booking_id, ttl=cfg.pending_ttl, policy=policy)

        async def complete(uow: UnitOfWork, booking_id: int) -> Booking | None:
            return await auto_complete(uow, booking_id, after=cfg.auto_complete_after)

        async def release(uow: UnitOfWork, booking_id: int) -> Settlement | None:
            return await release_escrow(uow, booking_id, window=cfg.dispute_window, policy=policy)

        async def reminder(uow: UnitOfWork, booking_id: int) -> bool:
            return await remind(uow, booking_id)

        tick = Tick()
        tick.expired = await self._run(
            "expired",
            lambda uow: booking_clock.due_to_expire(uow.clock.now(), cfg.pending_ttl),
            expire,
        )
        tick.completed = await self._run(
            "completed",
            lambda uow: booking_clock.due_to_complete(uow.clock.now(), cfg.auto_complete_after),
            complete,
        )
        tick.released = await self._run("released", self._release_due, release)
        tick.reminded = await self._run(
            "reminded",
            lambda uow: booking_clock.due_for_reminder(uow.clock.now(), cfg.reminder_before),
            reminder,
        )
        return tick

    async def run(self, interval: float, stop: asyncio.Event | None = None) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set; a failing tick is logged
        and retried at the next one, never fatal."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:  # logged and retried: the clock must never stop serving
                log.warning("clock.failed", error_type=type(exc).__name__, error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


class Clocked(Protocol):
    """What the clock needs of the process's runtime."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def billing(self) -> BillingConfig: ...


@asynccontextmanager
async def start_clock(
    runtime: Clocked, *, standalone: bool = False
) -> AsyncIterator[BookingClock | None]:
    """Run the booking clock for the lifetime of the block: in ``serve`` beside the webhook
    worker (not when ``START_WORKER`` is off), in ``agent-server worker`` (``standalone``)
    always; never when ``CLOCK_INTERVAL`` is 0."""
    interval = runtime.settings.clock_interval
    if interval <= 0 or not (standalone or runtime.settings.start_worker):
        yield None
        return
    clock = BookingClock(
        runtime.db, ClockConfig.from_settings(runtime.settings, runtime.billing.prices.booking)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(clock.run(interval, stop), name="booking-clock")
    try:
        yield clock
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)
