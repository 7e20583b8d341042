"""Cursor paging for lists read newest first: one cursor shape for every list a caller pages.

A list answers ``next_cursor`` (null at the end) and takes it back as ``cursor``. The cursor is
opaque to callers: URL-safe base64 of ``{"before": <last id shown>}``, so the next page starts
below that id whatever was added meanwhile (keyset paging: no row is skipped or shown twice).

A list sorted by something other than its id (the public agents directory, by name or a time)
keys its cursor on that sort instead: ``{"order": <the sort>, "after": [<sort value of the last
row shown>, <its id>]}`` (``encode_keyset_cursor``), so the next page starts after that row in
the same order, and a cursor from another order is refused rather than read wrongly.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Protocol, TypeVar

from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.inputs import check_id

R = TypeVar("R", bound="HasId")


def encode_cursor(last_id: int) -> str:
    """The cursor of the page after the row with id ``last_id``."""
    return base64.urlsafe_b64encode(json.dumps({"before": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, field: str = "cursor") -> int | None:
    """The id a page starts below, or None for the first page; ``ValidationFailed`` naming
    ``field`` for a cursor this module did not write."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return check_id(value["before"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValidationFailed.field(
            field, "pass the next_cursor of the previous page unchanged"
        ) from None


def encode_keyset_cursor(order: str, key: str | None, last_id: int) -> str:
    """The cursor of the page after the row with id ``last_id`` and sort value ``key`` (as
    text; None for a row without one) in a list sorted by ``order`` then id."""
    raw = json.dumps({"order": order, "after": [key, last_id]}, ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_keyset_cursor(
    cursor: str | None, order: str, field: str = "cursor"
) -> tuple[str | None, int] | None:
    """The sort value and id a page starts after, or None for the first page;
    ``ValidationFailed`` naming ``field`` for a cursor this module did not write or one written
    for another ``order``."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        key, last_id = value["after"]
        if value["order"] != order or not (key is None or isinstance(key, str)):
            raise ValueError("another list's cursor")
        # No NUL and no lone surrogate (encode raises): text every database compares.
        if key is not None and (len(key) > 1000 or "\x00" in key or not key.encode()):
            raise ValueError("not a sort value this module wrote")
        return key, check_id(last_id)
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValidationFailed.field(
            field,
            "pass the next_cursor of the previous page unchanged, with the same sorting",
        ) from None


class HasId(Protocol):
    @property
    def id(self) -> int: ...


def page_of(rows: Sequence[R], limit: int) -> tuple[list[R], str | None]:
    """The first ``limit`` of ``rows`` (read as ``limit + 1``, newest first) and the cursor of
    the page after them (None when nothing is left)."""
    shown = list(rows[:limit])
    more = len(rows) > limit and bool(shown)
    return shown, encode_cursor(shown[-1].id) if more else None
