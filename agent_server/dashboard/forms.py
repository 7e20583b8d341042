"""HTML form fields to service inputs: money, weekly hours, dates, lists, the specialist profile.

Forms send flat text fields; these functions turn them into the dictionaries the services
validate (``parse_schedule_input``, ``SpecialistProfile``) and map the services' field paths
back to the form's field names, so an error shows next to the field that caused it.
"""

# Long by design: pure parsers and error maps for the schedule and profile forms.

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent_server.booking.availability import WEEKDAYS
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.schedules import CURRENCIES, TimeZoneName, parse_model
from agent_server.booking.search.text import normalize_skill, specialist_search_text
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.inputs import (
    BIGINT_MAX,
    INT_MAX,
    INT_MIN,
    Amount,
    MultilineText,
    Text,
    check_text,
    parse_int,
    require,
)
from agent_server.kernel.money import DECIMALS, decimal_text
from agent_server.kernel.store import UnitOfWork

WEEKDAY_NAMES: Mapping[str, str] = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
_RANGE = re.compile(r"^\s*(\d{1,2}:\d{2})\s*(?:-|\u2013|to)\s*(\d{1,2}:\d{2})\s*$")
_SPLIT = re.compile(r"[,;\n]+")


def text(form: Mapping[str, Any], name: str) -> str:
    """The form field ``name``, trimmed ("" when absent); ``ValidationFailed`` naming it when
    it holds control characters other than tabs and line breaks."""
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    return require(name, lambda v: check_text(v, multiline=True), value).strip()


def split_list(value: str) -> list[str]:
    """``"a, b\\nc"`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in _SPLIT.split(value) if part.strip()]


def parse_amount(value: str, currency: str, field: str) -> int:
    """A decimal amount of ``currency`` (``"25.50"``) in its base unit."""
    places = DECIMALS.get(currency.upper())
    if places is None:
        raise ValidationFailed.field(f"{field}_currency", f"choose one of {', '.join(CURRENCIES)}")
    try:
        amount = Decimal(value.replace(",", "").strip() or "0")
    except InvalidOperation:
        raise ValidationFailed.field(field, "enter a number like 25 or 25.50") from None
    if not amount.is_finite() or amount < 0:
        raise ValidationFailed.field(field, "enter an amount of 0 or more")
    if amount.adjusted() + places > 19:
        raise ValidationFailed.field(field, _too_large(currency, places))
    base = amount.scaleb(places)
    if base != base.to_integral_value():
        raise ValidationFailed.field(field, f"{currency} has at most {places} decimals")
    if base > BIGINT_MAX:
        raise ValidationFailed.field(field, _too_large(currency, places))
    return int(base)


def _too_large(currency: str, places: int) -> str:
    most = format_amount(BIGINT_MAX, currency) if places else str(BIGINT_MAX)
    return f"enter at most {most} {currency.upper()}"


def format_amount(amount: int | None, currency: str) -> str:
    """A form field's value: ``"25.50"`` for 25500000 USD (``agent_server.kernel.money``), empty
    for none."""
    return "" if amount is None else decimal_text(amount, currency)


def hours_text(ranges: list[list[str]] | None) -> str:
    """Stored ranges as the form shows them: ``09:00-12:00, 13:00-17:00``."""
    return ", ".join(f"{lo}-{hi}" for lo, hi in ranges or [])


def parse_hours(value: str, field: str) -> list[list[str]]:
    ranges = []
    for part in split_list(value):
        match = _RANGE.match(part)
        if match is None:
            raise ValidationFailed.field(
                field, f"{part!r} is not a range; write hours like 09:00-12:00, 13:00-17:00"
            )
        ranges.append([match.group(1).zfill(5), match.group(2).zfill(5)])
    return ranges


def _int(form: Mapping[str, Any], name: str, default: int) -> int:
    value = text(form, name)
    if not value:
        return default
    try:
        return parse_int(value, low=INT_MIN, high=INT_MAX)
    except ValueError:
        raise ValidationFailed.field(name, "enter a whole number") from None


def schedule_fields(form: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule form as ``parse_schedule_input`` data (every field; for create and edit)."""
    currency = text(form, "price_currency").upper() or "USD"
    weekly: dict[str, list[list[str]]] = {}
    for day in WEEKDAYS:
        ranges = parse_hours(text(form, f"hours_{day}"), f"hours_{day}")
        if ranges:
            weekly[day] = ranges
    raw: dict[str, Any] = {
        "label": text(form, "label"),
        "description": text(form, "description"),
        "skills": split_list(text(form, "skills")),
        "timezone": text(form, "timezone"),
        "weekly_hours": weekly,
        "blackout_dates": split_list(text(form, "blackout_dates")),
        "slot_minutes": _int(form, "slot_minutes", 60),
        "buffer_minutes": _int(form, "buffer_minutes", 0),
        "min_notice_minutes": _int(form, "min_notice_minutes", 0),
        "start_date": text(form, "start_date") or None,
        "end_date": text(form, "end_date") or None,
        "price_amount": parse_amount(text(form, "price"), currency, "price"),
        "price_currency": currency,
        "capacity": _int(form, "capacity", 1),
        "private": form.get("private") == "on",
        "auto_accept": form.get("auto_accept") == "on",
    }
    return raw


def schedule_form_values(schedule: Schedule | None) -> dict[str, str | bool]:
    """A schedule as the form's field values (defaults for a new one)."""
    if schedule is None:
        values: dict[str, str | bool] = {
            "label": "",
            "description": "",
            "skills": "",
            "timezone": "UTC",
            "blackout_dates": "",
            "slot_minutes": "60",
            "buffer_minutes": "0",
            "min_notice_minutes": "0",
            "start_date": "",
            "end_date": "",
            "price": "0",
            "price_currency": "USD",
            "capacity": "1",
            "private": False,
            "auto_accept": True,
        }
        for day in WEEKDAYS:
            values[f"hours_{day}"] = ""
        return values
    values = {
        "label": schedule.label,
        "description": schedule.description,
        "skills": ", ".join(schedule.skills),
        "timezone": schedule.timezone,
        "blackout_dates": ", ".join(schedule.blackout_dates),
        "slot_minutes": str(schedule.slot_minutes),
        "buffer_minutes": str(schedule.buffer_minutes),
        "min_notice_minutes": str(schedule.min_notice_minutes),
        "start_date": schedule.start_date.isoformat(),
        "end_date": schedule.end_date.isoformat() if schedule.end_date else "",
        "price": format_amount(schedule.price_amount, schedule.price_currency),
        "price_currency": schedule.price_currency,
        "capacity": str(schedule.capacity),
        "private": schedule.private,
        "auto_accept": schedule.auto_accept,
    }
    for day in WEEKDAYS:
        values[f"hours_{day}"] = hours_text(schedule.weekly_hours.get(day))
    return values


def form_values(form: Mapping[str, Any], names: list[str]) -> dict[str, str | bool]:
    """What the person typed, to show the form again after an error."""
    out: dict[str, str | bool] = {}
    for name in names:
        if name in ("private", "auto_accept"):
            out[name] = form.get(name) == "on"
        else:
            value = form.get(name)
            out[name] = value.strip() if isinstance(value, str) else ""
    return out


SCHEDULE_FORM_FIELDS = [
    *(f"hours_{day}" for day in WEEKDAYS),
    *schedule_form_values(None),
]

_PATH_TO_FORM = (
    ("weekly_hours.", "hours_"),
    ("blackout_dates", "blackout_dates"),
    ("price_amount", "price"),
    ("skills", "skills"),
)


def form_field(path: str) -> str:
    """A service's field path as the form field it came from: ``weekly_hours.mon[0]`` ->
    ``hours_mon``, ``blackout_dates[2]`` -> ``blackout_dates``, ``price_amount`` -> ``price``."""
    for prefix, name in _PATH_TO_FORM:
        if path.startswith(prefix):
            if name == "hours_":
                return "hours_" + path[len(prefix) :].split("[")[0].split(".")[0]
            return name
    return path.split("[")[0].split(".")[0]


def field_errors(exc: ValidationFailed) -> dict[str, str]:
    """``{form field: message}`` from a ``ValidationFailed`` (the first message per field)."""
    out: dict[str, str] = {}
    for entry in exc.details.get("fields", []):
        out.setdefault(form_field(str(entry.get("field", ""))), str(entry.get("message", "")))
    return out


# --- the specialist's profile ----------------------------------------------------------------


def _language(code: str) -> str:
    value = code.strip().lower()
    if not re.fullmatch(r"[a-z]{2,3}", value):
        raise ValueError(f"{code!r} is not a language code; use ISO 639-1 codes like en, de")
    return value


MAX_EDUCATION = 10


def parse_education(value: str) -> list[dict[str, Any]]:
    """One line per degree: ``degree, field, institution, year`` (the year optional), as
    ``{"degree", "field", "institution", "year"}``; ``ValidationFailed`` on ``education``."""
    lines = [line.strip() for line in value.splitlines() if line.strip()]
    if len(lines) > MAX_EDUCATION:
        raise ValidationFailed.field("education", f"list at most {MAX_EDUCATION} degrees")
    out: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        parts = [p.strip() for p in line.split(",")]
        year: int | None = None
        if len(parts) == 4:
            try:
                year = parse_int(parts[3], low=1900, high=2200)
            except ValueError:
                raise ValidationFailed.field(
                    "education", f"line {number}: the year {parts[3]!r} is not a year like 2012"
                ) from None
            parts = parts[:3]
        if len(parts) != 3 or not all(parts) or any(len(p) > 200 for p in parts):
            raise ValidationFailed.field(
                "education",
                f"line {number}: write degree, field, institution, year, e.g. "
                "LL.M., Tax law, University of Vienna, 2012",
            )
        degree, subject, institution = parts
        out.append({"degree": degree, "field": subject, "institution": institution, "year": year})
    return out


def education_text(entries: list[dict[str, Any]]) -> str:
    """Stored degrees as the form shows them, one per line."""
    lines = []
    for entry in entries or []:
        parts = [str(entry.get(k) or "") for k in ("degree", "field", "institution")]
        if entry.get("year"):
            parts.append(str(entry["year"]))
        lines.append(", ".join(parts))
    return "\n".join(lines)


class SpecialistProfile(BaseModel):
    """What a specialist may change about themselves on the dashboard."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[Text, Field(min_length=1, max_length=255)]
    title: Annotated[Text, Field(max_length=255)] = ""
    about: Annotated[MultilineText, Field(max_length=5000)] = ""
    city: Annotated[Text, Field(max_length=100)] = ""
    country: Annotated[str, Field(pattern=r"^([A-Z]{2})?$")] = ""
    timezone: TimeZoneName
    languages: Annotated[list[Text], Field(max_length=20)] = []
    skills: Annotated[list[Annotated[Text, Field(max_length=64)]], Field(max_length=50)] = []
    education: Annotated[list[dict[str, Any]], Field(max_length=MAX_EDUCATION)] = []
    hourly_rate: Amount | None = None
    rate_currency: str = "USD"
    phone: Annotated[Text, Field(max_length=40)] | None = None

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_language(v) for v in value))

    @field_validator("skills")
    @classmethod
    def _skills(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(s for s in (normalize_skill(v) for v in value) if s))

    @field_validator("rate_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        code = value.strip().upper()
        if code not in CURRENCIES:
            raise ValueError(f"choose one of {', '.join(CURRENCIES)}")
        return code


PROFILE_FORM_FIELDS = [
    "name",
    "title",
    "about",
    "city",
    "country",
    "timezone",
    "languages",
    "skills",
    "education",
    "hourly_rate",
    "rate_currency",
    "phone",
]


def profile_fields(form: Mapping[str, Any]) -> SpecialistProfile:
    currency = text(form, "rate_currency").upper() or "USD"
    rate = text(form, "hourly_rate")
    raw: dict[str, Any] = {
        "name": text(form, "name"),
        "title": text(form, "title"),
        "about": text(form, "about"),
        "city": text(form, "city"),
        "country": text(form, "country").upper(),
        "timezone": text(form, "timezone"),
        "languages": split_list(text(form, "languages")),
        "skills": split_list(text(form, "skills")),
        "education": parse_education(text(form, "education")),
        "hourly_rate": parse_amount(rate, currency, "hourly_rate") if rate else None,
        "rate_currency": currency,
        "phone": text(form, "phone") or None,
    }
    return parse_model(SpecialistProfile, raw)


def profile_form_values(specialist: Specialist) -> dict[str, str | bool]:
    return {
        "name": specialist.name,
        "title": specialist.title,
        "about": specialist.about,
        "city": specialist.city,
        "country": specialist.country,
        "timezone": specialist.timezone,
        "languages": ", ".join(specialist.languages),
        "skills": ", ".join(specialist.skills),
        "education": education_text(specialist.education),
        "hourly_rate": format_amount(specialist.hourly_rate, specialist.rate_currency),
        "rate_currency": specialist.rate_currency,
        "phone": specialist.phone or "",
    }


async def update_specialist_profile(
    uow: UnitOfWork, specialist_id: int, data: SpecialistProfile
) -> Specialist:
    """Write ``data`` onto the specialist (flushed, not committed), search text included."""
    specialist = await uow.session.get(Specialist, specialist_id, with_for_update=True)
    if specialist is None:
        raise ValidationFailed.field("specialist", "this profile no longer exists")
    specialist.name = data.name
    specialist.title = data.title
    specialist.about = data.about
    specialist.city = data.city
    specialist.country = data.country
    specialist.timezone = data.timezone
    specialist.languages = list(data.languages)
    specialist.skills = list(data.skills)
    specialist.education = list(data.education)
    specialist.hourly_rate = data.hourly_rate
    specialist.rate_currency = data.rate_currency
    specialist.phone = data.phone
    specialist.search_text = specialist_search_text(data.name, data.title, data.about, data.skills)
    specialist.updated_at = uow.clock.now()
    await uow.session.flush()
    return specialist


NOTIFICATIONS = {
    "notify_new_booking": "A new booking",
    "notify_cancelled": "A booking cancelled by the agent or the system",
    "notify_reminder": "A reminder before each session starts",
}
"""The booking mails a specialist may choose, as the form's checkbox names and labels."""


async def update_notifications(
    uow: UnitOfWork, specialist_id: int, form: Mapping[str, Any]
) -> Specialist:
    """Save which booking mails the specialist receives: a checked box is a yes (flushed)."""
    specialist = await uow.session.get(Specialist, specialist_id, with_for_update=True)
    if specialist is None:
        raise ValidationFailed.field("specialist", "this profile no longer exists")
    for name in NOTIFICATIONS:
        setattr(specialist, name, form.get(name) == "on")
    specialist.updated_at = uow.clock.now()
    await uow.session.flush()
    return specialist
