"""Schedules: validated input, and the services that create, change, list and read them.

Input arrives as ``ScheduleInput`` (create) or ``ScheduleUpdate`` (partial change); build them
with ``parse_schedule_input`` / ``parse_schedule_update``, which turn every problem into one
``ValidationFailed`` listing each bad field by path (``weekly_hours.mon[0]``,
``overrides.2026-03-10``, ``blackout_dates[2]``) with how to fix it.

Weekly hours are ``{"mon": [["09:00", "12:00"], ["13:00", "17:00"]], ...}`` in the schedule's
IANA time zone; ``"24:00"`` ends a range at midnight. Ranges of a day must not overlap (they may
touch). ``overrides`` replace the weekday's ranges on given dates (``[]`` closes the day) and
``blackout_dates`` close whole dates.

The services take an entered ``UnitOfWork`` and flush, never commit: the caller commits, so
billing and events join the same transaction. A schedule belongs to exactly one owner, a
specialist or an agent (``ScheduleOwner``); changing someone else's schedule is ``Forbidden``,
an unknown or deleted id is ``NotFound``, and a private schedule is ``NotFound`` to anyone but
its owner.

Deleting a schedule is a soft delete (``deleted_at``): it disappears from search, listings and
availability, and can no longer be booked, but bookings already made on it stay valid. They are
commitments the owner made; the owner (or the booker) cancels them one by one if needed, which
refunds them by the cancellation policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from sqlalchemy import func, select

from agent_server.accounts.models import Agent
from agent_server.booking.availability import (
    WEEKDAYS,
    ScheduleSpec,
    Slot,
    format_hhmm,
    free_slots,
    parse_hhmm,
    zone,
)
from agent_server.booking.models import SEAT_HOLDING, Booking, Schedule, Specialist
from agent_server.kernel.errors import Forbidden, NotFound, ValidationFailed
from agent_server.kernel.inputs import (
    Amount,
    Day,
    MultilineText,
    Text,
    TimeZone,
    check_moment,
    require,
)
from agent_server.kernel.store import UnitOfWork
from wallets.currencies import CURRENCIES as COINS

CURRENCIES: tuple[str, ...] = ("USD", "USDT", "USDC", "ETH", "BTC")
"""Currencies a schedule may be priced in. Amounts are integers in each one's base unit."""

MIN_SLOT_MINUTES = 15
MAX_SLOT_MINUTES = 24 * 60
MAX_BUFFER_MINUTES = 24 * 60
MAX_NOTICE_MINUTES = 365 * 24 * 60
MAX_CAPACITY = 1000
MAX_PRICE = 2**63 - 1
MAX_AVAILABILITY_WINDOW = timedelta(days=62)
PER_PAGE = 50

# USD micro-dollars per whole coin, used when no live rate is given.
DEFAULT_USD_MICROS_PER_UNIT: Mapping[str, int] = {
    "BTC": 60_000_000_000,
    "ETH": 3_000_000_000,
}

_WEEKDAY_ALIASES = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}


def usd_value(
    amount: int, currency: str, usd_micros_per_unit: Mapping[str, int] | None = None
) -> int:
    """``amount`` (base units of ``currency``) in USD micro-dollars, rounded to the nearest.

    USD is already micro-dollars; USDT and USDC base units are 10^-6, so 1:1. BTC (satoshi)
    and ETH (gwei) use ``usd_micros_per_unit`` (micro-dollars per whole coin), or a static
    default table; their base units come from ``wallets.currencies``.
    """
    code = currency.upper()
    if code in ("USD", "USDT", "USDC"):
        return amount
    rates = usd_micros_per_unit or DEFAULT_USD_MICROS_PER_UNIT
    if code not in COINS or code not in rates:
        raise ValueError(f"no USD rate for {currency!r}")
    unit = int(10 ** COINS[code].decimals)
    return (amount * rates[code] + unit // 2) // unit


# --- input models ----------------------------------------------------------------------------


def _check_range(value: tuple[str, str]) -> tuple[str, str]:
    lo, hi = parse_hhmm(value[0]), parse_hhmm(value[1])
    if lo >= hi:
        raise ValueError(
            f"the range {value[0]}-{value[1]} ends before it starts; write [start, end] "
            "with start before end (24:00 ends at midnight)"
        )
    return format_hhmm(lo), format_hhmm(hi)


def _check_no_overlap(ranges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    ordered = sorted(ranges, key=lambda r: parse_hhmm(r[0]))
    for prev, cur in pairwise(ordered):
        if parse_hhmm(cur[0]) < parse_hhmm(prev[1]):
            raise ValueError(
                f"the ranges {prev[0]}-{prev[1]} and {cur[0]}-{cur[1]} overlap; "
                "merge them or make one end before the other starts"
            )
    return ordered


def _norm_weekday(value: Any) -> Any:
    if isinstance(value, str):
        key = value.strip().lower()
        return _WEEKDAY_ALIASES.get(key, key)
    return value


def _norm_currency(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _norm_skills(value: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for skill in value:
        cleaned = " ".join(skill.split())
        if cleaned:
            seen.setdefault(cleaned, None)
    return list(seen)


HourRange = Annotated[tuple[str, str], AfterValidator(_check_range)]
DayRanges = Annotated[list[HourRange], Field(max_length=48), AfterValidator(_check_no_overlap)]
Weekday = Annotated[
    Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], BeforeValidator(_norm_weekday)
]
TimeZoneName = TimeZone
Currency = Annotated[Literal["USD", "USDT", "USDC", "ETH", "BTC"], BeforeValidator(_norm_currency)]
Skills = Annotated[
    list[Annotated[Text, Field(max_length=64)]], Field(max_length=50), AfterValidator(_norm_skills)
]


class _ScheduleFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("end_date", check_fields=False)
    @classmethod
    def _end_after_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start_date")
        if value is not None and start is not None and value < start:
            raise ValueError(
                f"end_date {value} is before start_date {start}; give an end on or after the start"
            )
        return value


class ScheduleInput(_ScheduleFields):
    """A new schedule. Amounts are integers in the currency's base unit (USD: micro-dollars)."""

    label: Annotated[Text, Field(max_length=255)] = ""
    description: Annotated[MultilineText, Field(max_length=5000)] = ""
    skills: Skills = []
    timezone: TimeZoneName
    weekly_hours: dict[Weekday, DayRanges] = {}
    overrides: Annotated[dict[Day, DayRanges], Field(max_length=1000)] = {}
    blackout_dates: Annotated[list[Day], Field(max_length=1000)] = []
    slot_minutes: Annotated[int, Field(ge=MIN_SLOT_MINUTES, le=MAX_SLOT_MINUTES)] = 60
    buffer_minutes: Annotated[int, Field(ge=0, le=MAX_BUFFER_MINUTES)] = 0
    min_notice_minutes: Annotated[int, Field(ge=0, le=MAX_NOTICE_MINUTES)] = 0
    start_date: Day | None = None
    end_date: Day | None = None
    price_amount: Annotated[Amount, Strict()] = 0
    price_currency: Currency = "USD"
    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY)] = 1
    private: bool = False
    auto_accept: bool = True


class ScheduleUpdate(_ScheduleFields):
    """A partial change: only the fields given are changed (``end_date: null`` clears it)."""

    label: Annotated[Text, Field(max_length=255)] | None = None
    description: Annotated[MultilineText, Field(max_length=5000)] | None = None
    skills: Skills | None = None
    timezone: TimeZoneName | None = None
    weekly_hours: dict[Weekday, DayRanges] | None = None
    overrides: Annotated[dict[Day, DayRanges], Field(max_length=1000)] | None = None
    blackout_dates: Annotated[list[Day], Field(max_length=1000)] | None = None
    slot_minutes: Annotated[int, Field(ge=MIN_SLOT_MINUTES, le=MAX_SLOT_MINUTES)] | None = None
    buffer_minutes: Annotated[int, Field(ge=0, le=MAX_BUFFER_MINUTES)] | None = None
    min_notice_minutes: Annotated[int, Field(ge=0, le=MAX_NOTICE_MINUTES)] | None = None
    start_date: Day | None = None
    end_date: Day | None = None
    price_amount: Annotated[Amount, Strict()] | None = None
    price_currency: Currency | None = None
    capacity: Annotated[int, Field(ge=1, le=MAX_CAPACITY)] | None = None
    private: bool | None = None
    auto_accept: bool | None = None


def field_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a field path: ``("weekly_hours", "mon", 0)`` ->
    ``weekly_hours.mon[0]``."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_VALUE_ERROR_PREFIX = re.compile(r"^(Value|Assertion) error, ")

# What each bounded field means, appended to pydantic's own message so it says how to fix it.
FIELD_HINTS: Mapping[str, str] = {
    "slot_minutes": f"slot length in minutes, {MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES}",
    "buffer_minutes": f"minutes between slots, 0 to {MAX_BUFFER_MINUTES}",
    "min_notice_minutes": f"minimum notice in minutes, 0 to {MAX_NOTICE_MINUTES}",
    "price_amount": "a whole number, 0 or more, in the currency's base unit "
    "(USD: micro-dollars, USDT/USDC: 10^-6, ETH: gwei, BTC: satoshi)",
    "capacity": f"seats per slot, 1 to {MAX_CAPACITY}",
    "start_date": "an ISO date, e.g. 2026-03-02",
    "end_date": "an ISO date, e.g. 2026-12-31",
}


def validation_failed(exc: ValidationError, prefix: str = "") -> ValidationFailed:
    """One ``ValidationFailed`` with an entry per pydantic error (first error per path)."""
    fields: dict[str, str] = {}
    for err in exc.errors(include_url=False):
        path = field_path(err["loc"]) or "input"
        if prefix:
            path = f"{prefix}.{path}"
        message = _VALUE_ERROR_PREFIX.sub("", err["msg"])
        if err["type"] != "value_error" and path in FIELD_HINTS:
            message = f"{message} ({FIELD_HINTS[path]})"
        fields.setdefault(path, message)
    entries = [{"field": f, "message": m} for f, m in fields.items()]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in entries[:3])
    return ValidationFailed(f"invalid input: {summary}", entries)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], raw: Mapping[str, Any]) -> M:
    """``model`` validated from ``raw``, or ``ValidationFailed`` naming each bad field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise validation_failed(exc) from None


def parse_schedule_input(raw: Mapping[str, Any]) -> ScheduleInput:
    """A ``ScheduleInput`` from request data; ``ValidationFailed`` names each bad field."""
    return parse_model(ScheduleInput, raw)


def parse_schedule_update(raw: Mapping[str, Any]) -> ScheduleUpdate:
    """A ``ScheduleUpdate`` from request data; ``ValidationFailed`` names each bad field."""
    return parse_model(ScheduleUpdate, raw)


# --- owners and pages --------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleOwner:
    """Who owns a schedule: exactly one of a specialist or an agent."""

    specialist_id: int | None = None
    agent_id: int | None = None

    def __post_init__(self) -> None:
        if (self.specialist_id is None) == (self.agent_id is None):
            raise ValueError("a schedule owner is exactly one of specialist_id or agent_id")

    @classmethod
    def agent(cls, agent_id: int) -> ScheduleOwner:
        return cls(agent_id=agent_id)

    @classmethod
    def specialist(cls, specialist_id: int) -> ScheduleOwner:
        return cls(specialist_id=specialist_id)

    def owns(self, schedule: Schedule) -> bool:
        if self.agent_id is not None:
            return schedule.agent_id == self.agent_id
        return schedule.specialist_id == self.specialist_id


def owner_of(schedule: Schedule) -> ScheduleOwner:
    """The owner of a schedule row."""
    return ScheduleOwner(specialist_id=schedule.specialist_id, agent_id=schedule.agent_id)


@dataclass(frozen=True)
class SchedulePage:
    """One page of schedules, newest first."""

    items: list[Schedule]
    page: int
    per_page: int
    total: int

    @property
    def has_more(self) -> bool:
        return self.page * self.per_page < self.total


# --- services ----------------------------------------------------------------------------------


def _ranges_json(ranges: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[lo, hi] for lo, hi in ranges]


def _weekly_json(weekly: Mapping[Any, Sequence[tuple[str, str]]]) -> dict[str, list[list[str]]]:
    return {day: _ranges_json(weekly[day]) for day in WEEKDAYS if day in weekly}


def _overrides_json(
    overrides: Mapping[date, Sequence[tuple[str, str]]],
) -> dict[str, list[list[str]]]:
    return {d.isoformat(): _ranges_json(overrides[d]) for d in sorted(overrides)}


def _blackouts_json(dates: Sequence[date]) -> list[str]:
    return [d.isoformat() for d in sorted(set(dates))]


async def _require_owner(uow: UnitOfWork, owner: ScheduleOwner) -> None:
    if owner.agent_id is not None:
        agent = await uow.session.get(Agent, owner.agent_id)
        if agent is None or agent.deleted_at is not None:
            raise NotFound(f"agent {owner.agent_id} not found", {"agent_id": owner.agent_id})
    else:
        specialist = await uow.session.get(Specialist, owner.specialist_id)
        if specialist is None:
            raise NotFound(
                f"specialist {owner.specialist_id} not found",
                {"specialist_id": owner.specialist_id},
            )


def _today_in(tz_name: str, now: datetime) -> date:
    return now.astimezone(zone(tz_name)).date()


def _check_end_after_default_start(data: ScheduleInput, start: date) -> None:
    if data.end_date is not None and data.end_date < start:
        raise ValidationFailed.field(
            "end_date",
            f"end_date {data.end_date} is before the start date {start} (today in the "
            "schedule's time zone); give a later end_date or an earlier start_date",
        )


async def create_schedule(
    uow: UnitOfWork,
    owner: ScheduleOwner,
    data: ScheduleInput,
    *,
    usd_micros_per_unit: Mapping[str, int] | None = None,
) -> Schedule:
    """Publish a schedule for ``owner`` (flushed, not committed).

    Without ``start_date`` the schedule starts today in its own time zone.
    """
    await _require_owner(uow, owner)
    now = uow.clock.now()
    start = data.start_date or _today_in(data.timezone, now)
    _check_end_after_default_start(data, start)
    schedule = Schedule(
        specialist_id=owner.specialist_id,
        agent_id=owner.agent_id,
        label=data.label,
        description=data.description,
        skills=list(data.skills),
        timezone=data.timezone,
        weekly_hours=_weekly_json(data.weekly_hours),
        overrides=_overrides_json(data.overrides),
        blackout_dates=_blackouts_json(data.blackout_dates),
        slot_minutes=data.slot_minutes,
        buffer_minutes=data.buffer_minutes,
        min_notice_minutes=data.min_notice_minutes,
        start_date=start,
        end_date=data.end_date,
        price_amount=data.price_amount,
        price_currency=data.price_currency,
        price_usd_micros=usd_value(data.price_amount, data.price_currency, usd_micros_per_unit),
        capacity=data.capacity,
        private=data.private,
        auto_accept=data.auto_accept,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(schedule)
    await uow.session.flush()
    return schedule


# Fields that change which slots exist or are free.
_AVAILABILITY_FIELDS = frozenset(
    {
        "timezone",
        "weekly_hours",
        "overrides",
        "blackout_dates",
        "slot_minutes",
        "buffer_minutes",
        "min_notice_minutes",
        "start_date",
        "end_date",
        "capacity",
    }
)


def _as_input_dict(schedule: Schedule) -> dict[str, Any]:
    return {
        "label": schedule.label,
        "description": schedule.description,
        "skills": list(schedule.skills),
        "timezone": schedule.timezone,
        "weekly_hours": schedule.weekly_hours,
        "overrides": schedule.overrides,
        "blackout_dates": list(schedule.blackout_dates),
        "slot_minutes": schedule.slot_minutes,
        "buffer_minutes": schedule.buffer_minutes,
        "min_notice_minutes": schedule.min_notice_minutes,
        "start_date": schedule.start_date,
        "end_date": schedule.end_date,
        "price_amount": schedule.price_amount,
        "price_currency": schedule.price_currency,
        "capacity": schedule.capacity,
        "private": schedule.private,
        "auto_accept": schedule.auto_accept,
    }


async def _load_schedule(uow: UnitOfWork, schedule_id: int) -> Schedule:
    schedule = await uow.session.get(Schedule, schedule_id)
    if schedule is None or schedule.deleted_at is not None:
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    return schedule


async def _owned_schedule(uow: UnitOfWork, owner: ScheduleOwner, schedule_id: int) -> Schedule:
    schedule = await _load_schedule(uow, schedule_id)
    if not owner.owns(schedule):
        raise Forbidden(
            f"schedule {schedule_id} belongs to someone else", {"schedule_id": schedule_id}
        )
    return schedule


async def update_schedule(
    uow: UnitOfWork,
    owner: ScheduleOwner,
    schedule_id: int,
    data: ScheduleUpdate,
    *,
    usd_micros_per_unit: Mapping[str, int] | None = None,
) -> Schedule:
    """Change the fields given in ``data`` (flushed, not committed).

    The result is validated as a whole (an ``end_date`` before the stored ``start_date`` is
    refused). Bookings already made keep their slot, seat and price.
    """
    schedule = await _owned_schedule(uow, owner, schedule_id)
    merged = _as_input_dict(schedule)
    merged.update(data.model_dump(exclude_unset=True))
    full = parse_schedule_input(merged)
    schedule.label = full.label
    schedule.description = full.description
    schedule.skills = list(full.skills)
    schedule.timezone = full.timezone
    schedule.weekly_hours = _weekly_json(full.weekly_hours)
    schedule.overrides = _overrides_json(full.overrides)
    schedule.blackout_dates = _blackouts_json(full.blackout_dates)
    schedule.slot_minutes = full.slot_minutes
    schedule.buffer_minutes = full.buffer_minutes
    schedule.min_notice_minutes = full.min_notice_minutes
    schedule.start_date = full.start_date or schedule.start_date
    schedule.end_date = full.end_date
    schedule.price_amount = full.price_amount
    schedule.price_currency = full.price_currency
    schedule.price_usd_micros = usd_value(
        full.price_amount, full.price_currency, usd_micros_per_unit
    )
    schedule.capacity = full.capacity
    schedule.private = full.private
    schedule.auto_accept = full.auto_accept
    if _AVAILABILITY_FIELDS & data.model_fields_set:
        # Search's bound on the next free slot no longer holds; it recomputes unknown ones.
        schedule.next_free_at = None
    schedule.updated_at = uow.clock.now()
    await uow.session.flush()
    return schedule


async def delete_schedule(uow: UnitOfWork, owner: ScheduleOwner, schedule_id: int) -> Schedule:
    """Soft-delete a schedule (flushed, not committed); its existing bookings stay valid."""
    schedule = await _owned_schedule(uow, owner, schedule_id)
    now = uow.clock.now()
    schedule.deleted_at = now
    schedule.updated_at = now
    await uow.session.flush()
    return schedule


async def get_schedule(
    uow: UnitOfWork, schedule_id: int, viewer: ScheduleOwner | None = None
) -> Schedule:
    """A live schedule; a private one only for its owner (``NotFound`` for anyone else)."""
    schedule = await _load_schedule(uow, schedule_id)
    if schedule.private and (viewer is None or not viewer.owns(schedule)):
        raise NotFound(f"schedule {schedule_id} not found", {"schedule_id": schedule_id})
    return schedule


async def list_schedules(
    uow: UnitOfWork,
    owner: ScheduleOwner,
    page: int = 1,
    per_page: int = PER_PAGE,
    *,
    before: int | None = None,
) -> SchedulePage:
    """The owner's live schedules, newest first, ``per_page`` (1-100) at a time; only those
    with an id below ``before`` (a cursor's position: pass page 1 with it) when given."""
    if page < 1:
        raise ValidationFailed.field("page", "pages start at 1")
    if not 1 <= per_page <= 100:
        raise ValidationFailed.field("per_page", "give a page size from 1 to 100")
    if owner.agent_id is not None:
        mine = Schedule.agent_id == owner.agent_id
    else:
        mine = Schedule.specialist_id == owner.specialist_id
    live = (mine, Schedule.deleted_at.is_(None))
    total = (await uow.session.execute(select(func.count(Schedule.id)).where(*live))).scalar_one()
    below = [Schedule.id < before] if before is not None else []
    rows = await uow.session.execute(
        select(Schedule)
        .where(*live, *below)
        .order_by(Schedule.id.desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    )
    return SchedulePage(list(rows.scalars()), page, per_page, int(total))


async def taken_seats(
    uow: UnitOfWork, schedule_ids: Sequence[int], window_start: datetime, window_end: datetime
) -> dict[int, dict[datetime, int]]:
    """Seats held per schedule and slot start (UTC) for slots starting in the window."""
    if not schedule_ids:
        return {}
    rows = await uow.session.execute(
        select(Booking.schedule_id, Booking.slot_start, func.count(Booking.id))
        .where(
            Booking.schedule_id.in_(list(schedule_ids)),
            Booking.slot_start >= window_start,
            Booking.slot_start < window_end,
            Booking.status.in_([s.value for s in SEAT_HOLDING]),
        )
        .group_by(Booking.schedule_id, Booking.slot_start)
    )
    out: dict[int, dict[datetime, int]] = {}
    for schedule_id, start, count in rows:
        out.setdefault(schedule_id, {})[start.astimezone(UTC)] = int(count)
    return out


def check_window(window_start: datetime, window_end: datetime) -> tuple[datetime, datetime]:
    """A valid availability window in UTC, or ``ValidationFailed`` naming the bad end."""
    start = require("window_start", check_moment, window_start)
    end = require("window_end", check_moment, window_end)
    if end <= start:
        raise ValidationFailed.field("window_end", "must be after window_start")
    if end - start > MAX_AVAILABILITY_WINDOW:
        raise ValidationFailed.field(
            "window_end",
            f"the window may span at most {MAX_AVAILABILITY_WINDOW.days} days; ask for less",
        )
    return start, end


async def get_availability(
    uow: UnitOfWork,
    schedule_id: int,
    window_start: datetime,
    window_end: datetime,
    viewer_agent_id: int | None = None,
) -> list[Slot]:
    """Free slots of a schedule starting in the window (at most 62 days), in time order."""
    start, end = check_window(window_start, window_end)
    viewer = ScheduleOwner.agent(viewer_agent_id) if viewer_agent_id is not None else None
    schedule = await get_schedule(uow, schedule_id, viewer)
    taken = (await taken_seats(uow, [schedule.id], start, end)).get(schedule.id, {})
    return free_slots(ScheduleSpec.from_row(schedule), start, end, uow.clock.now(), taken)


async def get_specialist_availability(
    uow: UnitOfWork, specialist_id: int, window_start: datetime, window_end: datetime
) -> list[Slot]:
    """Free slots of all a specialist's public schedules in the window, in time order."""
    start, end = check_window(window_start, window_end)
    if await uow.session.get(Specialist, specialist_id) is None:
        raise NotFound(f"specialist {specialist_id} not found", {"specialist_id": specialist_id})
    rows = await uow.session.execute(
        select(Schedule).where(
            Schedule.specialist_id == specialist_id,
            Schedule.deleted_at.is_(None),
            Schedule.private.is_(False),
        )
    )
    schedules = list(rows.scalars())
    taken = await taken_seats(uow, [s.id for s in schedules], start, end)
    now = uow.clock.now()
    slots: list[Slot] = []
    for schedule in schedules:
        spec = ScheduleSpec.from_row(schedule)
        slots.extend(free_slots(spec, start, end, now, taken.get(schedule.id, {})))
    slots.sort(key=lambda s: (s.start, s.schedule_id))
    return slots
