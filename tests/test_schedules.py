"""Schedules on both backends: validation, ownership, privacy, soft delete, availability."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from agent_server.accounts.models import Agent
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import Booking, Schedule, Specialist
from agent_server.booking.schedules import (
    ScheduleOwner,
    create_schedule,
    delete_schedule,
    get_availability,
    get_schedule,
    get_specialist_availability,
    list_schedules,
    parse_schedule_input,
    parse_schedule_update,
    update_schedule,
    usd_value,
)
from agent_server.booking.service import book_slot
from agent_server.kernel.errors import Forbidden, NotFound, ValidationFailed
from agent_server.kernel.store import Database

MON = datetime(2026, 3, 2, tzinfo=UTC)  # the clock starts at 08:00 this Monday
GOOD: dict[str, Any] = {
    "label": "Tax advice",
    "timezone": "Europe/Berlin",
    "weekly_hours": {"mon": [["09:00", "12:00"]], "tue": [["09:00", "12:00"]]},
    "price_amount": 40_000_000,
    "start_date": "2026-03-01",
}


async def make_agent(db: Database, name: str) -> int:
    now = db.clock.now()
    async with db.uow() as uow:
        agent = Agent(
            name=name,
            email=f"{name}@example.com",
            api_key_hash=f"hash-{name}",
            api_key_prefix="ak_",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(agent)
        await uow.session.flush()
        await uow.commit()
        return agent.id


async def make_specialist(db: Database) -> int:
    now = db.clock.now()
    async with db.uow() as uow:
        person = Specialist(
            name="Grace Hopper",
            timezone="America/New_York",
            email="grace@example.com",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(person)
        await uow.session.flush()
        await uow.commit()
        return person.id


async def publish(db: Database, owner: ScheduleOwner, raw: dict[str, Any]) -> Schedule:
    """What a transport does: parse the request, create, commit."""
    async with db.uow() as uow:
        schedule = await create_schedule(uow, owner, parse_schedule_input(raw))
        await uow.commit()
        return schedule


async def change(
    db: Database, owner: ScheduleOwner, schedule_id: int, raw: dict[str, Any]
) -> Schedule:
    async with db.uow() as uow:
        schedule = await update_schedule(uow, owner, schedule_id, parse_schedule_update(raw))
        await uow.commit()
        return schedule


async def stored(db: Database, schedule_id: int) -> Schedule:
    async with db.uow() as uow:
        row = await uow.session.get(Schedule, schedule_id)
        assert row is not None
        await uow.commit()
        return row


async def schedule_count(db: Database) -> int:
    async with db.uow() as uow:
        return int((await uow.session.execute(select(func.count(Schedule.id)))).scalar_one())


async def test_create_stores_normalized_hours_and_the_usd_price(db: Database) -> None:
    agent = await make_agent(db, "alpha")
    schedule = await publish(
        db,
        ScheduleOwner.agent(agent),
        {
            "timezone": "Asia/Tokyo",
            "weekly_hours": {"Monday": [["13:00", "24:00"], ["09:00", "12:00"]], "FRI": []},
            "blackout_dates": ["2026-05-05", "2026-05-04", "2026-05-05"],
            "overrides": {"2026-04-29": [["10:00", "11:00"]]},
            "price_amount": 10**7,  # 0.01 ETH in gwei
            "price_currency": "eth",
            "skills": [" tax ", "tax", "accounting"],
        },
    )
    row = await stored(db, schedule.id)
    assert row.agent_id == agent and row.specialist_id is None
    assert row.weekly_hours == {"mon": [["09:00", "12:00"], ["13:00", "24:00"]], "fri": []}
    assert row.blackout_dates == ["2026-05-04", "2026-05-05"]
    assert row.overrides == {"2026-04-29": [["10:00", "11:00"]]}
    assert (row.price_currency, row.price_usd_micros) == ("ETH", 30_000_000)
    assert row.skills == ["tax", "accounting"]
    # Without a start date the schedule starts today in its own zone (08:00 UTC = 17:00 JST).
    assert row.start_date == date(2026, 3, 2)
    assert (row.capacity, row.slot_minutes, row.private, row.auto_accept) == (1, 60, False, True)


def test_usd_value_of_each_currency() -> None:
    assert usd_value(1_500_000, "USD") == 1_500_000
    assert usd_value(1_500_000, "USDC") == 1_500_000
    assert usd_value(10**8, "BTC") == 60_000_000_000
    assert usd_value(10**9, "ETH", {"ETH": 2_500_000_000}) == 2_500_000_000  # 1 ETH in gwei
    assert usd_value(12 * 10**9, "ETH") == 36_000_000_000  # 12 ETH at 3,000 USD


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"timezone": "Europe/Atlantis"}, "timezone"),
    ({"start_date": "2026-05-01", "end_date": "2026-04-30"}, "end_date"),
    ({"slot_minutes": 10}, "slot_minutes"),
    ({"weekly_hours": {"mon": [["09:00", "12:00"], ["11:30", "13:00"]]}}, "weekly_hours.mon"),
    (
        {"weekly_hours": {"tue": [["09:00", "10:00"], ["12:00", "11:00"]]}},
        "weekly_hours.tue[1]",
    ),
    ({"weekly_hours": {"wed": [["9am", "10:00"]]}}, "weekly_hours.wed[0]"),
    ({"weekly_hours": {"caturday": [["09:00", "10:00"]]}}, "weekly_hours.caturday"),
    ({"price_amount": -1}, "price_amount"),
    ({"price_amount": 1.5}, "price_amount"),
    ({"price_currency": "EUR"}, "price_currency"),
    ({"capacity": 0}, "capacity"),
    ({"overrides": {"2026-02-30": []}}, "overrides.2026-02-30"),
    ({"blackout_dates": ["2026-03-04", "soon"]}, "blackout_dates[1]"),
    ({"buffer_minutes": -5}, "buffer_minutes"),
    ({"colour": "blue"}, "colour"),
]


async def test_bad_input_names_the_field_and_writes_nothing(db: Database) -> None:
    agent = await make_agent(db, "alpha")
    for change_, field in BAD_INPUTS:
        with pytest.raises(ValidationFailed) as err:
            await publish(db, ScheduleOwner.agent(agent), {**GOOD, **change_})
        body = err.value.to_body()["error"]
        assert body["code"] == "VALIDATION_ERROR"
        assert [f["field"] for f in body["details"]["fields"]] == [field], change_
        assert body["details"]["fields"][0]["message"]
    assert await schedule_count(db) == 0


def test_every_bad_field_is_listed_at_once() -> None:
    bad = {
        **GOOD,
        "timezone": "Nowhere/Special",
        "slot_minutes": 5,
        "price_amount": -3,
        "weekly_hours": {"mon": [["09:00", "11:00"], ["10:00", "12:00"]]},
    }
    with pytest.raises(ValidationFailed) as err:
        parse_schedule_input(bad)
    fields = {f["field"] for f in err.value.details["fields"]}
    assert fields == {"timezone", "slot_minutes", "price_amount", "weekly_hours.mon"}


async def test_an_end_date_before_today_needs_a_start_date(db: Database) -> None:
    agent = await make_agent(db, "alpha")
    raw = {k: v for k, v in GOOD.items() if k != "start_date"}
    with pytest.raises(ValidationFailed) as err:
        # 08:00 UTC is still 1 March in Honolulu; the end is before that.
        await publish(
            db,
            ScheduleOwner.agent(agent),
            {**raw, "timezone": "Pacific/Honolulu", "end_date": "2026-02-28"},
        )
    assert err.value.details["fields"][0]["field"] == "end_date"
    schedule = await publish(
        db,
        ScheduleOwner.agent(agent),
        {**raw, "timezone": "Pacific/Honolulu", "end_date": "2026-03-01"},
    )
    assert (schedule.start_date, schedule.end_date) == (date(2026, 3, 1), date(2026, 3, 1))


async def test_updates_change_only_given_fields_and_bad_ones_change_nothing(db: Database) -> None:
    agent = await make_agent(db, "alpha")
    owner = ScheduleOwner.agent(agent)
    schedule = await publish(db, owner, {**GOOD, "end_date": "2026-06-30"})
    await change(db, owner, schedule.id, {"price_amount": 2 * 10**6, "price_currency": "USDT"})
    row = await stored(db, schedule.id)
    assert (row.price_amount, row.price_currency, row.price_usd_micros) == (
        2_000_000,
        "USDT",
        2_000_000,
    )
    assert row.weekly_hours == GOOD["weekly_hours"] and row.end_date == date(2026, 6, 30)

    bad_changes: list[tuple[dict[str, Any], str]] = [
        ({"end_date": "2026-02-01"}, "end_date"),  # before the stored start date
        ({"slot_minutes": 14}, "slot_minutes"),
        ({"timezone": None}, "timezone"),
    ]
    for raw, field in bad_changes:
        with pytest.raises(ValidationFailed) as err:
            await change(db, owner, schedule.id, raw)
        assert err.value.details["fields"][0]["field"] == field
    again = await stored(db, schedule.id)
    assert (again.end_date, again.slot_minutes, again.timezone) == (
        date(2026, 6, 30),
        60,
        "Europe/Berlin",
    )
    await change(db, owner, schedule.id, {"end_date": None, "label": "Open-ended"})
    cleared = await stored(db, schedule.id)
    assert (cleared.end_date, cleared.label, cleared.price_amount) == (
        None,
        "Open-ended",
        2_000_000,
    )


async def test_only_the_owner_changes_or_deletes_a_schedule(db: Database) -> None:
    alpha, beta = await make_agent(db, "alpha"), await make_agent(db, "beta")
    specialist = await make_specialist(db)
    mine = await publish(db, ScheduleOwner.agent(alpha), GOOD)
    theirs = await publish(db, ScheduleOwner.specialist(specialist), GOOD)
    with pytest.raises(Forbidden):
        await change(db, ScheduleOwner.agent(beta), mine.id, {"label": "stolen"})
    with pytest.raises(Forbidden):
        await change(db, ScheduleOwner.agent(alpha), theirs.id, {"label": "stolen"})
    with pytest.raises(NotFound):
        await change(db, ScheduleOwner.agent(alpha), theirs.id + 100, {"label": "x"})
    async with db.uow() as uow:
        with pytest.raises(Forbidden):
            await delete_schedule(uow, ScheduleOwner.agent(beta), mine.id)
    with pytest.raises(NotFound):
        await publish(db, ScheduleOwner.agent(alpha + 100), GOOD)
    assert (await stored(db, mine.id)).label == "Tax advice"
    assert (await stored(db, theirs.id)).deleted_at is None


async def test_private_schedules_are_visible_only_to_their_owner(db: Database) -> None:
    alpha, beta = await make_agent(db, "alpha"), await make_agent(db, "beta")
    hidden = await publish(db, ScheduleOwner.agent(alpha), {**GOOD, "private": True})
    window = (MON, MON + timedelta(days=7))
    async with db.uow() as uow:
        slots = await get_availability(uow, hidden.id, *window, viewer_agent_id=alpha)
        assert [s.slot_id for s in slots][:2] == [
            make_slot_id(hidden.id, datetime(2026, 3, 2, 8, tzinfo=UTC)),
            make_slot_id(hidden.id, datetime(2026, 3, 2, 9, tzinfo=UTC)),
        ]
        assert len(slots) == 6
        with pytest.raises(NotFound):
            await get_availability(uow, hidden.id, *window, viewer_agent_id=beta)
        with pytest.raises(NotFound):
            await get_availability(uow, hidden.id, *window)
        with pytest.raises(NotFound):
            await get_schedule(uow, hidden.id, ScheduleOwner.agent(beta))
        assert (await get_schedule(uow, hidden.id, ScheduleOwner.agent(alpha))).id == hidden.id


async def test_availability_windows_are_checked(db: Database) -> None:
    alpha = await make_agent(db, "alpha")
    schedule = await publish(db, ScheduleOwner.agent(alpha), GOOD)
    async with db.uow() as uow:
        for start, end, field in [
            (MON, MON + timedelta(days=63), "window_end"),
            (MON, MON, "window_end"),
            (MON.replace(tzinfo=None), MON + timedelta(days=1), "window_start"),
        ]:
            with pytest.raises(ValidationFailed) as err:
                await get_availability(uow, schedule.id, start, end)
            assert err.value.details["fields"][0]["field"] == field
        assert await get_availability(uow, schedule.id, MON, MON + timedelta(days=62))


async def test_availability_counts_taken_seats(db: Database) -> None:
    alpha, beta = await make_agent(db, "alpha"), await make_agent(db, "beta")
    schedule = await publish(
        db, ScheduleOwner.agent(alpha), {**GOOD, "capacity": 2, "timezone": "UTC"}
    )
    nine = datetime(2026, 3, 2, 9, tzinfo=UTC)
    async with db.uow() as uow:
        await book_slot(
            uow, agent_id=beta, slot_id=make_slot_id(schedule.id, nine), idempotency_key=None
        )
        await uow.commit()
    async with db.uow() as uow:
        slots = await get_availability(uow, schedule.id, MON, MON + timedelta(days=1))
    assert [(s.start.hour, s.seats_left) for s in slots] == [(9, 1), (10, 2), (11, 2)]


async def test_deleted_schedules_disappear_but_their_bookings_stay(db: Database) -> None:
    alpha, beta = await make_agent(db, "alpha"), await make_agent(db, "beta")
    owner = ScheduleOwner.agent(alpha)
    schedule = await publish(db, owner, GOOD)
    keep = await publish(db, owner, {**GOOD, "label": "Second"})
    slot = make_slot_id(schedule.id, datetime(2026, 3, 3, 8, tzinfo=UTC))
    async with db.uow() as uow:
        booking = await book_slot(uow, agent_id=beta, slot_id=slot, idempotency_key=None)
        await uow.commit()
    async with db.uow() as uow:
        await delete_schedule(uow, owner, schedule.id)
        await uow.commit()
    async with db.uow() as uow:
        with pytest.raises(NotFound):
            await get_schedule(uow, schedule.id, owner)
        with pytest.raises(NotFound):
            await get_availability(uow, schedule.id, MON, MON + timedelta(days=1))
        with pytest.raises(NotFound):
            await book_slot(
                uow, agent_id=beta, slot_id=slot.replace("T08", "T09"), idempotency_key=None
            )
        with pytest.raises(NotFound):
            await delete_schedule(uow, owner, schedule.id)
        page = await list_schedules(uow, owner)
        assert [s.id for s in page.items] == [keep.id]
        kept = await uow.session.get(Booking, booking.id)
        assert kept is not None and kept.status == "accepted"


async def test_list_schedules_pages_newest_first(db: Database) -> None:
    alpha, beta = await make_agent(db, "alpha"), await make_agent(db, "beta")
    ids = [
        (await publish(db, ScheduleOwner.agent(alpha), {**GOOD, "label": f"s{i}"})).id
        for i in range(5)
    ]
    await publish(db, ScheduleOwner.agent(beta), GOOD)
    async with db.uow() as uow:
        first = await list_schedules(uow, ScheduleOwner.agent(alpha), page=1, per_page=2)
        last = await list_schedules(uow, ScheduleOwner.agent(alpha), page=3, per_page=2)
        assert [s.id for s in first.items] == ids[::-1][:2]
        assert (first.total, first.has_more) == (5, True)
        assert [s.id for s in last.items] == [ids[0]]
        assert last.has_more is False
        with pytest.raises(ValidationFailed):
            await list_schedules(uow, ScheduleOwner.agent(alpha), page=0)


async def test_a_specialists_availability_merges_its_public_schedules(db: Database) -> None:
    specialist = await make_specialist(db)
    owner = ScheduleOwner.specialist(specialist)
    utc_hours = {**GOOD, "timezone": "UTC"}
    a = await publish(db, owner, {**utc_hours, "weekly_hours": {"mon": [["09:00", "10:00"]]}})
    b = await publish(db, owner, {**utc_hours, "weekly_hours": {"mon": [["10:00", "11:00"]]}})
    await publish(db, owner, {**utc_hours, "private": True})
    async with db.uow() as uow:
        slots = await get_specialist_availability(uow, specialist, MON, MON + timedelta(days=1))
        with pytest.raises(NotFound):
            await get_specialist_availability(uow, specialist + 1, MON, MON + timedelta(days=1))
    assert [(s.schedule_id, s.start.hour) for s in slots] == [(a.id, 9), (b.id, 10)]


async def test_changing_hours_forgets_the_search_bound_but_a_new_label_keeps_it(
    db: Database,
) -> None:
    alpha = await make_agent(db, "alpha")
    owner = ScheduleOwner.agent(alpha)
    schedule = await publish(db, owner, GOOD)
    bound = datetime(2026, 3, 2, 8, tzinfo=UTC)
    async with db.uow() as uow:
        await uow.session.execute(
            update(Schedule).where(Schedule.id == schedule.id).values(next_free_at=bound)
        )
        await uow.commit()
    await change(db, owner, schedule.id, {"label": "Renamed", "price_amount": 1})
    assert (await stored(db, schedule.id)).next_free_at == bound
    await change(db, owner, schedule.id, {"blackout_dates": ["2026-03-02"]})
    assert (await stored(db, schedule.id)).next_free_at is None


async def test_a_search_by_days_and_hours_finds_a_schedule_at_the_hours_it_was_changed_to(
    db: Database,
) -> None:
    """Search leaves out schedules whose stored week blocks miss the days and hours asked:
    every write of the hours keeps those blocks, so a schedule moved to the evening, or
    opened on a Saturday by an override, is found there at once and no longer at its old
    hours."""
    from agent_server.booking.search import SearchQuery, search_specialists

    specialist = await make_specialist(db)
    owner = ScheduleOwner.specialist(specialist)
    schedule = await publish(
        db,
        owner,
        {**GOOD, "weekly_hours": {"mon": [["09:00", "10:00"]]}, "slot_minutes": 60},
    )

    async def found(**asked: Any) -> bool:
        query = {"timezone": "Europe/Berlin", "date_from": "2026-03-07", **asked}
        async with db.uow() as uow:
            page = await search_specialists(uow, SearchQuery.parse(query), now=db.clock.now())
            await uow.commit()
        return [item.id for item in page.items] == [specialist]

    morning = {"days_of_week": ["mon"], "hours_from": "09:00", "hours_to": "10:00"}
    evening = {"days_of_week": ["mon"], "hours_from": "18:00", "hours_to": "19:00"}
    saturday = {"days_of_week": ["sat"], "hours_from": "10:00", "hours_to": "11:00"}
    assert await found(**morning)
    assert not await found(**evening)
    assert not await found(**saturday)

    await change(db, owner, schedule.id, {"weekly_hours": {"mon": [["18:00", "19:00"]]}})
    assert await found(**evening)
    assert not await found(**morning)

    await change(db, owner, schedule.id, {"overrides": {"2026-03-07": [["10:00", "11:00"]]}})
    assert await found(**saturday)
    assert await found(**evening)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_two_concurrent_updates_of_one_schedule_keep_its_week_blocks_whole(
    db: Database, database_url: str
) -> None:
    """Two servers change one schedule at once, one its weekly hours and one its overrides:
    the second waits for the first and derives its columns from the first's result, so the
    stored week blocks hold both changes (search finds the schedule at either)."""
    import asyncio

    from agent_server.booking.availability import ScheduleSpec, start_blocks
    from agent_server.kernel.store import make_engine

    specialist = await make_specialist(db)
    owner = ScheduleOwner.specialist(specialist)
    schedule = await publish(db, owner, {**GOOD, "weekly_hours": {"mon": [["09:00", "10:00"]]}})
    other = Database(make_engine(database_url), db.clock)
    try:
        async with db.uow() as first:
            await update_schedule(
                first,
                owner,
                schedule.id,
                parse_schedule_update({"weekly_hours": {"mon": [["18:00", "19:00"]]}}),
            )
            second = asyncio.create_task(
                change(
                    other, owner, schedule.id, {"overrides": {"2026-03-07": [["10:00", "11:00"]]}}
                )
            )
            await asyncio.sleep(0.5)
            assert not second.done()  # it waits for the first change to commit
            await first.commit()
        await asyncio.wait_for(second, timeout=30)
    finally:
        await other.dispose()
    row = await stored(db, schedule.id)
    assert row.weekly_hours == {"mon": [["18:00", "19:00"]]}
    assert row.overrides == {"2026-03-07": [["10:00", "11:00"]]}
    assert row.start_blocks == start_blocks(ScheduleSpec.from_row(row))
