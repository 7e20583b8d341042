"""Cursor paging for lists read newest first: one cursor shape for every list a caller pages.

A list answers ``next_cursor`` (null at the end) and takes it back as ``cursor``. The cursor is
opaque to callers: URL-safe base64 of ``{"before": <last id shown>}``, so the next page starts
below that id whatever was added meanwhile (keyset paging: no row is skipped or shown twice).
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


class HasId(Protocol):
    @property
    def id(self) -> int: ...


def page_of(rows: Sequence[R], limit: int) -> tuple[list[R], str | None]:
    """The first ``limit`` of ``rows`` (read as ``limit + 1``, newest first) and the cursor of
    the page after them (None when nothing is left)."""
    shown = list(rows[:limit])
    more = len(rows) > limit and bool(shown)
    return shown, encode_cursor(shown[-1].id) if more else None
