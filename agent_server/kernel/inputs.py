"""Constrained input types: what may reach the services and the database from outside.

Every surface (MCP tool inputs, REST bodies and parameters, dashboard forms, the CLI) and the
services that parse strings use these, so a value that the database cannot store or that makes
no sense as a time (a NUL character, an integer past the column's range, a date at the end of
the calendar, a time zone the server only knows by accident, a JSON object nested a thousand
deep) is refused as ``VALIDATION_ERROR`` naming the field and what is allowed, before any
statement runs.

Each rule is a plain function (``check_text``, ``check_int``, ``check_moment``, ``check_day``,
``check_zone``, ``check_json``) that raises ``ValueError`` with a message saying what is
allowed; ``require(field, check, value)`` turns that into ``ValidationFailed`` naming the field,
for code outside pydantic. The ``Annotated`` types below run the same functions inside pydantic
models, with a message free of pydantic's "Value error, " prefix.

- Text: no C0 control characters (``\\t`` and ``\\n``, and ``\\r``, only in multi-line text),
  no DEL, no lone surrogates (they cannot be encoded as UTF-8).
- Integers: 64-bit signed for BIGINT columns (ids, amounts), 32-bit for INTEGER columns;
  ids are 1 or more.
- Datetimes: aware, between the years ``YEARS`` after conversion to UTC; dates likewise.
- Time zones: canonical IANA names (``zoneinfo.available_timezones()`` without ``localtime``,
  ``posixrules``, ``Factory`` and the ``posix/`` and ``right/`` copies).
- Free-form JSON: bounded depth, number of values and size.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Annotated, Any, TypeVar
from zoneinfo import available_timezones

from pydantic import AfterValidator, Field, WrapValidator
from pydantic_core import PydanticCustomError

from agent_server.kernel.errors import ValidationFailed

BIGINT_MAX = 2**63 - 1
BIGINT_MIN = -(2**63)
INT_MAX = 2**31 - 1
INT_MIN = -(2**31)
YEARS = (2000, 2200)
"""Datetimes and dates are accepted between these years (inclusive), in UTC."""
JSON_MAX_DEPTH = 8
JSON_MAX_VALUES = 20_000
JSON_MAX_CHARS = 200_000

_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_ALLOWED_IN_MULTILINE = frozenset("\t\n\r")

T = TypeVar("T")


# --- the rules, as plain functions -----------------------------------------------------------


def _shown(value: str, limit: int = 40) -> str:
    """``value`` as a message may quote it: repr, shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_text(value: str, *, multiline: bool = False) -> str:
    """``value`` unchanged if it holds no control characters (tab, newline and carriage
    return are allowed when ``multiline``) and no lone surrogates; ``ValueError`` else."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if value.isprintable():
        return value
    for index, char in enumerate(value):
        code = ord(char)
        if code < 0x20 or code == 0x7F:
            if multiline and char in _ALLOWED_IN_MULTILINE:
                continue
            allowed = (
                "of the control characters only tab and line breaks are allowed"
                if multiline
                else "no control characters are allowed"
            )
            raise ValueError(
                f"contains the control character U+{code:04X} at position {index}; {allowed}"
            )
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(
                f"contains a lone surrogate U+{code:04X} at position {index}; send valid Unicode"
            )
    return value


def check_int(value: int, *, low: int = BIGINT_MIN, high: int = BIGINT_MAX) -> int:
    """``value`` if it is a whole number from ``low`` to ``high``; ``ValueError`` else."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number from {low} to {high}")
    if not low <= value <= high:
        raise ValueError(f"must be a whole number from {low} to {high}")
    return value


def check_id(value: int) -> int:
    """A database id: 1 to 2^63-1."""
    return check_int(value, low=1, high=BIGINT_MAX)


def parse_int(text: str, *, low: int = BIGINT_MIN, high: int = BIGINT_MAX) -> int:
    """A whole number written in decimal digits (with an optional sign), within the range."""
    cleaned = text.strip() if isinstance(text, str) else ""
    digits = cleaned.removeprefix("-").removeprefix("+")
    if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
        raise ValueError(f"must be a whole number from {low} to {high}")
    return check_int(int(cleaned), low=low, high=high)


def check_moment(value: datetime) -> datetime:
    """An aware datetime between the years ``YEARS`` (in UTC), converted to UTC."""
    if not isinstance(value, datetime):
        raise ValueError("must be an ISO 8601 date and time with offset, e.g. 2026-05-04T09:00Z")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("include a UTC offset, e.g. 2026-05-04T09:00:00Z or +02:00")
    low, high = YEARS
    # Offsets are under a day, so the local year is within one of the UTC year: checking it
    # first keeps the conversion from overflowing at the ends of the calendar.
    if not low - 1 <= value.year <= high + 1:
        raise ValueError(f"must be between the years {low} and {high}")
    utc = value.astimezone(UTC)
    if not low <= utc.year <= high:
        raise ValueError(f"must be between the years {low} and {high} (in UTC)")
    return utc


def check_day(value: date) -> date:
    """A date between the years ``YEARS``."""
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError("must be an ISO date, e.g. 2026-05-04")
    low, high = YEARS
    if not low <= value.year <= high:
        raise ValueError(f"must be between the years {low} and {high}")
    return value


@lru_cache(maxsize=1)
def canonical_zones() -> frozenset[str]:
    """The IANA time zone names accepted: the system's list without its aliases of the local
    zone and its copies under ``posix/`` and ``right/``."""
    return frozenset(
        name
        for name in available_timezones()
        if name not in _NOT_ZONES and not name.startswith(("posix/", "right/"))
    )


def check_zone(value: str) -> str:
    """A canonical IANA time zone name (surrounding spaces removed)."""
    key = value.strip() if isinstance(value, str) else ""
    if key not in canonical_zones():
        shown = _shown(value) if isinstance(value, str) else "this value"
        raise ValueError(
            f"{shown} is not an IANA time zone; use a name like 'Europe/Berlin' or 'UTC'"
        )
    return key


def check_json(
    value: T,
    *,
    max_depth: int = JSON_MAX_DEPTH,
    max_values: int = JSON_MAX_VALUES,
    max_chars: int = JSON_MAX_CHARS,
) -> T:
    """``value`` if it is plain JSON (objects with string keys, arrays, strings, finite
    numbers within 64 bits, booleans, null) at most ``max_depth`` deep, with at most
    ``max_values`` values and ``max_chars`` characters as JSON, its strings and keys free of
    control characters other than tab and line breaks. Walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > max_values:
            raise ValueError(f"has more than {max_values} values; send less")
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(f"is nested more than {max_depth} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ValueError("must have string keys")
                    check_text(key, multiline=True)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            check_text(item, multiline=True)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            check_int(item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("must not hold NaN or infinite numbers")
        else:
            raise ValueError("must be JSON: objects, arrays, strings, numbers, booleans, null")
    if len(json.dumps(value, ensure_ascii=False)) > max_chars:
        raise ValueError(f"is larger than {max_chars} characters as JSON; send less")
    return value


def require(field: str, check: Callable[[T], T], value: T) -> T:
    """``check(value)``, with its ``ValueError`` as a ``ValidationFailed`` naming ``field``."""
    try:
        return check(value)
    except ValueError as exc:
        raise ValidationFailed.field(field, str(exc)) from None


# --- the same rules as pydantic types ----------------------------------------------------------


def _pydantic(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``check`` raising pydantic's error type, so the message reaches the caller as is."""

    def validate(value: Any) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            raise PydanticCustomError("invalid_input", "{reason}", {"reason": str(exc)}) from None

    return validate


def _json_before(value: Any, handler: Callable[[Any], Any]) -> Any:
    """Bound the raw value before pydantic walks it, then validate it as declared."""
    _pydantic(check_json)(value)
    return handler(value)


Text = Annotated[str, AfterValidator(_pydantic(check_text))]
"""One line of text: no control characters."""
MultilineText = Annotated[str, AfterValidator(_pydantic(lambda v: check_text(v, multiline=True)))]
"""Text that may hold tabs and line breaks, and no other control characters."""
BigInt = Annotated[int, Field(ge=BIGINT_MIN, le=BIGINT_MAX)]
Int32 = Annotated[int, Field(ge=INT_MIN, le=INT_MAX)]
Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
Amount = Annotated[int, Field(ge=0, le=BIGINT_MAX)]
"""A non-negative amount in a currency's base unit (a BIGINT column)."""
Moment = Annotated[datetime, AfterValidator(_pydantic(check_moment))]
"""An aware datetime in the accepted years, converted to UTC."""
Day = Annotated[date, AfterValidator(_pydantic(check_day))]
TimeZone = Annotated[str, Field(max_length=64), AfterValidator(_pydantic(check_zone))]
JsonObject = Annotated[dict[str, Any], WrapValidator(_json_before)]
"""A free-form JSON object of bounded depth, count and size."""

__all__ = [
    "BIGINT_MAX",
    "BIGINT_MIN",
    "INT_MAX",
    "INT_MIN",
    "JSON_MAX_CHARS",
    "JSON_MAX_DEPTH",
    "JSON_MAX_VALUES",
    "YEARS",
    "Amount",
    "BigInt",
    "Day",
    "Id",
    "Int32",
    "JsonObject",
    "Moment",
    "MultilineText",
    "Text",
    "TimeZone",
    "canonical_zones",
    "check_day",
    "check_id",
    "check_int",
    "check_json",
    "check_moment",
    "check_text",
    "check_zone",
    "parse_int",
    "require",
]
