"""Booking changes write exactly their events, in the change's own transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from billing_support import make_agent
from events_support import outbox, schedule, specialist

from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import CancelledBy
from agent_server.booking.schedules import ScheduleOwner
from agent_server.booking.service import (
    accept_booking,
    book_slot,
    cancel_booking,
    complete_booking,
    reject_booking,
    reschedule_booking,
)
from agent_server.events.models import OutboxEvent
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import BookingConflict
from agent_server.kernel.store import Database

# The clock starts Monday 2026-03-02 08:00 UTC.
TUE_9 = datetime(2026, 3, 3, 9, tzinfo=UTC)


def slot(schedule_id: int, hour: int, day: datetime = TUE_9) -> str:
    return make_slot_id(schedule_id, day.replace(hour=hour))


async def book(db: Database, agent: int, slot_id: str, key: str | None = None) -> int:
    async with db.uow() as uow:
        booking = await book_slot(uow, agent_id=agent, slot_id=slot_id, idempotency_key=key)
        await uow.commit()
        return booking.id


def summary(events: list[OutboxEvent]) -> list[tuple[str, int, int, str, str]]:
    """(type, recipient, booking id, booking status, role) of each event, oldest first."""
    return [
        (
            e.type,
            e.agent_id,
            e.payload["booking"]["id"],
            e.payload["booking"]["status"],
            e.payload["role"],
        )
        for e in events
    ]


async def new_events(db: Database, seen: int) -> list[OutboxEvent]:
    return (await outbox(db))[seen:]


async def test_each_booking_change_emits_exactly_its_event(db: Database, clock: FakeClock) -> None:
    booker = await make_agent(db, name="booker")
    expert = await specialist(db)
    auto = await schedule(db, ScheduleOwner.specialist(expert), auto_accept=True)
    manual = await schedule(db, ScheduleOwner.specialist(expert), auto_accept=False)

    b1 = await book(db, booker, slot(auto, 9))
    assert summary(await outbox(db)) == [
        ("booking.created", booker, b1, "accepted", "booker"),
        ("booking.confirmed", booker, b1, "accepted", "booker"),
    ]

    b2 = await book(db, booker, slot(manual, 9))
    assert summary(await new_events(db, 2)) == [
        ("booking.created", booker, b2, "pending", "booker")
    ]

    async with db.uow() as uow:
        await accept_booking(uow, ScheduleOwner.specialist(expert), b2)
        await uow.commit()
    assert summary(await new_events(db, 3)) == [
        ("booking.confirmed", booker, b2, "accepted", "booker")
    ]

    b3 = await book(db, booker, slot(manual, 10))
    async with db.uow() as uow:
        await reject_booking(uow, ScheduleOwner.specialist(expert), b3, "fully booked that day")
        await uow.commit()
    rejected = await new_events(db, 4)
    assert summary(rejected) == [
        ("booking.created", booker, b3, "pending", "booker"),
        ("booking.cancelled", booker, b3, "rejected", "booker"),
    ]

    async with db.uow() as uow:
        await cancel_booking(uow, b2, CancelledBy.AGENT, booker, "no_time", "clash")
        await uow.commit()
    cancelled = await new_events(db, 6)
    assert summary(cancelled) == [("booking.cancelled", booker, b2, "canceled", "booker")]
    booking = cancelled[0].payload["booking"]
    assert (booking["canceled_by"], booking["cancel_reason_code"]) == ("agent", "no_time")

    async with db.uow() as uow:
        moved = await reschedule_booking(uow, booker, b1, slot(auto, 11))
        await uow.commit()
    rescheduled = await new_events(db, 7)
    assert summary(rescheduled) == [("booking.rescheduled", booker, moved.id, "accepted", "booker")]
    previous = rescheduled[0].payload["previous_booking"]
    assert (previous["id"], previous["status"]) == (b1, "canceled")
    assert previous["rescheduled_to_id"] == moved.id
    assert rescheduled[0].payload["booking"]["start"] == "2026-03-03T11:00:00Z"

    clock.set(TUE_9.replace(hour=12, minute=30))
    async with db.uow() as uow:
        await complete_booking(uow, moved.id, CancelledBy.SPECIALIST, expert)
        await uow.commit()
    assert summary(await new_events(db, 8)) == [
        ("booking.completed", booker, moved.id, "completed", "booker")
    ]

    events = await outbox(db)
    assert len({e.event_id for e in events}) == len(events) == 9
    assert all(e.event_id.startswith("evt_") and e.status == "pending" for e in events)


async def test_a_rolled_back_or_refused_booking_emits_nothing(db: Database) -> None:
    booker, other = await make_agent(db, name="one"), await make_agent(db, name="two")
    expert = await specialist(db)
    auto = await schedule(db, ScheduleOwner.specialist(expert), auto_accept=True)

    async with db.uow() as uow:
        booking = await book_slot(uow, agent_id=booker, slot_id=slot(auto, 9), idempotency_key=None)
        assert booking.id is not None
        # No commit: the block ends and rolls the booking back.
    assert await outbox(db) == []

    first = await book(db, booker, slot(auto, 10), key="k1")
    assert len(await outbox(db)) == 2
    assert await book(db, booker, slot(auto, 10), key="k1") == first  # an idempotent replay
    with pytest.raises(BookingConflict):
        await book(db, other, slot(auto, 10))  # the seat is taken
    async with db.uow() as uow:
        with pytest.raises(BookingConflict):
            await complete_booking(uow, first, CancelledBy.AGENT, booker)  # not ended yet
    assert len(await outbox(db)) == 2


async def test_the_agent_owning_the_schedule_hears_of_its_bookings_too(db: Database) -> None:
    provider = await make_agent(db, name="provider")
    booker = await make_agent(db, name="booker")
    own = await schedule(db, ScheduleOwner.agent(provider), auto_accept=False)

    booking = await book(db, booker, slot(own, 9))
    async with db.uow() as uow:
        await accept_booking(uow, ScheduleOwner.agent(provider), booking)
        await uow.commit()

    assert summary(await outbox(db)) == [
        ("booking.created", booker, booking, "pending", "booker"),
        ("booking.created", provider, booking, "pending", "provider"),
        ("booking.confirmed", booker, booking, "accepted", "booker"),
        ("booking.confirmed", provider, booking, "accepted", "provider"),
    ]
