"""Bookings on both backends: races settled by the database, lifecycle, history, idempotency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from agent_server.accounts.models import Agent
from agent_server.booking.availability import (
    REASON_BLACKOUT,
    REASON_FULL,
    REASON_NOTICE,
    REASON_OUTSIDE_HOURS,
    REASON_PAST,
    make_slot_id,
)
from agent_server.booking.models import Booking, BookingChange, CancelledBy, Schedule, Specialist
from agent_server.booking.schedules import ScheduleOwner, create_schedule, parse_schedule_input
from agent_server.booking.service import (
    REASON_INVALID_STATUS,
    REASON_NOT_ENDED,
    accept_booking,
    add_note,
    book_slot,
    booking_history,
    cancel_booking,
    complete_booking,
    get_booking,
    list_bookings,
    reject_booking,
    reschedule_booking,
)
from agent_server.events.models import OutboxEvent
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import (
    BookingConflict,
    Forbidden,
    IdempotencyMismatch,
    NotFound,
    ValidationFailed,
)
from agent_server.kernel.store import Database, make_engine
from agent_server.mail import OutboxMail

# The clock starts Monday 2026-03-02 08:00 UTC.
MON_9 = datetime(2026, 3, 2, 9, tzinfo=UTC)
WEEKDAYS_9_TO_12 = {d: [["09:00", "12:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


async def make_agents(db: Database, n: int = 1) -> list[int]:
    now = db.clock.now()
    async with db.uow() as uow:
        start = (await uow.session.execute(select(func.count(Agent.id)))).scalar_one()
        agents = [
            Agent(
                name=f"agent {start + i}",
                email=f"agent{start + i}@example.com",
                api_key_hash=f"hash-{start + i}",
                api_key_prefix="ak_",
                created_at=now,
                updated_at=now,
            )
            for i in range(n)
        ]
        uow.session.add_all(agents)
        await uow.session.flush()
        ids = [a.id for a in agents]
        await uow.commit()
    return ids


async def make_specialist(db: Database) -> int:
    now = db.clock.now()
    async with db.uow() as uow:
        count = (await uow.session.execute(select(func.count(Specialist.id)))).scalar_one()
        person = Specialist(
            name="Ada Lovelace",
            timezone="Europe/London",
            email=f"ada{count}@example.com",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(person)
        await uow.session.flush()
        await uow.commit()
        return person.id


async def make_schedule(db: Database, owner: ScheduleOwner, **fields: Any) -> int:
    raw: dict[str, Any] = {
        "timezone": "UTC",
        "weekly_hours": WEEKDAYS_9_TO_12,
        "price_amount": 50_000_000,
        "start_date": "2026-03-01",
    }
    raw.update(fields)
    async with db.uow() as uow:
        schedule = await create_schedule(uow, owner, parse_schedule_input(raw))
        await uow.commit()
        return schedule.id


async def specialist_schedule(db: Database, **fields: Any) -> tuple[int, int]:
    specialist = await make_specialist(db)
    return specialist, await make_schedule(db, ScheduleOwner.specialist(specialist), **fields)


async def book(db: Database, agent: int, slot_id: str, key: str | None = None) -> Booking:
    async with db.uow() as uow:
        booking = await book_slot(uow, agent_id=agent, slot_id=slot_id, idempotency_key=key)
        await uow.commit()
        return booking


async def holders(db: Database, schedule_id: int, start: datetime) -> list[Booking]:
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(Booking).where(
                Booking.schedule_id == schedule_id,
                Booking.slot_start == start,
                Booking.status.in_(["pending", "accepted", "completed"]),
            )
        )
        found = list(rows.scalars())
        await uow.commit()
        return found


async def count(db: Database, model: type[Any]) -> int:
    async with db.uow() as uow:
        return int((await uow.session.execute(select(func.count(model.id)))).scalar_one())


async def test_booking_a_free_slot_accepts_it_and_records_the_change(db: Database) -> None:
    specialist, schedule = await specialist_schedule(db)
    [agent] = await make_agents(db)
    booking = await book(db, agent, make_slot_id(schedule, MON_9))
    assert booking.status == "accepted"
    assert (booking.slot_start, booking.slot_end) == (MON_9, MON_9 + timedelta(hours=1))
    assert booking.specialist_id == specialist
    assert (booking.price_amount, booking.price_currency, booking.seat) == (50_000_000, "USD", 1)
    async with db.uow() as uow:
        history = (await booking_history(uow, [booking.id]))[booking.id]
        await uow.commit()  # keeps the loaded rows usable after the block
    assert [(c.actor, c.from_status, c.to_status) for c in history] == [("agent", None, "accepted")]


async def test_a_new_booking_is_the_stored_row_and_needs_no_orm_session(db: Database) -> None:
    """Booking reads its schedule and inserts its row straight through the driver: the
    booking it answers with holds every column as stored, and an accepted booking with its
    events, its history line and the specialist's mail needs no ORM session."""
    _, schedule = await specialist_schedule(db, label="Office hours")
    [agent] = await make_agents(db)
    async with db.uow() as uow:
        booking = await book_slot(
            uow, agent_id=agent, slot_id=make_slot_id(schedule, MON_9), idempotency_key="k-1"
        )
        assert not uow.has_session
        await uow.commit()
    columns = [c.name for c in Booking.__table__.c]
    async with db.uow() as uow:
        stored = await uow.session.get_one(Booking, booking.id)
        assert {c: getattr(booking, c) for c in columns} == {c: getattr(stored, c) for c in columns}
        assert stored.version == 1 and stored.notes == "" and stored.cancelled_by is None
        events = await uow.session.scalars(
            select(OutboxEvent.type).where(OutboxEvent.agent_id == agent).order_by(OutboxEvent.id)
        )
        assert list(events) == ["booking.created", "booking.confirmed"]
        mail = await uow.session.scalar(
            select(OutboxMail.body).order_by(OutboxMail.id.desc()).limit(1)
        )
        assert mail is not None and "Schedule: Office hours" in mail


async def test_pending_bookings_wait_for_the_specialist(db: Database) -> None:
    specialist, schedule = await specialist_schedule(db, auto_accept=False)
    a, b = await make_agents(db, 2)
    first = await book(db, a, make_slot_id(schedule, MON_9))
    second = await book(db, b, make_slot_id(schedule, MON_9 + timedelta(hours=1)))
    assert first.status == second.status == "pending"
    owner = ScheduleOwner.specialist(specialist)
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await accept_booking(uow, ScheduleOwner.specialist(specialist + 1), first.id)
        await accept_booking(uow, owner, first.id)
        await reject_booking(uow, owner, second.id, "not my field")
        await uow.commit()
    async with db.uow() as uow:
        with pytest.raises(BookingConflict) as err:
            await accept_booking(uow, owner, second.id)
        assert err.value.details["reason"] == REASON_INVALID_STATUS
        assert err.value.details["status"] == "rejected"
        history = await booking_history(uow, [first.id, second.id])
        await uow.commit()
    assert [c.to_status for c in history[first.id]] == ["pending", "accepted"]
    assert [c.to_status for c in history[second.id]] == ["pending", "rejected"]
    # A rejected booking frees its seat.
    assert (await book(db, a, make_slot_id(schedule, MON_9 + timedelta(hours=1)))).seat == 1


async def _race(db: Database, database_url: str, slot_id: str, agents: list[int]) -> list[Any]:
    """Every agent books the slot at once, each in its own unit of work (and connection)."""
    # pool_size + max_overflow: 50 connections on PostgreSQL, one per attempt.
    racing = Database(make_engine(database_url, pool_size=25), db.clock)

    async def attempt(agent: int) -> Any:
        async with racing.uow() as uow:
            try:
                booking = await book_slot(
                    uow, agent_id=agent, slot_id=slot_id, idempotency_key=f"race-{agent}"
                )
                await uow.commit()
                return booking.id
            except BookingConflict as exc:
                return exc

    try:
        return await asyncio.gather(*(attempt(a) for a in agents))
    finally:
        await racing.dispose()


async def test_fifty_concurrent_attempts_give_one_booking_and_49_conflicts(
    db: Database, database_url: str
) -> None:
    _, schedule = await specialist_schedule(db)
    agents = await make_agents(db, 50)
    results = await _race(db, database_url, make_slot_id(schedule, MON_9), agents)

    won = [r for r in results if isinstance(r, int)]
    lost = [r for r in results if isinstance(r, BookingConflict)]
    assert len(won) == 1
    assert len(lost) == 49
    assert {e.details["reason"] for e in lost} == {REASON_FULL}
    assert {e.details["next_available_slot"]["slot_id"] for e in lost} == {
        make_slot_id(schedule, MON_9 + timedelta(hours=1))
    }
    rows = await holders(db, schedule, MON_9)
    assert [b.id for b in rows] == won
    assert await count(db, Booking) == 1
    assert await count(db, BookingChange) == 1


async def test_capacity_three_gives_exactly_three_seats(db: Database, database_url: str) -> None:
    _, schedule = await specialist_schedule(db, capacity=3)
    agents = await make_agents(db, 12)
    results = await _race(db, database_url, make_slot_id(schedule, MON_9), agents)
    assert sum(isinstance(r, int) for r in results) == 3
    assert sum(isinstance(r, BookingConflict) for r in results) == 9
    rows = await holders(db, schedule, MON_9)
    assert sorted(b.seat for b in rows) == [1, 2, 3]
    assert len({b.booker_agent_id for b in rows}) == 3


async def test_the_seat_index_refuses_a_second_holder_but_not_a_canceled_one(
    db: Database,
) -> None:
    _, schedule = await specialist_schedule(db)
    a, b = await make_agents(db, 2)
    first = await book(db, a, make_slot_id(schedule, MON_9))
    now = db.clock.now()
    copy = {
        "schedule_id": schedule,
        "slot_start": MON_9,
        "slot_end": first.slot_end,
        "seat": 1,
        "created_at": now,
        "updated_at": now,
    }
    async with db.uow() as uow:
        uow.session.add(Booking(**copy, booker_agent_id=b, status="pending"))
        with pytest.raises(IntegrityError):
            await uow.session.flush()
    async with db.uow() as uow:
        uow.session.add(Booking(**copy, booker_agent_id=b, status="canceled"))
        await uow.session.flush()
        await uow.commit()


async def test_cancellation_frees_the_seat(db: Database) -> None:
    specialist, schedule = await specialist_schedule(db)
    a, b = await make_agents(db, 2)
    slot = make_slot_id(schedule, MON_9)
    first = await book(db, a, slot)
    with pytest.raises(BookingConflict) as err:
        await book(db, b, slot)
    assert err.value.details["reason"] == REASON_FULL

    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await cancel_booking(uow, first.id, CancelledBy.AGENT, b, "no_time")
        with pytest.raises(ValidationFailed) as bad:
            await cancel_booking(uow, first.id, CancelledBy.AGENT, a, "bored")
        assert bad.value.details["fields"][0]["field"] == "reason_code"
        canceled = await cancel_booking(
            uow, first.id, CancelledBy.SPECIALIST, specialist, "NotFeelingWell", "flu"
        )
        await uow.commit()
    assert canceled.status == "canceled"
    assert (canceled.cancelled_by, canceled.cancel_reason_code) == (
        "specialist",
        "not_feeling_well",
    )
    assert canceled.cancel_reason == "flu"

    second = await book(db, b, slot)
    assert (second.status, second.seat) == ("accepted", 1)
    async with db.uow() as uow:
        with pytest.raises(BookingConflict) as again:
            await cancel_booking(uow, first.id, CancelledBy.SYSTEM, None, "other")
    assert again.value.details["reason"] == REASON_INVALID_STATUS


async def test_completing_before_the_slot_ends_is_refused(db: Database, clock: FakeClock) -> None:
    specialist, schedule = await specialist_schedule(db)
    [agent] = await make_agents(db)
    booking = await book(db, agent, make_slot_id(schedule, MON_9))
    clock.set(MON_9 + timedelta(minutes=30))  # the session is under way
    async with db.uow() as uow:
        with pytest.raises(BookingConflict) as err:
            await complete_booking(uow, booking.id, CancelledBy.SPECIALIST, specialist)
        assert err.value.details["reason"] == REASON_NOT_ENDED
        assert err.value.details["ends_at"] == "2026-03-02T10:00:00Z"
        with pytest.raises(BookingConflict):
            await add_note(uow, booking.id, CancelledBy.AGENT, agent, "went well")
    clock.set(MON_9 + timedelta(hours=1))
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await complete_booking(uow, booking.id, CancelledBy.SPECIALIST, specialist + 1)
        done = await complete_booking(uow, booking.id, CancelledBy.SPECIALIST, specialist)
        await add_note(uow, booking.id, CancelledBy.AGENT, agent, "went well")
        await add_note(uow, booking.id, CancelledBy.SPECIALIST, specialist, "send slides")
        await uow.commit()
    assert done.status == "completed"
    assert done.completed_at == MON_9 + timedelta(hours=1)
    async with db.uow() as uow:
        stored = await get_booking(uow, booking.id, agent_id=agent)
        history = (await booking_history(uow, [booking.id]))[booking.id]
        await uow.commit()
    assert stored.notes == "went well\nsend slides"
    assert [(c.actor, c.to_status, c.note) for c in history[1:]] == [
        ("specialist", "completed", "completed"),
        ("agent", "completed", "went well"),
        ("specialist", "completed", "send slides"),
    ]


async def test_reschedule_moves_the_booking_and_keeps_the_history(db: Database) -> None:
    _, schedule = await specialist_schedule(db)
    a, b = await make_agents(db, 2)
    old = await book(db, a, make_slot_id(schedule, MON_9))
    later = MON_9 + timedelta(days=1, hours=2)  # Tuesday 11:00
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await reschedule_booking(uow, b, old.id, make_slot_id(schedule, later))
        with pytest.raises(BookingConflict) as err:
            await reschedule_booking(
                uow, a, old.id, make_slot_id(schedule, MON_9 + timedelta(hours=5))
            )
        assert err.value.details["reason"] == REASON_OUTSIDE_HOURS
        new = await reschedule_booking(uow, a, old.id, make_slot_id(schedule, later))
        await uow.commit()

    async with db.uow() as uow:
        old_row = await get_booking(uow, old.id, agent_id=a)
        new_row = await get_booking(uow, new.id, agent_id=a)
        history = await booking_history(uow, [old.id, new.id])
        await uow.commit()
    assert (old_row.status, old_row.cancel_reason_code) == ("canceled", "rescheduled")
    assert old_row.rescheduled_to_id == new_row.id
    assert new_row.rescheduled_from_id == old_row.id
    assert (new_row.status, new_row.slot_start, new_row.price_amount) == (
        "accepted",
        later,
        50_000_000,
    )
    assert [c.to_status for c in history[old.id]] == ["accepted", "canceled"]
    assert [c.to_status for c in history[new.id]] == ["accepted"]
    # The old slot is free again.
    assert (await book(db, b, make_slot_id(schedule, MON_9))).seat == 1


async def test_the_same_idempotency_key_replays_the_first_booking(db: Database) -> None:
    _, schedule = await specialist_schedule(db)
    [agent] = await make_agents(db)
    slot = make_slot_id(schedule, MON_9)
    first = await book(db, agent, slot, key="k-1")
    again = await book(db, agent, slot, key="k-1")
    assert again.id == first.id
    assert await count(db, Booking) == 1
    with pytest.raises(IdempotencyMismatch) as err:
        await book(db, agent, make_slot_id(schedule, MON_9 + timedelta(hours=1)), key="k-1")
    assert err.value.details["retryable"] is False
    assert await count(db, Booking) == 1
    # Another key books another seat (and here, finds the slot full).
    with pytest.raises(BookingConflict):
        await book(db, agent, slot, key="k-2")


@pytest.mark.parametrize(
    ("start", "reason", "next_start"),
    [
        # Monday 13:00 is after hours: Tuesday 09:00 is next.
        (MON_9 + timedelta(hours=4), REASON_OUTSIDE_HOURS, MON_9 + timedelta(days=1)),
        # Wednesday is blacked out: Thursday 09:00 is next.
        (MON_9 + timedelta(days=2), REASON_BLACKOUT, MON_9 + timedelta(days=3)),
        # At 08:00, 09:00 is within the 120 minutes' notice: 10:00 is next.
        (MON_9, REASON_NOTICE, MON_9 + timedelta(hours=1)),
        # Last Friday has passed.
        (MON_9 - timedelta(days=3), REASON_PAST, MON_9 + timedelta(hours=1)),
    ],
)
async def test_unbookable_slots_name_the_reason_and_the_next_free_slot(
    db: Database, start: datetime, reason: str, next_start: datetime
) -> None:
    _, schedule = await specialist_schedule(
        db, blackout_dates=["2026-03-04"], min_notice_minutes=120, start_date="2026-02-01"
    )
    [agent] = await make_agents(db)
    with pytest.raises(BookingConflict) as err:
        await book(db, agent, make_slot_id(schedule, start))
    assert err.value.details["reason"] == reason
    nxt = err.value.details["next_available_slot"]
    assert nxt["slot_id"] == make_slot_id(schedule, next_start)
    assert nxt["start"] == next_start.isoformat().replace("+00:00", "Z")
    assert await count(db, Booking) == 0


async def test_agents_cannot_book_their_own_schedule_or_a_private_one(db: Database) -> None:
    owner, other = await make_agents(db, 2)
    own = await make_schedule(db, ScheduleOwner.agent(owner))
    hidden = await make_schedule(db, ScheduleOwner.agent(owner), private=True)
    with pytest.raises(Forbidden):
        await book(db, owner, make_slot_id(own, MON_9))
    with pytest.raises(NotFound):
        await book(db, other, make_slot_id(hidden, MON_9))
    with pytest.raises(NotFound):
        await book(db, other, make_slot_id(own + 1000, MON_9))
    with pytest.raises(ValidationFailed):
        await book(db, other, "not-a-slot")
    booking = await book(db, other, make_slot_id(own, MON_9))
    # The owning agent sees bookings on its schedule, and cancels them as the provider.
    async with db.uow() as uow:
        page = await list_bookings(uow, agent_id=owner)
        assert [b.id for b in page.items] == [booking.id]
        await cancel_booking(uow, booking.id, CancelledBy.SPECIALIST, owner, "no_time")
        await uow.commit()


async def test_other_agents_cannot_read_a_booking(db: Database) -> None:
    specialist, schedule = await specialist_schedule(db)
    a, b = await make_agents(db, 2)
    booking = await book(db, a, make_slot_id(schedule, MON_9))
    async with db.uow() as uow:
        assert (await get_booking(uow, booking.id, agent_id=a)).id == booking.id
        assert (await get_booking(uow, booking.id, specialist_id=specialist)).id == booking.id
        with pytest.raises(Forbidden):
            await get_booking(uow, booking.id, agent_id=b)
        with pytest.raises(NotFound):
            await get_booking(uow, booking.id + 99, agent_id=a)


async def test_list_bookings_pages_newest_first_with_a_cursor(db: Database) -> None:
    specialist, schedule = await specialist_schedule(db, capacity=2)
    a, b = await make_agents(db, 2)
    mine = [
        (await book(db, a, make_slot_id(schedule, MON_9 + timedelta(hours=h)))).id for h in range(3)
    ]
    theirs = (await book(db, b, make_slot_id(schedule, MON_9))).id
    async with db.uow() as uow:
        await cancel_booking(uow, mine[1], CancelledBy.AGENT, a, "other")
        await uow.commit()
    async with db.uow() as uow:
        first = await list_bookings(uow, agent_id=a, limit=2)
        assert [x.id for x in first.items] == [mine[2], mine[1]]
        assert first.next_cursor is not None
        rest = await list_bookings(uow, agent_id=a, limit=2, cursor=first.next_cursor)
        assert [x.id for x in rest.items] == [mine[0]]
        assert rest.next_cursor is None
        accepted = await list_bookings(uow, agent_id=a, status="accepted")
        assert [x.id for x in accepted.items] == [mine[2], mine[0]]
        everyone = await list_bookings(uow, specialist_id=specialist)
        assert [x.id for x in everyone.items] == [theirs, *reversed(mine)]
        with pytest.raises(ValidationFailed):
            await list_bookings(uow, agent_id=a, cursor="garbage!")
        with pytest.raises(ValidationFailed):
            await list_bookings(uow, agent_id=a, status="lost")


async def test_freeing_a_seat_lowers_the_search_bound_of_the_next_free_slot(db: Database) -> None:
    _, schedule = await specialist_schedule(db)
    a, b = await make_agents(db, 2)
    first = await book(db, a, make_slot_id(schedule, MON_9))
    second = await book(db, b, make_slot_id(schedule, MON_9 + timedelta(days=1)))
    later = MON_9 + timedelta(days=7)
    async with db.uow() as uow:
        await uow.session.execute(
            update(Schedule).where(Schedule.id == schedule).values(next_free_at=later)
        )
        await cancel_booking(uow, second.id, CancelledBy.AGENT, b, "no_time")
        await uow.commit()
    assert await next_free_at(db, schedule) == MON_9 + timedelta(days=1)
    async with db.uow() as uow:
        await cancel_booking(uow, first.id, CancelledBy.SYSTEM, None, "other")
        await uow.commit()
    assert await next_free_at(db, schedule) == MON_9


async def next_free_at(db: Database, schedule_id: int) -> datetime | None:
    async with db.uow() as uow:
        value = await uow.session.scalar(
            select(Schedule.next_free_at).where(Schedule.id == schedule_id)
        )
        return value
