"""The cursor: a walk position, tied to a query's fingerprint, as opaque text.

``encode_cursor(fingerprint, pos)`` gives the text a page hands out;
``decode_cursor(cursor, fingerprint, sort)`` gives the position back, or refuses
(``ValidationFailed`` on ``cursor``) a cursor that is not one, belongs to another query, or
holds a value the sort cannot compare.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime
from typing import Any

from agent_server.booking.search.query import SortBy
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.inputs import check_int, check_moment

Position = tuple[Any, int, int]
"""A place in the walk: (sort value, specialist id, schedule id); sorting by rating,
(rating, review count, specialist id)."""


def encode_cursor(fingerprint: str, pos: Position) -> str:
    """``pos`` as the ``next_cursor`` of the query with this ``fingerprint``."""
    value = pos[0].isoformat() if isinstance(pos[0], datetime) else pos[0]
    blob = json.dumps({"h": fingerprint, "p": [value, pos[1], pos[2]]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(blob.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fingerprint: str, sort: SortBy) -> Position:
    """The position in ``cursor``, when it was handed out by the query with ``fingerprint``."""
    bad = ValidationFailed.field(
        "cursor", "is not a next_cursor of this search; repeat the search without a cursor"
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        value, specialist_id, schedule_id = data["p"]
        found = data["h"]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if found != fingerprint:
        raise ValidationFailed.field(
            "cursor", "belongs to a search with other filters; repeat the search without it"
        )
    try:
        check_int(specialist_id)
        check_int(schedule_id)
        if sort is SortBy.NEXT_AVAILABLE:
            value = check_moment(datetime.fromisoformat(value))
        elif sort is SortBy.PRICE:
            check_int(value)
        elif isinstance(value, int):
            check_int(value)
        elif not isinstance(value, float) or not math.isfinite(value):
            raise ValueError
    except (ValueError, TypeError):
        raise bad from None
    return (value, specialist_id, schedule_id)
