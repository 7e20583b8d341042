"""view-profile: a specialist's whole profile, contact included, with free slots.

``view_profile(uow, specialist_id, now=...)`` gives a ``ProfileView``: every profile field
and each public schedule in full with its next free slots (in the time zone asked for), and
the newest reviews (``reviews.REVIEWS_SHOWN``; ``reviews_cursor`` pages older ones).
Texts are whole here; search results shorten them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from agent_server.booking.availability import ScheduleSpec, free_slots, zone
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.next_free import seats_taken
from agent_server.booking.reviews import REVIEWS_SHOWN, Subject, list_reviews
from agent_server.booking.search.answer import FreeSlots, local_time_range
from agent_server.booking.search.query import MAX_WINDOW_DAYS
from agent_server.booking.search.text import iso_utc
from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.money import Money
from agent_server.kernel.store import UnitOfWork


class ProfileSchedule(BaseModel):
    """A public schedule in full, with its next free slots."""

    id: int
    label: str
    description: str
    skills: list[str]
    timezone: str
    weekly_hours: dict[str, list[list[str]]]
    blackout_dates: list[str]
    slot_minutes: int
    buffer_minutes: int
    min_notice_minutes: int
    start_date: str
    end_date: str | None
    price: Money = Field(description="Per slot")
    price_usd_micros: int
    capacity: int
    slots: FreeSlots


class ProfileReview(BaseModel):
    """One review by a booker of a finished session."""

    rating: int
    text: str
    created_at: str


class ProfileView(BaseModel):
    """A specialist's whole profile, contact included."""

    id: int
    name: str
    title: str
    about: str
    city: str
    country: str
    timezone: str
    languages: list[str]
    skills: list[str]
    education: list[dict[str, Any]]
    hourly_rate: Money | None
    rating: float
    review_count: int
    email: str
    phone: str | None
    next_available: str | None
    schedules: list[ProfileSchedule]
    reviews: list[ProfileReview] = Field(description="Newest first")
    next_reviews_cursor: str | None = Field(description="reviews_cursor for older reviews")


async def view_profile(
    uow: UnitOfWork,
    specialist_id: int,
    *,
    now: datetime,
    window_days: int = 14,
    timezone: str = "UTC",
    slots_per_schedule: int = 5,
    reviews_cursor: str | None = None,
) -> ProfileView:
    """A specialist's whole profile, with public schedules and their next free slots.

    Slots are those in the next ``window_days`` days, shown in ``timezone`` too; reviews
    are the newest, or those older than ``reviews_cursor``.
    ``NotFound`` for an unknown id. Takes an entered unit of work; reads only.
    """
    if not 1 <= window_days <= MAX_WINDOW_DAYS:
        raise ValidationFailed.field("window_days", f"give 1 to {MAX_WINDOW_DAYS} days")
    try:
        tz = zone(timezone)
    except Exception:
        raise ValidationFailed.field(
            "timezone", f"{timezone!r} is not an IANA time zone; use a name like 'Europe/Berlin'"
        ) from None
    person = await uow.session.get(Specialist, specialist_id)
    if person is None:
        raise NotFound(f"no specialist has id {specialist_id}", {"specialist_id": specialist_id})
    schedules = (
        await uow.session.scalars(
            select(Schedule)
            .where(
                Schedule.specialist_id == specialist_id,
                Schedule.private.is_(False),
                Schedule.deleted_at.is_(None),
            )
            .order_by(Schedule.id)
        )
    ).all()
    review_page = await list_reviews(
        uow, Subject(specialist_id=specialist_id), cursor=reviews_cursor, limit=REVIEWS_SHOWN
    )
    end = now + timedelta(days=window_days)
    taken = await seats_taken(uow.session, (s.id for s in schedules), now, end)
    views: list[ProfileSchedule] = []
    soonest: datetime | None = None
    for sched in schedules:
        slots = free_slots(ScheduleSpec.from_row(sched), now, end, now, taken.get(sched.id, {}))
        if slots and (soonest is None or slots[0].start < soonest):
            soonest = slots[0].start
        today = now.date().isoformat()
        views.append(
            ProfileSchedule(
                id=sched.id,
                label=sched.label,
                description=sched.description,
                skills=list(sched.skills),
                timezone=sched.timezone,
                weekly_hours=dict(sched.weekly_hours),
                blackout_dates=[d for d in sched.blackout_dates if d >= today],
                slot_minutes=sched.slot_minutes,
                buffer_minutes=sched.buffer_minutes,
                min_notice_minutes=sched.min_notice_minutes,
                start_date=sched.start_date.isoformat(),
                end_date=sched.end_date.isoformat() if sched.end_date else None,
                price=Money.of(sched.price_amount, sched.price_currency),
                price_usd_micros=sched.price_usd_micros,
                capacity=sched.capacity,
                slots={
                    slot.slot_id: local_time_range(slot, tz) for slot in slots[:slots_per_schedule]
                },
            )
        )
    return ProfileView(
        id=person.id,
        name=person.name,
        title=person.title,
        about=person.about,
        city=person.city,
        country=person.country,
        timezone=person.timezone,
        languages=list(person.languages),
        skills=list(person.skills),
        education=list(person.education),
        hourly_rate=(
            Money.of(person.hourly_rate, person.rate_currency)
            if person.hourly_rate is not None
            else None
        ),
        rating=person.rating,
        review_count=person.review_count,
        email=person.email,
        phone=person.phone,
        next_available=iso_utc(soonest) if soonest is not None else None,
        schedules=views,
        reviews=[
            ProfileReview(rating=r.rating, text=r.text, created_at=iso_utc(r.created_at))
            for r in review_page.items
        ],
        next_reviews_cursor=review_page.next_cursor,
    )
