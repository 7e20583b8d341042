"""Specialist search and profile view: what search-specialists and view-profile answer.

``search_specialists(uow, query, now=...)`` finds specialists with public schedules that match
every filter of a ``SearchQuery`` and have a free slot in the date window (on the requested
days and hours, in the requester's time zone). Each result carries the matched schedules and
up to three next free slots; the page carries facet counts and an opaque cursor.
``view_profile(uow, specialist_id, now=...)`` returns the whole profile, contact included.

How it stays fast on a large catalogue
--------------------------------------
Cutting slots is the expensive part, so it is done only for the specialists a page needs:

1. SQL filters schedules (public, not deleted, dates, price, length, skills, languages, place,
   text) and walks them in the sort order through an index (keyset pagination), in small
   batches. ``schedules.next_free_at`` (see ``next_free``) prunes schedules with nothing free
   before the window ends and is the index order for ``sort=next_available``.
2. For each new specialist met, its matching schedules are cut into slots for the window, and
   its sort key is the best one among schedules that have a fitting free slot.
3. A specialist is emitted once the walk has passed its key (nothing unseen can sort before
   it), so the order is exact even though keys are only known after slots are cut. The walk
   reads the index a slice at a time (the filters apply within the slice, so no query plan
   can turn into a scan of the catalogue) and stops when the page is full (plus one, to know
   there is more), or after ``MAX_EXAMINED`` specialists or ``MAX_SCANNED`` entries; then the
   page may be short (even empty, when matches are rare) and the cursor resumes the walk.

``sort=next_available`` orders by each result's ``next_available``: the soonest free slot
from now among its matched schedules (the slots shown are those fitting the days and hours).

Facets count specialists matching every filter except the free-slot check, among the first
``FACET_ROWS`` entries of the walk (``facets.complete`` says whether that was all of them).
The cursor and the page size play no part in them, so every page of a search has the same
facets: the caller may pass those it already has (``agent_server.booking.cache`` does), and
the page is then found in about half the time.

Pages stay compact (10 results within 7,600 characters of compact JSON, so the tool result
with its receipt stays within 8,000): texts are shortened
(view_profile has them whole); slots are a ``{slot_id: local date and times}`` mapping under
the schedule whose price and currency they have (the slot_id holds the UTC start, so nothing
repeats it); facets are ``{value: count}`` mappings; a page still too long drops detail step
by step (``DETAIL_LEVELS``: shorter about, fewer skills and languages, then fewer slots).
Each JSON value costs a client that checks results against the output schema (the SDK's does)
a few microseconds, so the shape counts values as well as characters.

The cursor is the walk's position, tied to the query's filters; a cursor from another query
is refused. The service flushes, never commits (it refreshes stale ``next_free_at`` values;
the caller commits with the rest of the call).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    distinct,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB, array
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.expression import cast
from sqlalchemy.sql.operators import custom_op

from agent_server.booking.availability import (
    ScheduleSpec,
    Slot,
    free_slots,
    parse_hhmm,
    zone,
)
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.next_free import (
    first_free,
    refresh_next_free,
    seats_taken,
    store_next_free,
)
from agent_server.booking.schedules import parse_model, usd_value
from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.inputs import Day, Text, TimeZone, check_int, check_moment
from agent_server.kernel.money import Money
from agent_server.kernel.store import UnitOfWork

DEFAULT_WINDOW_DAYS = 7
MAX_WINDOW_DAYS = 62
MAX_DAYS_AHEAD = 365
SLOTS_PER_RESULT = 3
FACET_ROWS = 1000
FACET_SKILLS = 8
MAX_EXAMINED = 200
"""Specialists whose slots one search call may cut before it returns a short page."""
FIRST_SLICE = 256
MAX_SLICE = 4096
MAX_SCANNED = 12_000
"""Walk entries one search call may read before it returns a short page (rare matches)."""
NULL_REPAIR = 1000
"""Schedules with an unknown ``next_free_at`` one call computes before searching."""
PRICE_BUCKETS_USD: tuple[int, ...] = (0, 50, 100, 200, 500)
"""Lower bounds (whole USD per slot) of the price-range facet buckets."""


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_ALIASES = {
    full: short
    for short, full in zip(
        _WEEKDAYS,
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
        strict=True,
    )
}
_SKILL = re.compile(r"^[a-z0-9][a-z0-9+#.-]{0,63}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


# --- text helpers shared with writers of specialists -----------------------------------------


def normalize_skill(text: str) -> str:
    """A skill as stored and searched: lower case, words joined by hyphens (``"Tax Law"`` ->
    ``"tax-law"``)."""
    words = re.split(r"[\s_]+", text.strip().lower())
    return "-".join(w for w in words if w)


def _fold(text: str) -> str:
    """Lower case without accents: ``"São Paulo"`` -> ``"sao paulo"``."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def specialist_search_text(name: str, title: str, about: str, skills: Sequence[str]) -> str:
    """The ``search_text`` column of a specialist: what free-text search matches against."""
    skill_words = " ".join(s.replace("-", " ") for s in skills)
    return _fold(" ".join((name, title, about, " ".join(skills), skill_words)))


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    if limit <= 1:
        return ""
    cut = text[: limit - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:") + "…"


def _iso_utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


# --- the query ---------------------------------------------------------------------------------


class SortBy(StrEnum):
    RATING = "rating"
    PRICE = "price"
    NEXT_AVAILABLE = "next_available"


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


DEFAULT_ORDER = {
    SortBy.RATING: Order.DESC,
    SortBy.PRICE: Order.ASC,
    SortBy.NEXT_AVAILABLE: Order.ASC,
}

CurrencyCode = Literal["USD", "USDT", "USDC", "ETH", "BTC"]


# Price bounds fit the database's BIGINT, whatever the currency.
MAX_PRICE_BOUND = 2**63 - 1


class SearchQuery(BaseModel):
    """Filters, sort and page of a specialist search. Every filter is optional."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    q: Annotated[
        Text | None,
        Field(
            max_length=200,
            description=("Free text; every word must appear in the name, title, about or skills."),
        ),
    ] = None
    skills: Annotated[
        list[Text],
        Field(
            max_length=10,
            description=(
                "Skills they must ALL have, e.g. ['tax-law', 'vat'] ('Tax Law' = 'tax-law')."
            ),
        ),
    ] = []
    languages: Annotated[
        list[Text],
        Field(
            max_length=10,
            description=(
                "ISO 639-1 codes; the specialist must speak ANY of them, e.g. ['en', 'de']."
            ),
        ),
    ] = []
    city: Annotated[Text | None, Field(max_length=100, description="City, e.g. 'Berlin'.")] = None
    country: Annotated[
        Text | None, Field(description=("ISO 3166-1 alpha-2 country code, e.g. 'DE'."))
    ] = None
    price_min: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_PRICE_BOUND,
            description=(
                "Lowest price per slot in base units of `currency` (50 USD = 50000000; "
                "USDT/USDC 10^-6, ETH gwei, BTC sat)."
            ),
        ),
    ] = None
    price_max: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_PRICE_BOUND,
            description=("Highest price per slot, in base units of `currency`."),
        ),
    ] = None
    currency: Annotated[
        CurrencyCode,
        Field(
            description=(
                "Currency of price_min/price_max (prices compare in USD across currencies)."
            )
        ),
    ] = "USD"
    duration: Annotated[
        int | None, Field(ge=15, le=1440, description=("Slot length in minutes, e.g. 60."))
    ] = None
    days_of_week: Annotated[
        list[Text],
        Field(
            max_length=7,
            description=("Days with a free slot, in `timezone`: 'mon'..'sun' (or full names)."),
        ),
    ] = []
    hours_from: Annotated[
        Text | None,
        Field(description=("Earliest slot start, HH:MM in `timezone`; give hours_to too.")),
    ] = None
    hours_to: Annotated[
        Text | None,
        Field(
            description=(
                "Latest slot end, HH:MM in `timezone` (24:00 for midnight; before hours_from wraps "
                "past midnight)."
            )
        ),
    ] = None
    date_from: Annotated[
        Day | None, Field(description=("First day of the window (in `timezone`); default today."))
    ] = None
    date_to: Annotated[
        Day | None,
        Field(
            description=(
                f"Last day of the window, inclusive; default a week after date_from; at most "
                f"{MAX_WINDOW_DAYS} days in all."
            )
        ),
    ] = None
    timezone: Annotated[
        TimeZone,
        Field(
            max_length=64,
            description=(
                "Your IANA time zone, e.g. 'Europe/Berlin'; days, hours, dates and local slot "
                "times use it."
            ),
        ),
    ] = "UTC"
    sort: Annotated[
        SortBy,
        Field(
            description=(
                "rating (best first), price (cheapest first) or next_available (soonest first)."
            )
        ),
    ] = SortBy.RATING
    order: Annotated[
        Order | None,
        Field(description=("Default desc for rating, else asc (next_available: asc only).")),
    ] = None
    cursor: Annotated[
        Text | None,
        Field(
            max_length=512, description=("next_cursor of the previous page, with the same filters.")
        ),
    ] = None
    limit: Annotated[int, Field(ge=1, le=50, description="Results per page.")] = 10

    @field_validator("q", "city", "hours_from", "hours_to", "cursor", "country")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: list[str]) -> list[str]:
        out: dict[str, None] = {}
        for raw in value:
            skill = normalize_skill(raw)
            if not _SKILL.match(skill):
                raise ValueError(f"{raw!r} is not a skill; use words like 'tax-law' or 'python'")
            out.setdefault(skill, None)
        return list(out)

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        out: dict[str, None] = {}
        for raw in value:
            code = raw.strip().lower()
            if not _LANGUAGE.match(code):
                raise ValueError(f"{raw!r} is not a language code; use ISO 639-1 like 'en'")
            out.setdefault(code, None)
        return list(out)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        code = value.upper()
        if not _COUNTRY.match(code):
            raise ValueError(f"{value!r} is not a country code; use ISO 3166-1 like 'DE'")
        return code

    @field_validator("days_of_week")
    @classmethod
    def _days(cls, value: list[str]) -> list[str]:
        out: dict[str, None] = {}
        for raw in value:
            key = raw.strip().lower()
            key = _WEEKDAY_ALIASES.get(key, key)
            if key not in _WEEKDAYS:
                raise ValueError(f"{raw!r} is not a weekday; use mon, tue, wed, thu, fri, sat, sun")
            out.setdefault(key, None)
        return sorted(out, key=_WEEKDAYS.index)

    @field_validator("hours_from", "hours_to")
    @classmethod
    def _hhmm(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hhmm(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zone(value)
        except Exception:
            raise ValueError(
                f"{value!r} is not an IANA time zone; use a name like 'Europe/Berlin' or 'UTC'"
            ) from None
        return value

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> SearchQuery:
        """A query from request data; ``ValidationFailed`` names each bad field."""
        return parse_model(cls, raw)

    def fingerprint(self) -> str:
        """What a cursor is tied to: every field but the cursor and the page size."""
        data = self.model_dump(mode="json", exclude={"cursor", "limit"})
        data["order"] = (self.order or DEFAULT_ORDER[self.sort]).value
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- the answer ----------------------------------------------------------------------------------


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


# --- the plan: a query resolved against the clock ---------------------------------------------


Position = tuple[Any, int, int]
"""A place in the walk: (sort value, specialist id, schedule id)."""


@dataclass(frozen=True)
class _Plan:
    query: SearchQuery
    now: datetime
    tz: ZoneInfo
    window_start: datetime
    window_end: datetime
    usd_min: int | None
    usd_max: int | None
    words: tuple[str, ...]
    days: frozenset[int]
    hours: tuple[int, int] | None
    sort: SortBy
    desc: bool
    after: Position | None
    sqlite: bool

    @cached_property
    def stretches(self) -> list[tuple[datetime, datetime]]:
        """Stretches of the window where a slot fitting the days and hours may start.

        A superset (an hour of margin each side for offsets and DST); ``fits`` decides.
        """
        if not self.days and self.hours is None:
            return [(self.window_start, self.window_end)]
        margin = timedelta(hours=1)
        lo, hi = self.hours if self.hours is not None else (0, 24 * 60)
        if hi <= lo:  # wraps past midnight: the day of the start is the one before
            hi += 24 * 60
        wraps = hi > 24 * 60
        out: list[tuple[datetime, datetime]] = []
        day = self.window_start.astimezone(self.tz).date() - timedelta(days=1)
        last = self.window_end.astimezone(self.tz).date()
        while day <= last:
            if not self.days or wraps or day.weekday() in self.days:
                start = max(
                    _midnight(day, self.tz) + timedelta(minutes=lo) - margin, self.window_start
                )
                end = min(_midnight(day, self.tz) + timedelta(minutes=hi) + margin, self.window_end)
                if start < end:
                    if out and start <= out[-1][1]:
                        out[-1] = (out[-1][0], max(out[-1][1], end))
                    else:
                        out.append((start, end))
            day += timedelta(days=1)
        return out

    def rank(self, pos: Position) -> tuple[Any, ...]:
        """``pos`` as an ascending key: the walk visits positions in increasing rank."""
        if self.desc:
            return (-pos[0], -pos[1], -pos[2])
        return pos

    def fits(self, slot: Slot) -> bool:
        """Whether a free slot lies in the window, on the days and within the hours asked."""
        if slot.start < self.window_start:
            return False
        if not self.days and self.hours is None:
            return True
        local = slot.start.astimezone(self.tz)
        if self.days and local.weekday() not in self.days:
            return False
        if self.hours is not None:
            lo, hi = self.hours
            start = local.hour * 60 + local.minute
            length = int((slot.end - slot.start).total_seconds() // 60)
            if lo < hi:
                return lo <= start and start + length <= hi
            if start < lo:  # the range wraps past midnight
                start += 24 * 60
            return start + length <= hi + 24 * 60
        return True


def _plan(query: SearchQuery, now: datetime, sqlite: bool) -> _Plan:
    tz = zone(query.timezone)
    today = now.astimezone(tz).date()
    if query.price_min is not None and query.price_max is not None:
        if query.price_max < query.price_min:
            raise ValidationFailed.field("price_max", "is below price_min; swap them")
    hours = None
    if (query.hours_from is None) != (query.hours_to is None):
        missing = "hours_to" if query.hours_to is None else "hours_from"
        raise ValidationFailed.field(missing, "give both hours_from and hours_to, or neither")
    if query.hours_from is not None and query.hours_to is not None:
        hours = (parse_hhmm(query.hours_from), parse_hhmm(query.hours_to))
        if hours[0] == hours[1]:
            raise ValidationFailed.field("hours_to", "equals hours_from; give a range")
    first = query.date_from or today
    if query.date_to is not None and query.date_to < today:
        raise ValidationFailed.field("date_to", f"is in the past; today is {today} in {tz.key}")
    if first > today + timedelta(days=MAX_DAYS_AHEAD):
        raise ValidationFailed.field("date_from", f"is more than {MAX_DAYS_AHEAD} days ahead")
    last = query.date_to or first + timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    if last < first:
        raise ValidationFailed.field("date_to", "is before date_from; give a later date_to")
    if (last - first).days + 1 > MAX_WINDOW_DAYS:
        raise ValidationFailed.field(
            "date_to", f"the window may span at most {MAX_WINDOW_DAYS} days; narrow it"
        )
    if query.date_from is None and query.date_to is None:
        window_start, window_end = now, now + timedelta(days=DEFAULT_WINDOW_DAYS)
    else:
        window_start = max(now, _midnight(first, tz))
        window_end = _midnight(last + timedelta(days=1), tz)
    sort = query.sort
    order = query.order or DEFAULT_ORDER[sort]
    if sort is SortBy.NEXT_AVAILABLE and order is Order.DESC:
        raise ValidationFailed.field("order", "next_available sorts ascending only; use asc")
    plan = _Plan(
        query=query,
        now=now,
        tz=tz,
        window_start=window_start,
        window_end=window_end,
        usd_min=_usd_bound(query.price_min, query.currency, "price_min"),
        usd_max=_usd_bound(query.price_max, query.currency, "price_max"),
        words=tuple(w for w in _fold(query.q or "").split() if w)[:10],
        days=frozenset(_WEEKDAYS.index(d) for d in query.days_of_week),
        hours=hours,
        sort=sort,
        desc=order is Order.DESC,
        after=None,
        sqlite=sqlite,
    )
    if query.cursor is not None:
        plan = _with_cursor(plan, query.cursor)
    return plan


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def _usd_bound(amount: int | None, currency: str, name: str) -> int | None:
    if amount is None:
        return None
    try:
        # Clamped: a bound above every storable price filters like the largest one.
        return min(usd_value(amount, currency), MAX_PRICE_BOUND)
    except (ValueError, KeyError):
        raise ValidationFailed.field(name, f"no USD rate for {currency}") from None


# --- cursors -------------------------------------------------------------------------------------


def _encode_cursor(plan: _Plan, pos: Position) -> str:
    value = pos[0].isoformat() if isinstance(pos[0], datetime) else pos[0]
    blob = json.dumps(
        {"h": plan.query.fingerprint(), "p": [value, pos[1], pos[2]]}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(blob.encode()).decode().rstrip("=")


def _with_cursor(plan: _Plan, cursor: str) -> _Plan:
    bad = ValidationFailed.field(
        "cursor", "is not a next_cursor of this search; repeat the search without a cursor"
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        value, specialist_id, schedule_id = data["p"]
        fingerprint = data["h"]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if fingerprint != plan.query.fingerprint():
        raise ValidationFailed.field(
            "cursor", "belongs to a search with other filters; repeat the search without it"
        )
    try:
        check_int(specialist_id)
        check_int(schedule_id)
        if plan.sort is SortBy.NEXT_AVAILABLE:
            value = check_moment(datetime.fromisoformat(value))
        elif plan.sort is SortBy.PRICE:
            check_int(value)
        elif isinstance(value, int):
            check_int(value)
        elif not isinstance(value, float) or not math.isfinite(value):
            raise ValueError
    except (ValueError, TypeError):
        raise bad from None
    return replace(plan, after=(value, specialist_id, schedule_id))


# --- SQL -----------------------------------------------------------------------------------------


def _json_has(plan: _Plan, column: Any, value: str) -> ColumnElement[bool]:
    if plan.sqlite:
        items = func.json_each(column).table_valued("value")
        return exists().select_from(items).where(items.c.value == value)
    found: ColumnElement[bool] = cast(column, JSONB).contains([value])
    return found


def _json_has_any(plan: _Plan, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
    if plan.sqlite:
        items = func.json_each(column).table_valued("value")
        return exists().select_from(items).where(items.c.value.in_(list(values)))
    found: ColumnElement[bool] = cast(column, JSONB).has_any(array(list(values)))
    return found


def _like_escape(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _opaque(column: Any) -> Any:
    """``+column``: the same value, which SQLite will not look up through an index."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type)


def _same(column: Any) -> Any:
    return column


def _conditions(plan: _Plan) -> list[ColumnElement[bool]]:
    """Every filter SQL can apply, for schedules joined to their specialists."""
    return _schedule_conditions(plan) + _specialist_conditions(plan)


def _schedule_conditions(plan: _Plan) -> list[ColumnElement[bool]]:
    """The filters on a schedule's own columns."""
    q = plan.query
    first_day = (plan.window_start - timedelta(days=1)).date()
    last_day = (plan.window_end + timedelta(days=1)).date()
    # Nearly every schedule passes these, so they must not drive an index (SQLite would
    # walk it and sort everything instead of walking the sort order and stopping early).
    opaque = _opaque if plan.sqlite else _same
    next_free = opaque(Schedule.next_free_at)
    end_date = opaque(Schedule.end_date)
    conds: list[ColumnElement[bool]] = [
        opaque(Schedule.private).is_(False),
        opaque(Schedule.deleted_at).is_(None),
        opaque(Schedule.start_date) <= last_day,
        or_(end_date.is_(None), end_date >= first_day),
        or_(next_free.is_(None), next_free < plan.window_end),
    ]
    if plan.usd_min is not None:
        conds.append(Schedule.price_usd_micros >= plan.usd_min)
    if plan.usd_max is not None:
        conds.append(Schedule.price_usd_micros <= plan.usd_max)
    if q.duration is not None:
        conds.append(Schedule.slot_minutes == q.duration)
    return conds


def _specialist_conditions(plan: _Plan) -> list[ColumnElement[bool]]:
    """The filters on the specialist's profile."""
    q = plan.query
    conds: list[ColumnElement[bool]] = []
    if q.country is not None:
        conds.append(Specialist.country == q.country)
    if q.city is not None:
        conds.append(func.lower(Specialist.city) == q.city.lower())
    for word in plan.words:
        conds.append(Specialist.search_text.like(f"%{_like_escape(word)}%", escape="\\"))
    for skill in q.skills:
        conds.append(_json_has(plan, Specialist.skills, skill))
    if q.languages:
        conds.append(_json_has_any(plan, Specialist.languages, q.languages))
    return conds


def _position_columns(plan: _Plan) -> tuple[Any, Any, Any]:
    if plan.sort is SortBy.PRICE:
        return Schedule.price_usd_micros, Schedule.specialist_id, Schedule.id
    if plan.sort is SortBy.RATING:
        return Specialist.rating, Specialist.id, literal(0)
    return Schedule.next_free_at, Schedule.specialist_id, Schedule.id


def _after(plan: _Plan, pos: Position) -> ColumnElement[bool]:
    """Rows strictly after ``pos`` in the walk; the leading pair is an index range."""
    a, b, c = _position_columns(plan)
    lead, lead_value = tuple_(a, b), tuple_(pos[0], pos[1])
    if plan.sort is SortBy.RATING:  # one row per specialist
        return lead < lead_value if plan.desc else lead > lead_value
    if plan.desc:
        return and_(lead <= lead_value, or_(lead < lead_value, c < pos[2]))
    return and_(lead >= lead_value, or_(lead > lead_value, c > pos[2]))


def _matching(plan: _Plan) -> Select[Any]:
    """The walk: ``(specialist id, *position)`` rows in sort order, through an index.

    Sorting by rating walks specialists (one row each, schedule id 0); the other sorts walk
    schedules.
    """
    cols = _position_columns(plan)
    if plan.sort is SortBy.RATING:
        # A scalar subquery, not EXISTS: PostgreSQL may turn EXISTS into a hash join over
        # every schedule, while this stays an index look-up per specialist walked.
        has_schedule = (
            select(Schedule.id)
            .where(Schedule.specialist_id == Specialist.id, *_schedule_conditions(plan))
            .limit(1)
            .scalar_subquery()
            .is_not(None)
        )
        stmt = select(Specialist.id.label("sid"), *cols).where(
            *_specialist_conditions(plan), has_schedule
        )
        order: tuple[Any, ...] = cols[:2]
    else:
        stmt = (
            select(Schedule.specialist_id.label("sid"), *cols)
            .join(Specialist, Specialist.id == Schedule.specialist_id)
            .where(*_conditions(plan))
        )
        order = cols
        if plan.sort is SortBy.NEXT_AVAILABLE:
            stmt = stmt.where(Schedule.next_free_at.is_not(None))
    return stmt.order_by(*(c.desc() if plan.desc else c.asc() for c in order))


# --- evaluating specialists ----------------------------------------------------------------------


@dataclass
class _ScheduleEval:
    schedule: Schedule
    first_free: Slot | None
    fitting: list[Slot]


@dataclass
class _SpecialistEval:
    specialist_id: int
    schedules: list[_ScheduleEval] = field(default_factory=list)
    key: Position | None = None

    @property
    def matched(self) -> list[_ScheduleEval]:
        return [s for s in self.schedules if s.fitting]


def _cut(plan: _Plan, sched: Schedule, taken: Mapping[datetime, int]) -> _ScheduleEval:
    """Up to three fitting slots in the window, and (if any) the first free slot from now.

    Only the stretches of time where a fitting slot may start are cut (``_Plan.stretches``),
    a day, then two, four... at a time, so the answer is found without cutting the whole
    window when it is near.
    """
    spec = ScheduleSpec.from_row(sched)
    fitting: list[Slot] = []
    for lo, hi in plan.stretches:
        start, span = lo, timedelta(days=1)
        while start < hi and len(fitting) < SLOTS_PER_RESULT:
            stop = min(start + span, hi)
            for slot in free_slots(spec, start, stop, plan.now, taken):
                if plan.fits(slot):
                    fitting.append(slot)
                    if len(fitting) >= SLOTS_PER_RESULT:
                        break
            start, span = stop, span * 2
        if len(fitting) >= SLOTS_PER_RESULT:
            break
    first: Slot | None = None
    if fitting:
        first = fitting[0]
        if plan.window_start > plan.now or plan.days or plan.hours is not None:
            first = first_free(spec, plan.now, taken, until=fitting[0].start) or fitting[0]
    return _ScheduleEval(schedule=sched, first_free=first, fitting=fitting)


def _key(plan: _Plan, ev: _SpecialistEval, rating: dict[int, float]) -> Position | None:
    matched = ev.matched
    if not matched:
        return None
    positions: list[Position] = []
    for s in matched:
        sched = s.schedule
        if plan.sort is SortBy.PRICE:
            positions.append((sched.price_usd_micros, ev.specialist_id, sched.id))
        elif plan.sort is SortBy.RATING:
            positions.append((rating[ev.specialist_id], ev.specialist_id, 0))
        else:
            assert s.first_free is not None
            positions.append((s.first_free.start, ev.specialist_id, sched.id))
    return min(positions, key=plan.rank)


async def _evaluate(
    uow: UnitOfWork, plan: _Plan, specialist_ids: Sequence[int]
) -> dict[int, _SpecialistEval]:
    """Cut the matching schedules of these specialists into slots; store fresh bounds."""
    if not specialist_ids:
        return {}
    session = uow.session
    stmt = (
        select(Schedule, Specialist.rating)
        .join(Specialist, Specialist.id == Schedule.specialist_id)
        .where(*_conditions(plan), Schedule.specialist_id.in_(list(specialist_ids)))
        .order_by(Schedule.id)
    )
    rows = (await session.execute(stmt)).all()
    taken = await seats_taken(session, (s.id for s, _ in rows), plan.now, plan.window_end)
    out = {sid: _SpecialistEval(sid) for sid in specialist_ids}
    rating: dict[int, float] = {}
    bounds: dict[int, datetime] = {}
    for sched, specialist_rating in rows:
        assert sched.specialist_id is not None
        rating[sched.specialist_id] = specialist_rating
        ev = _cut(plan, sched, taken.get(sched.id, {}))
        out[sched.specialist_id].schedules.append(ev)
        if ev.first_free is not None and sched.next_free_at != ev.first_free.start:
            bounds[sched.id] = ev.first_free.start
    await store_next_free(session, bounds)
    for ev_ in out.values():
        ev_.key = _key(plan, ev_, rating)
    return out


# --- the walk ------------------------------------------------------------------------------------


@dataclass
class _Walk:
    emitted: list[_SpecialistEval]
    resume: Position | None  # where the next page starts, or None at the end


def _upto(plan: _Plan, pos: Position) -> ColumnElement[bool]:
    """Rows at or before ``pos`` in the walk."""
    a, b, c = _position_columns(plan)
    if plan.sort is SortBy.RATING:
        lead, value = tuple_(a, b), tuple_(pos[0], pos[1])
    else:
        lead, value = tuple_(a, b, c), tuple_(pos[0], pos[1], pos[2])
    return lead >= value if plan.desc else lead <= value


async def _slice_end(
    uow: UnitOfWork, plan: _Plan, after: Position | None, rows: int
) -> Position | None:
    """The position ``rows`` entries of the walk's index after ``after`` (before any filter),
    or None when fewer are left.

    Read from the index alone, so a slice of the walk costs the same on any catalogue size
    whatever the planner thinks of the filters.
    """
    cols = _position_columns(plan)
    if plan.sort is SortBy.RATING:
        stmt = select(*cols)
        order: tuple[Any, ...] = cols[:2]
    else:
        stmt = select(*cols)
        order = cols
        if plan.sort is SortBy.NEXT_AVAILABLE:
            stmt = stmt.where(Schedule.next_free_at.is_not(None))
    if after is not None:
        stmt = stmt.where(_after(plan, after))
    stmt = stmt.order_by(*(c.desc() if plan.desc else c.asc() for c in order))
    row = (await uow.session.execute(stmt.offset(rows - 1).limit(1))).first()
    return None if row is None else (row[0], row[1], row[2])


async def _walk(uow: UnitOfWork, plan: _Plan) -> _Walk:
    want = plan.query.limit + 1
    after = plan.after
    after_rank = plan.rank(after) if after is not None else None
    heap: list[tuple[tuple[Any, ...], int]] = []
    found: dict[int, _SpecialistEval] = {}
    seen: set[int] = set()
    emitted: list[_SpecialistEval] = []
    examined = scanned = 0
    slice_rows = FIRST_SLICE
    last: Position | None = after
    exhausted = False

    def emit_up_to(pos: Position) -> None:
        here = plan.rank(pos)
        while heap and heap[0][0] <= here and len(emitted) < want:
            emitted.append(found[heapq.heappop(heap)[1]])

    while len(emitted) < want:
        end = await _slice_end(uow, plan, last, slice_rows)
        need = want - len(emitted)
        batch = need + need // 2 + 1  # most specialists met fit; grows when they do not
        stmt = _matching(plan)
        if last is not None:
            stmt = stmt.where(_after(plan, last))
        if end is not None:
            stmt = stmt.where(_upto(plan, end))
        rows = (await uow.session.execute(stmt.limit(batch))).all()
        new_ids = list(dict.fromkeys(r[0] for r in rows if r[0] not in seen))
        evals = await _evaluate(uow, plan, new_ids)
        examined += len(new_ids)
        for row in rows:
            specialist_id = row[0]
            if specialist_id not in seen:
                seen.add(specialist_id)
                ev = evals[specialist_id]
                if ev.key is not None and (after_rank is None or plan.rank(ev.key) > after_rank):
                    found[specialist_id] = ev
                    heapq.heappush(heap, (plan.rank(ev.key), specialist_id))
            last = (row[1], row[2], row[3])
            emit_up_to(last)
            if len(emitted) >= want:
                break
        if len(emitted) >= want:
            break
        if len(rows) < batch:  # the whole slice was read: move past it
            if end is None:
                exhausted = True
                break
            last = end
            emit_up_to(end)
            scanned += slice_rows
            slice_rows = min(slice_rows * 4, MAX_SLICE)
        if examined >= MAX_EXAMINED or scanned >= MAX_SCANNED:
            break
    if exhausted:
        while heap and len(emitted) < want:
            emitted.append(found[heapq.heappop(heap)[1]])
    page = emitted[: plan.query.limit]
    resume = None if exhausted else last
    if len(emitted) > plan.query.limit:
        assert page[-1].key is not None
        resume = page[-1].key
    return _Walk(page, resume)


# --- facets --------------------------------------------------------------------------------------


def _bucket_label(i: int) -> str:
    lo = PRICE_BUCKETS_USD[i]
    if i + 1 < len(PRICE_BUCKETS_USD):
        return f"{lo}-{PRICE_BUCKETS_USD[i + 1]}"
    return f"{lo}+"


async def _facets(uow: UnitOfWork, plan: _Plan) -> Facets:
    """Facet counts over the matches among the first ``FACET_ROWS`` entries of the walk.

    Bounded work on any catalogue: on a small one that is every match, on a large one the
    matches nearest the top of the sort order (``complete`` is then false). One statement:
    the matched ids once, then three aggregates over them.
    """
    end = await _slice_end(uow, plan, None, FACET_ROWS)
    counted = 0
    buckets: dict[int, int] = {}
    skills: list[tuple[str, int]] = []
    for kind, key, count in await uow.session.execute(_facet_counts(plan, end)):
        if kind == "n":
            counted = count
        elif kind == "p":
            buckets[int(key)] = count
        else:
            skills.append((key, count))
    skills.sort(key=lambda sc: (-sc[1], sc[0]))
    return Facets(
        skills=dict(skills[:FACET_SKILLS]),
        price_ranges={
            _bucket_label(i): buckets[i] for i in range(len(PRICE_BUCKETS_USD)) if buckets.get(i)
        },
        counted=counted,
        complete=end is None,
    )


def _facet_counts(plan: _Plan, end: Position | None) -> Select[Any]:
    """(kind, key, count) rows: ``n`` specialists, ``p`` per price bucket, ``s`` per skill."""
    walk = _matching(plan)
    walked = (walk if end is None else walk.where(_upto(plan, end))).subquery("walked")
    ids = select(walked.c.sid).distinct().cte("ids").prefix_with("MATERIALIZED")
    in_ids = select(ids.c.sid)
    price, bounds = Schedule.price_usd_micros, PRICE_BUCKETS_USD
    bucket = case(
        *((price < bounds[i + 1] * 1_000_000, i) for i in range(len(bounds) - 1)),
        else_=len(bounds) - 1,
    )
    fn = func.json_each if plan.sqlite else func.json_array_elements_text
    items = fn(Specialist.skills).table_valued("value").alias("skill")
    parts = [
        select(literal("n"), cast(None, String), func.count()).select_from(ids),
        select(literal("p"), cast(bucket, String), func.count(distinct(Schedule.specialist_id)))
        .where(Schedule.specialist_id.in_(in_ids), *_schedule_conditions(plan))
        .group_by(bucket),
        select(literal("s"), cast(items.c.value, String), func.count())
        .select_from(Specialist)
        .join(items, true())
        .where(Specialist.id.in_(in_ids))
        .group_by(items.c.value),
    ]
    return union_all(*parts)  # type: ignore[return-value]


# --- the services --------------------------------------------------------------------------------


async def _repair_unknown(uow: UnitOfWork, now: datetime) -> None:
    """Compute ``next_free_at`` of searchable schedules that do not have one yet."""
    opaque = _opaque if uow.db.is_sqlite else _same
    stmt = (
        select(Schedule.id)
        .where(
            Schedule.next_free_at.is_(None),
            opaque(Schedule.specialist_id).is_not(None),
            opaque(Schedule.private).is_(False),
            opaque(Schedule.deleted_at).is_(None),
        )
        .limit(NULL_REPAIR)
    )
    ids = (await uow.session.scalars(stmt)).all()
    if ids:
        await refresh_next_free(uow.session, ids, now=now)


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


@dataclass(frozen=True)
class _Detail:
    """How much of each result a page shows; pages over budget drop to the next level."""

    about: int
    title: int
    skills: int
    languages: int
    slots: int
    label: int


DETAIL_LEVELS: tuple[_Detail, ...] = (
    _Detail(about=100, title=64, skills=5, languages=4, slots=3, label=40),
    _Detail(about=64, title=48, skills=4, languages=4, slots=3, label=32),
    _Detail(about=32, title=48, skills=3, languages=3, slots=3, label=24),
    _Detail(about=0, title=40, skills=3, languages=3, slots=3, label=16),
    _Detail(about=0, title=40, skills=3, languages=3, slots=2, label=16),
    _Detail(about=0, title=32, skills=2, languages=2, slots=1, label=0),
)
PAGE_BUDGET_PER_RESULT = 760
"""A page of n results serialises to at most max(n, 10) times this many characters: 7,600
for 10, which leaves room for the call's receipt within 8,000."""


def _hit(plan: _Plan, person: Specialist, ev: _SpecialistEval, detail: _Detail) -> SpecialistHit:
    matched = ev.matched
    shown = sorted((slot for s in matched for slot in s.fitting), key=lambda slot: slot.start)[
        : detail.slots
    ]
    first = min(s.first_free.start for s in matched if s.first_free is not None)
    return SpecialistHit(
        id=person.id,
        name=_clip(person.name, 64),
        title=_clip(person.title, detail.title),
        about=_clip(person.about, detail.about),
        city=person.city,
        country=person.country,
        languages=list(person.languages)[: detail.languages],
        skills=list(person.skills)[: detail.skills],
        rating=person.rating,
        review_count=person.review_count,
        next_available=_iso_utc(first),
        schedules=[
            ScheduleHit(
                id=s.schedule.id,
                label=_clip(s.schedule.label, detail.label),
                slot_minutes=s.schedule.slot_minutes,
                price=Money.of(s.schedule.price_amount, s.schedule.price_currency),
                capacity=s.schedule.capacity,
                slots={
                    slot.slot_id: local_time_range(slot, plan.tz)
                    for slot in shown
                    if slot.schedule_id == s.schedule.id
                },
            )
            for s in matched
        ],
    )


def compact_json(body: Any) -> str:
    """``body`` as compact JSON text, as answers are sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _page_size(page: SearchPage) -> int:
    """Characters of the page as sent: compact JSON, UTF-8 text."""
    return len(compact_json(page.model_dump(mode="json")))


async def search_specialists(
    uow: UnitOfWork, query: SearchQuery, *, now: datetime, facets: Facets | None = None
) -> SearchPage:
    """One page of specialists matching ``query`` at ``now`` (see the module docstring).

    ``ValidationFailed`` names the field for a bad combination (price_max under price_min,
    hours_from without hours_to, a window past 62 days or in the past, a foreign cursor).
    The page stays compact: texts are shortened, and trimmed further when a page would pass
    ``PAGE_BUDGET_PER_RESULT`` characters per result (7,600 for 10 results).
    ``facets``, when given, are this search's facets as counted for another page of it (the
    same ``fingerprint``) at the same ``now`` on the same catalogue: they do not depend on
    the cursor or the page size, so the page uses them instead of counting again.
    Takes an entered unit of work; flushes, never commits.
    """
    plan = _plan(query, now, uow.db.is_sqlite)
    await _repair_unknown(uow, now)
    walk = await _walk(uow, plan)
    people: dict[int, Specialist] = {}
    if walk.emitted:
        ids = [ev.specialist_id for ev in walk.emitted]
        result = await uow.session.scalars(select(Specialist).where(Specialist.id.in_(ids)))
        people = {p.id: p for p in result}
    if facets is None:
        facets = await _facets(uow, plan)
    await uow.flush()
    budget = PAGE_BUDGET_PER_RESULT * max(query.limit, 10)
    page: SearchPage | None = None
    for detail in DETAIL_LEVELS:
        page = SearchPage(
            items=[_hit(plan, people[ev.specialist_id], ev, detail) for ev in walk.emitted],
            facets=facets,
            timezone=query.timezone,
            window_start=_iso_utc(plan.window_start),
            window_end=_iso_utc(plan.window_end),
            next_cursor=_encode_cursor(plan, walk.resume) if walk.resume is not None else None,
        )
        if _page_size(page) <= budget:
            break
    assert page is not None
    return page


async def view_profile(
    uow: UnitOfWork,
    specialist_id: int,
    *,
    now: datetime,
    window_days: int = 14,
    timezone: str = "UTC",
    slots_per_schedule: int = 5,
) -> ProfileView:
    """A specialist's whole profile, with public schedules and their next free slots.

    Slots are those in the next ``window_days`` days, shown in ``timezone`` too.
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
        next_available=_iso_utc(soonest) if soonest is not None else None,
        schedules=views,
    )
