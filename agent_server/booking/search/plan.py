"""The plan: a query resolved against the clock, the one input of every later step.

``make_plan(query, now, sqlite)`` checks what needs the clock or two fields at once
(``ValidationFailed`` names the field) and gives a frozen ``Plan``: the window in UTC, the
price bounds in USD micros, the folded words, the days and hours, the sort and direction, the
position a cursor resumes after, and the backend (``sqlite``: SQL differs per dialect).
``Plan.rank`` orders walk positions; ``Plan.fits`` and ``Plan.stretches`` say which free slots
count. Nothing here touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from typing import Any
from zoneinfo import ZoneInfo

from agent_server.booking.availability import (
    ALL_BLOCKS,
    BLOCKS_FROM,
    BLOCKS_UNTIL,
    Slot,
    Week,
    blocks_of,
    parse_hhmm,
    week_of,
    zone,
)
from agent_server.booking.schedules.usd import usd_value
from agent_server.booking.search.cursor import Position, decode_cursor
from agent_server.booking.search.query import (
    DEFAULT_ORDER,
    DEFAULT_WINDOW_DAYS,
    MAX_DAYS_AHEAD,
    MAX_PRICE_BOUND,
    MAX_WINDOW_DAYS,
    WEEKDAYS,
    Order,
    SearchQuery,
    SortBy,
)
from agent_server.booking.search.text import fold
from agent_server.kernel.errors import ValidationFailed


@dataclass(frozen=True)
class Plan:
    """A query resolved against the clock: what every later step of a search reads."""

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

    @cached_property
    def stretch_week(self) -> Week | None:
        """The minutes of the week (UTC) the stretches touch; None when they touch all of it.
        A schedule whose hours never meet them has no fitting slot (``may_start_in``)."""
        return week_of(self.stretches)

    @cached_property
    def asked_blocks(self) -> int | None:
        """The blocks of a week in UTC the stretches touch (``availability.blocks_of``): a
        schedule whose ``start_blocks`` miss them all has no fitting slot, and the walk
        leaves it in the index. None when they leave no block out, or when the window
        reaches outside the years ``start_blocks`` holds for."""
        week = self.stretch_week
        if week is None:
            return None
        if self.stretches:
            first = self.stretches[0][0].date() - timedelta(days=2)
            last = self.stretches[-1][1].date() + timedelta(days=2)
            if first < BLOCKS_FROM or last > BLOCKS_UNTIL:
                return None
        blocks = blocks_of(week)
        return None if blocks == ALL_BLOCKS else blocks

    @property
    def longest_slot(self) -> int | None:
        """The longest slot, in minutes, that fits within the hours asked (None: no hours).

        ``fits`` wants a slot to start at or after ``hours_from`` and end by ``hours_to``
        (local wall time, the range wrapping past midnight when it ends earlier), so no
        longer slot ever fits: SQL leaves such schedules out before any is cut.
        """
        if self.hours is None:
            return None
        lo, hi = self.hours
        return hi - lo if lo < hi else hi + 24 * 60 - lo

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


def make_plan(query: SearchQuery, now: datetime, sqlite: bool) -> Plan:
    """``query`` at ``now`` on a SQLite (``sqlite``) or PostgreSQL database; ``ValidationFailed``
    names the field of a combination that cannot be searched."""
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
    plan = Plan(
        query=query,
        now=now,
        tz=tz,
        window_start=window_start,
        window_end=window_end,
        usd_min=_usd_bound(query.price_min, query.currency, "price_min"),
        usd_max=_usd_bound(query.price_max, query.currency, "price_max"),
        words=tuple(w for w in fold(query.q or "").split() if w)[:10],
        days=frozenset(WEEKDAYS.index(d) for d in query.days_of_week),
        hours=hours,
        sort=sort,
        desc=order is Order.DESC,
        after=None,
        sqlite=sqlite,
    )
    if query.cursor is not None:
        plan = replace(plan, after=decode_cursor(query.cursor, query.fingerprint(), sort))
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
