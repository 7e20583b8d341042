"""The answer of search-specialists: a page of hits with their free slots, and facets.

Plain pydantic models, so clients get structured content and an output schema; slots read as
``{slot_id: local date and time range}`` (``local_time_range``), shared with view-profile
and the booking tools.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from agent_server.booking.availability import Slot
from agent_server.kernel.money import Money

FreeSlots = Annotated[
    dict[str, str],
    Field(
        description="Free slots, soonest first: each key is a slot_id to pass to book-slot "
        "(it holds the start in UTC), each value the date, weekday, start and end in the "
        'time zone asked for, e.g. {"13324-20261123T0900Z": "2026-11-23 Mon 10:00-11:00"} '
        "for Europe/Berlin ('+1' after the end: it ends the next day; a time the clock "
        "shows twice, as the hour it goes back, carries its offset: '01:30 (UTC-04:00)')"
    ),
]
"""Slots as agents read them: ``{slot_id: local date and time range}``."""


class ScheduleHit(BaseModel):
    """A matched schedule: its price per slot and its next free slots fitting the filters."""

    id: int
    label: str
    slot_minutes: int
    price: Money = Field(description="Per slot")
    capacity: int = Field(description="Seats per slot (above 1: a group session)")
    slots: FreeSlots


class SpecialistHit(BaseModel):
    """A search result: public profile fields (no contact), matched schedules, free slots.

    The specialist's first three free slots fitting the filters are spread over the
    schedules they belong to.
    """

    id: int
    name: str
    title: str
    about: str = Field(description="Shortened; view-profile has the whole text")
    city: str
    country: str
    languages: list[str]
    skills: list[str]
    rating: float
    review_count: int
    next_available: str = Field(description="Soonest free slot of the matched schedules, UTC")
    schedules: list[ScheduleHit]


class Facets(BaseModel):
    """Counts of specialists matching the filters (free slots not checked)."""

    skills: dict[str, int] = Field(
        description='Specialists per skill, the most common first, e.g. {"seo": 58}'
    )
    price_ranges: dict[str, int] = Field(
        description="Specialists per price range in USD per slot, cheapest first, "
        'e.g. {"50-100": 333, "500+": 9}'
    )
    counted: int = Field(description="Specialists counted")
    complete: bool = Field(description="False when only the first matches were counted")


class SearchPage(BaseModel):
    """One page of results."""

    items: list[SpecialistHit]
    facets: Facets
    timezone: str
    window_start: str
    window_end: str
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null at the end. When matches are "
        "rare a page may hold fewer results than asked, even none: go on with the cursor."
    )


def _clock(moment: datetime) -> str:
    """``10:00``; with the UTC offset, ``01:30 (UTC-04:00)``, when the clock shows that time
    twice that night (the hour it goes back), so that two slots never read the same."""
    text = f"{moment:%H:%M}"
    if moment.replace(fold=1 - moment.fold).utcoffset() != moment.utcoffset():
        text += f" (UTC{moment.isoformat()[-6:]})"
    return text


def local_time_range(slot: Slot, tz: ZoneInfo) -> str:
    """``2026-03-02 Mon 10:00-11:00`` in ``tz`` (``+1`` after the end when it falls on the
    next day; an offset after a time the clock shows twice, see ``_clock``)."""
    start, end = slot.start.astimezone(tz), slot.end.astimezone(tz)
    days = (end.date() - start.date()).days
    later = f"+{days}" if days else ""
    return f"{start:%Y-%m-%d %a} {_clock(start)}-{_clock(end)}{later}"
