"""iCal feeds of bookings, one per agent and one per specialist, behind a secret token.

A token is ``cal_`` and 43 URL-safe characters (32 random bytes), shown once when it is
(re)issued; only its peppered hash is stored, one live token per owner, so rotating it
retires the old feed URL at once. The feed (``/calendar/feed/{token}.ics``) has one VEVENT
per booking with a stable UID (``booking-<id>@agent-server``), so calendar apps update events
in place: STATUS is TENTATIVE while pending, CONFIRMED once accepted or completed and
CANCELLED when canceled or rejected.

An agent's feed has the bookings it made and those made on its own schedules; a specialist's
feed has the bookings of its schedules. Bookings whose slot ended more than
``PAST_DAYS`` ago are left out.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased

from agent_server.accounts.keys import hash_secret
from agent_server.accounts.models import Agent
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import (
    Booking,
    BookingStatus,
    CalendarToken,
    Schedule,
    Specialist,
)
from agent_server.kernel.config import get_settings
from agent_server.kernel.store import UnitOfWork

if TYPE_CHECKING:  # icalendar is imported when a feed is rendered: a server may serve none
    from icalendar import Event

TOKEN_PREFIX = "cal_"  # noqa: S105 (a label, not a secret)
TOKEN_CONTEXT = "calendar-token"  # noqa: S105
PAST_DAYS = 90
MAX_EVENTS = 2000
UID_DOMAIN = "agent-server"

_ICAL_STATUS = {
    BookingStatus.PENDING.value: "TENTATIVE",
    BookingStatus.ACCEPTED.value: "CONFIRMED",
    BookingStatus.COMPLETED.value: "CONFIRMED",
    BookingStatus.CANCELED.value: "CANCELLED",
    BookingStatus.REJECTED.value: "CANCELLED",
}


def feed_path(token: str) -> str:
    """The path of a token's feed, relative to the server's public URL."""
    return f"/calendar/feed/{token}.ics"


def booking_uid(booking_id: int) -> str:
    """The stable iCal UID of a booking."""
    return f"booking-{booking_id}@{UID_DOMAIN}"


def _looks_like_token(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and 20 <= len(token) <= 100 and token.isascii()


async def _store(uow: UnitOfWork, owner_column: str, owner_id: int, pepper: str) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    values: dict[str, Any] = {
        "agent_id": None,
        "specialist_id": None,
        owner_column: owner_id,
        "token_hash": hash_secret(pepper, token, context=TOKEN_CONTEXT),
        "created_at": uow.clock.now(),
    }
    insert = sqlite_insert if uow.db.is_sqlite else pg_insert
    statement = insert(CalendarToken).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[owner_column],
        set_={"token_hash": values["token_hash"], "created_at": values["created_at"]},
    )
    await uow.session.execute(statement)
    return token


async def rotate_agent_calendar_token(uow: UnitOfWork, agent_id: int, *, pepper: str) -> str:
    """A new feed token for the agent (shown once); the previous one stops working.

    Does not commit.
    """
    return await _store(uow, "agent_id", agent_id, pepper)


async def rotate_specialist_calendar_token(
    uow: UnitOfWork, specialist_id: int, *, pepper: str | None = None
) -> str:
    """A new feed token for the specialist (shown once); the previous one stops working.

    ``pepper`` defaults to the process settings' ``secret_pepper``. Does not commit.
    """
    if pepper is None:
        pepper = get_settings().secret_pepper.get_secret_value()
    return await _store(uow, "specialist_id", specialist_id, pepper)


@dataclass(frozen=True)
class FeedOwner:
    """Whose feed a token opens."""

    agent_id: int | None
    specialist_id: int | None
    name: str


async def owner_of(uow: UnitOfWork, token: str, *, pepper: str) -> FeedOwner | None:
    """The agent or specialist whose live token this is, or None."""
    if not _looks_like_token(token):
        return None
    digest = hash_secret(pepper, token, context=TOKEN_CONTEXT)
    row = (
        await uow.session.execute(
            select(
                CalendarToken.agent_id, CalendarToken.specialist_id, CalendarToken.token_hash
            ).where(CalendarToken.token_hash == digest)
        )
    ).first()
    if row is None or not secrets.compare_digest(row.token_hash, digest):
        return None
    if row.agent_id is not None:
        agent = await uow.session.get(Agent, row.agent_id)
        if agent is None or agent.deleted_at is not None:
            return None
        return FeedOwner(agent.id, None, agent.name)
    specialist = await uow.session.get(Specialist, row.specialist_id)
    if specialist is None:
        return None
    return FeedOwner(None, specialist.id, specialist.name)


async def feed_for(uow: UnitOfWork, owner: FeedOwner) -> bytes:
    """The iCal document of the owner's bookings."""
    now = uow.clock.now()
    booker = aliased(Agent)
    query = (
        select(Booking, Specialist.name, Schedule.label, Schedule.agent_id, booker.name)
        .join(Schedule, Schedule.id == Booking.schedule_id)
        .outerjoin(Specialist, Specialist.id == Booking.specialist_id)
        .outerjoin(booker, booker.id == Booking.booker_agent_id)
        .where(Booking.slot_end >= now - timedelta(days=PAST_DAYS))
        .order_by(Booking.slot_start, Booking.id)
        .limit(MAX_EVENTS)
    )
    if owner.agent_id is not None:
        query = query.where(
            or_(Booking.booker_agent_id == owner.agent_id, Schedule.agent_id == owner.agent_id)
        )
    else:
        query = query.where(Booking.specialist_id == owner.specialist_id)
    from icalendar import Calendar

    calendar = Calendar()
    calendar.add("prodid", "-//Agent Server//Bookings//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", f"{owner.name}: bookings")
    for booking, specialist_name, label, schedule_agent, booker_name in await uow.session.execute(
        query
    ):
        provided = owner.specialist_id is not None or schedule_agent == owner.agent_id
        counterpart = (booker_name or "an agent") if provided else (specialist_name or label)
        calendar.add_component(
            _vevent(booking, provided=provided, counterpart=counterpart or "a booking", now=now)
        )
    return bytes(calendar.to_ical())


def _vevent(booking: Booking, *, provided: bool, counterpart: str, now: datetime) -> Event:
    from icalendar import Event

    event = Event()
    event.add("uid", booking_uid(booking.id))
    event.add("dtstamp", booking.updated_at or now)
    event.add("created", booking.created_at)
    event.add("last-modified", booking.updated_at)
    event.add("dtstart", booking.slot_start)
    event.add("dtend", booking.slot_end)
    summary = f"Booking by {counterpart}" if provided else f"Session with {counterpart}"
    if booking.topic:
        summary = f"{summary}: {booking.topic[:120]}"
    event.add("summary", summary)
    lines = [
        f"Booking {booking.id} ({booking.status})",
        f"Slot {make_slot_id(booking.schedule_id, booking.slot_start)}",
        f"Price {booking.price_amount} {booking.price_currency}",
    ]
    if booking.topic:
        lines.append(f"Topic: {booking.topic}")
    if booking.cancel_reason_code:
        lines.append(f"Cancelled ({booking.cancel_reason_code}) {booking.cancel_reason or ''}")
    event.add("description", "\n".join(line.rstrip() for line in lines))
    event.add("status", _ICAL_STATUS.get(booking.status, "TENTATIVE"))
    # Calendar apps apply an update only when SEQUENCE grows: one step per status change.
    event.add("sequence", _sequence(booking))
    return event


def _sequence(booking: Booking) -> int:
    if booking.status == BookingStatus.PENDING.value:
        return 0
    if booking.status in (BookingStatus.ACCEPTED.value, BookingStatus.REJECTED.value):
        return 1
    if booking.status == BookingStatus.CANCELED.value:
        return 2 if booking.accepted_at is not None else 1
    return 2
