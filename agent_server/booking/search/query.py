"""The query: filters, sort and page of a specialist search, as the caller gives them.

``SearchQuery`` validates each field on its own (``SearchQuery.parse`` names each bad field);
combinations that need the clock (a window in the past, hours given by half) are checked when
``plan.make_plan`` resolves the query. ``fingerprint()`` is what a cursor is tied to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agent_server.booking.availability import parse_hhmm, zone
from agent_server.booking.schedules.validation import parse_model
from agent_server.booking.search.text import normalize_skill
from agent_server.kernel.inputs import Day, Text, TimeZone

DEFAULT_WINDOW_DAYS = 7
MAX_WINDOW_DAYS = 62
MAX_DAYS_AHEAD = 365
"""Window bounds in days: the default length, the longest, and how far ahead it may start."""


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_ALIASES = {
    full: short
    for short, full in zip(
        WEEKDAYS,
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
        strict=True,
    )
}
_SKILL = re.compile(r"^[a-z0-9][a-z0-9+#.-]{0,63}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


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
            description="Words that must all appear in name, title, about or skills.",
        ),
    ] = None
    skills: Annotated[
        list[Text],
        Field(
            max_length=10,
            description="ALL of them, e.g. ['tax-law', 'vat'] ('Tax Law' = 'tax-law').",
        ),
    ] = []
    languages: Annotated[
        list[Text],
        Field(
            max_length=10,
            description="ISO 639-1 codes; ANY of them, e.g. ['en', 'de'].",
        ),
    ] = []
    city: Annotated[Text | None, Field(max_length=100)] = None
    country: Annotated[Text | None, Field(description="ISO 3166-1 alpha-2, e.g. 'DE'.")] = None
    price_min: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_PRICE_BOUND,
            description="Per slot, in base units of currency (50 USD = 50000000).",
        ),
    ] = None
    price_max: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_PRICE_BOUND,
            description="Per slot, in base units of currency.",
        ),
    ] = None
    currency: Annotated[
        CurrencyCode,
        Field(description="Of price_min/price_max; prices compare in USD."),
    ] = "USD"
    min_rating: Annotated[float | None, Field(ge=1, le=5, description="Mean of reviews.")] = None
    duration: Annotated[
        int | None, Field(ge=15, le=1440, description="Slot length in minutes.")
    ] = None
    days_of_week: Annotated[
        list[Text],
        Field(
            max_length=7,
            description="'mon'..'sun' (or full names), in timezone.",
        ),
    ] = []
    hours_from: Annotated[
        Text | None,
        Field(description="Earliest start, HH:MM in timezone; with hours_to."),
    ] = None
    hours_to: Annotated[
        Text | None,
        Field(description="Latest end, HH:MM (24:00 = midnight; below hours_from wraps)."),
    ] = None
    date_from: Annotated[Day | None, Field(description="In timezone; default today.")] = None
    date_to: Annotated[
        Day | None,
        Field(
            description=f"Inclusive; default date_from + 7 days; at most {MAX_WINDOW_DAYS} days.",
        ),
    ] = None
    timezone: Annotated[
        TimeZone,
        Field(
            max_length=64,
            description="Yours (IANA, e.g. 'Europe/Berlin'), for days, hours, dates, local times.",
        ),
    ] = "UTC"
    sort: Annotated[
        SortBy,
        Field(description="Best, cheapest or soonest first."),
    ] = SortBy.RATING
    order: Annotated[
        Order | None,
        Field(description="Default desc for rating, else asc."),
    ] = None
    cursor: Annotated[
        Text | None,
        Field(max_length=512, description="next_cursor; same filters."),
    ] = None
    limit: Annotated[int, Field(ge=1, le=50)] = 10

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
            if key not in WEEKDAYS:
                raise ValueError(f"{raw!r} is not a weekday; use mon, tue, wed, thu, fri, sat, sun")
            out.setdefault(key, None)
        return sorted(out, key=WEEKDAYS.index)

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
