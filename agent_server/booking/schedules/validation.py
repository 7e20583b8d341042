"""Schedule input: ``ScheduleInput`` (create) and ``ScheduleUpdate`` (partial change), and
``parse_model``, which turns every pydantic problem into one ``ValidationFailed`` listing each
bad field by path (``weekly_hours.mon[0]``, ``overrides.2026-03-10``) with how to fix it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
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

from agent_server.booking.availability import (
    format_hhmm,
    parse_hhmm,
)
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.inputs import (
    Amount,
    Day,
    MultilineText,
    Text,
    TimeZone,
)

MIN_SLOT_MINUTES = 15
MAX_SLOT_MINUTES = 24 * 60
MAX_BUFFER_MINUTES = 24 * 60
MAX_NOTICE_MINUTES = 365 * 24 * 60
MAX_CAPACITY = 1000
MAX_PRICE = 2**63 - 1

_WEEKDAY_ALIASES = {
    "monday": "mon",
    "tuesday": "tue",
    "wednesday": "wed",
    "thursday": "thu",
    "friday": "fri",
    "saturday": "sat",
    "sunday": "sun",
}


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
