"""iCal feeds: a secret, rotatable URL whose document parses with icalendar and lists the
owner's bookings with stable UIDs and their status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import pytest
from accounts_support import Api, api_for, bearer
from events_support import PEPPER, schedule, specialist
from icalendar import Calendar
from pydantic import SecretStr
from sqlalchemy import select

from agent_server.booking.availability import make_slot_id
from agent_server.booking.calendar import rotate_specialist_calendar_token
from agent_server.booking.models import CalendarToken, CancelledBy
from agent_server.booking.schedules import ScheduleOwner
from agent_server.booking.service import book_slot, cancel_booking, reject_booking
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database

TUE = datetime(2026, 3, 3, tzinfo=UTC)  # the clock starts Monday 2026-03-02 08:00 UTC


@pytest.fixture
async def api(database_url: str, clock: FakeClock) -> AsyncIterator[Api]:
    async with api_for(
        database_url, clock, None, secret_pepper=SecretStr(PEPPER), public_url="https://as.test"
    ) as api:
        yield api


async def book(db: Database, agent: int, schedule_id: int, hour: int) -> int:
    async with db.uow() as uow:
        booking = await book_slot(
            uow,
            agent_id=agent,
            slot_id=make_slot_id(schedule_id, TUE.replace(hour=hour)),
            idempotency_key=None,
            topic=f"question at {hour}",
        )
        await uow.commit()
        return booking.id


def events_of(document: bytes) -> dict[str, dict[str, object]]:
    calendar = Calendar.from_ical(document)
    return {
        str(e["UID"]): {
            "status": str(e["STATUS"]),
            "start": e.decoded("DTSTART"),
            "end": e.decoded("DTEND"),
            "summary": str(e["SUMMARY"]),
        }
        for e in calendar.walk("VEVENT")
    }


async def test_the_agent_feed_lists_its_bookings_and_rotating_retires_the_old_url(
    api: Api,
) -> None:
    db = api.runtime.db
    agent, key = await api.signup("cal@example.com", verify=False)
    other, _ = await api.signup("other@example.com", verify=False)
    expert = await specialist(db, "Ada Lovelace")
    auto = await schedule(db, ScheduleOwner.specialist(expert), auto_accept=True)
    manual = await schedule(db, ScheduleOwner.specialist(expert), auto_accept=False)

    confirmed = await book(db, agent, auto, 9)
    pending = await book(db, agent, manual, 10)
    cancelled = await book(db, agent, auto, 11)
    rejected = await book(db, agent, manual, 11)
    not_mine = await book(db, other, auto, 10)
    async with db.uow() as uow:
        await cancel_booking(uow, cancelled, CancelledBy.AGENT, agent, "no_time")
        await reject_booking(uow, ScheduleOwner.specialist(expert), rejected)
        await uow.commit()

    assert (await api.client.post("/api/agent/calendar-token")).status_code == 401
    issued = await api.client.post("/api/agent/calendar-token", headers=bearer(key))
    assert issued.status_code == 200, issued.text
    feed_url = issued.json()["feed_url"]
    assert feed_url.startswith("https://as.test/calendar/feed/cal_") and feed_url.endswith(".ics")
    path = urlsplit(feed_url).path

    response = await api.client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/calendar")
    events = events_of(response.content)
    assert set(events) == {
        f"booking-{b}@agent-server" for b in (confirmed, pending, cancelled, rejected)
    }
    assert f"booking-{not_mine}@agent-server" not in events
    statuses = {uid: e["status"] for uid, e in events.items()}
    assert statuses == {
        f"booking-{confirmed}@agent-server": "CONFIRMED",
        f"booking-{pending}@agent-server": "TENTATIVE",
        f"booking-{cancelled}@agent-server": "CANCELLED",
        f"booking-{rejected}@agent-server": "CANCELLED",
    }
    first = events[f"booking-{confirmed}@agent-server"]
    assert first["start"] == TUE.replace(hour=9) and first["end"] == TUE.replace(hour=10)
    assert first["summary"] == "Session with Ada Lovelace: question at 9"
    assert b"DTSTART:20260303T090000Z" in response.content

    # The token is stored only as a hash.
    async with db.uow() as uow:
        stored = list((await uow.session.execute(select(CalendarToken))).scalars())
        await uow.commit()  # keeps the rows readable after the block
    token = path.removeprefix("/calendar/feed/").removesuffix(".ics")
    assert len(stored) == 1 and stored[0].agent_id == agent
    assert token not in stored[0].token_hash

    rotated = await api.client.post("/api/agent/calendar-token", headers=bearer(key))
    new_path = urlsplit(rotated.json()["feed_url"]).path
    assert new_path != path
    gone = await api.client.get(path)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "NOT_FOUND"
    assert set(events_of((await api.client.get(new_path)).content)) == set(events)
    for bad in ("/calendar/feed/cal_unknown-token-123456789.ics", "/calendar/feed/x.ics"):
        assert (await api.client.get(bad)).status_code == 404


async def test_a_specialist_feed_lists_the_bookings_of_its_schedules(api: Api) -> None:
    db = api.runtime.db
    one, _ = await api.signup("one@example.com", verify=False)
    two, _ = await api.signup("two@example.com", verify=False)
    expert = await specialist(db, "Grace Hopper")
    elsewhere = await specialist(db, "Someone Else")
    mine = await schedule(db, ScheduleOwner.specialist(expert), auto_accept=True)
    theirs = await schedule(db, ScheduleOwner.specialist(elsewhere), auto_accept=True)
    a = await book(db, one, mine, 9)
    b = await book(db, two, mine, 10)
    await book(db, one, theirs, 9)

    async with db.uow() as uow:
        token = await rotate_specialist_calendar_token(uow, expert, pepper=PEPPER)
        await uow.commit()
    response = await api.client.get(f"/calendar/feed/{token}.ics")
    assert response.status_code == 200
    events = events_of(response.content)
    assert set(events) == {f"booking-{a}@agent-server", f"booking-{b}@agent-server"}
    assert events[f"booking-{a}@agent-server"]["summary"] == "Booking by Booking Bot: question at 9"


@pytest.fixture
async def limited(database_url: str, clock: FakeClock) -> AsyncIterator[Api]:
    async with api_for(
        database_url,
        clock,
        None,
        secret_pepper=SecretStr(PEPPER),
        calendar_feed_per_hour=3,
        calendar_misses_per_ip_per_hour=2,
    ) as api:
        yield api


def assert_rate_limited(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["details"]["limit"] == limit
    retry_after = int(response.headers["Retry-After"])
    assert 0 < retry_after <= 3600 and error["details"]["retry_after"] == retry_after


async def test_a_feed_answers_its_hourly_fetches_then_429_until_the_hour_is_over(
    limited: Api, clock: FakeClock
) -> None:
    db = limited.runtime.db
    expert = await specialist(db, "Grace Hopper")
    other = await specialist(db, "Someone Else")
    tokens = {}
    async with db.uow() as uow:
        for who in (expert, other):
            tokens[who] = await rotate_specialist_calendar_token(uow, who, pepper=PEPPER)
        await uow.commit()
    path = f"/calendar/feed/{tokens[expert]}.ics"

    for _ in range(3):
        assert (await limited.client.get(path)).status_code == 200
    refused = await limited.client.get(path)
    assert_rate_limited(refused, 3)
    assert refused.json()["error"]["message"].startswith("This feed answers 3 fetches an hour")
    # One feed's limit is its own: the other specialist's feed still answers.
    assert (await limited.client.get(f"/calendar/feed/{tokens[other]}.ics")).status_code == 200

    clock.advance(timedelta(seconds=int(refused.headers["Retry-After"])))
    again = await limited.client.get(path)
    assert again.status_code == 200 and again.headers["content-type"].startswith("text/calendar")


async def test_urls_that_open_no_feed_are_limited_per_address(limited: Api) -> None:
    db = limited.runtime.db
    expert = await specialist(db, "Grace Hopper")
    async with db.uow() as uow:
        token = await rotate_specialist_calendar_token(uow, expert, pepper=PEPPER)
        await uow.commit()
    unknown = "/calendar/feed/cal_unknown-token-123456789.ics"

    for bad in (unknown, "/calendar/feed/x.ics"):
        assert (await limited.client.get(bad)).status_code == 404
    assert_rate_limited(await limited.client.get(unknown), 2)
    # Feeds that exist are not counted as misses and still answer from that address.
    assert (await limited.client.get(f"/calendar/feed/{token}.ics")).status_code == 200

    # Another address has its own count.
    async with limited.from_address("198.51.100.9") as elsewhere:
        assert (await elsewhere.get(unknown)).status_code == 404
