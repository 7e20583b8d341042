# Long by design: one pure engine (cutting, slot ids, bookability) over one ScheduleSpec.
"""The availability engine: which slots of a schedule are free, and why a time is not bookable.

Pure functions over a ``ScheduleSpec`` (a frozen snapshot of a ``Schedule`` row) and a mapping
of seats already taken per slot start; no database access, so search and booking share them.

How slots are cut
-----------------
Each local day of the schedule (in its IANA zone) has hour ranges: the day's override if there
is one, otherwise the weekly ranges of its weekday. Each range's two ends are turned into UTC
instants, and slots are cut from the start in *elapsed* time: a slot of ``slot_minutes``, then
``buffer_minutes`` of buffer, then the next slot, while a slot still ends by the range's end.
Slot starts and ends are therefore real instants, and a 60-minute slot always lasts 60 minutes.

Daylight-saving changes (only night ranges are touched in practice):

* Spring forward: a local time inside the gap (02:30 in Berlin on the last Sunday of March)
  does not exist; a range end or start that falls there is moved to the end of the gap (the
  first real instant after it, 03:00 CEST). A range 01:00-04:00 on that day lasts two real
  hours and holds two 60-minute slots (01:00 CET and 03:00 CEST).
* Fall back: a local time in the repeated hour is ambiguous; the first occurrence is used
  (``fold=0``, the summer-time reading). A range 01:00-04:00 on the last Sunday of October
  lasts four real hours and holds four 60-minute slots (01:00 CEST, 02:00 CEST, 02:00 CET,
  03:00 CET).

Cutting in elapsed time (rather than stepping the wall clock) means slots never overlap in real
time, so a specialist with one seat is never booked twice for the same minute.

Slot ids are ``"<schedule_id>-YYYYMMDDTHHMMZ"`` with the start in UTC, e.g. ``"12-20260302T0800Z"``.
"""

from __future__ import annotations

import re
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.inputs import BIGINT_MAX, YEARS

if TYPE_CHECKING:
    from agent_server.booking.models import Schedule

REASON_OUTSIDE_HOURS = "outside_hours"
REASON_BLACKOUT = "blackout"
REASON_NOTICE = "notice"
REASON_FULL = "full"
REASON_PAST = "past"
REASON_OUTSIDE_DATE_RANGE = "outside_date_range"
UNBOOKABLE_REASONS: frozenset[str] = frozenset(
    {
        REASON_OUTSIDE_HOURS,
        REASON_BLACKOUT,
        REASON_NOTICE,
        REASON_FULL,
        REASON_PAST,
        REASON_OUTSIDE_DATE_RANGE,
    }
)
"""Every reason ``unbookable_reason`` can give; BOOKING_CONFLICT details carry one of them."""

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday keys of ``weekly_hours``, indexed by ``date.weekday()``."""

MINUTES_PER_DAY = 24 * 60

Range = tuple[int, int]
"""A local hour range as minutes since local midnight: ``(540, 720)`` is 09:00-12:00."""

_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_SLOT_ID = re.compile(r"^([1-9]\d{0,18})-(\d{8}T\d{4})Z$")
SLOT_ID_FORMAT_HINT = "use '<schedule_id>-YYYYMMDDTHHMMZ' as returned by get-availability"
# Slot times are refused outside these years: nothing is bookable there, and near the ends of
# the calendar a slot's local date in its time zone would not exist.
SLOT_YEARS = YEARS


def parse_hhmm(text: str) -> int:
    """``"09:30"`` -> 570 minutes; ``"24:00"`` (end of day) is allowed. ``ValueError`` otherwise."""
    match = _HHMM.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{text!r} is not a time; write HH:MM from 00:00 to 24:00")
    minutes = int(match.group(1)) * 60 + int(match.group(2))
    if minutes > MINUTES_PER_DAY:
        raise ValueError(f"{text!r} is past 24:00")
    return minutes


def format_hhmm(minutes: int) -> str:
    """570 -> ``"09:30"``."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _ranges(raw: Iterable[Any]) -> tuple[Range, ...]:
    return _parsed_ranges(tuple((r[0], r[1]) for r in raw))


@lru_cache(maxsize=4096)
def _parsed_ranges(raw: tuple[tuple[Any, Any], ...]) -> tuple[Range, ...]:
    """Ranges parsed once per pattern: schedules repeat a few (a process keeps thousands of
    specs, which share them)."""
    return tuple(sorted((parse_hhmm(lo), parse_hhmm(hi)) for lo, hi in raw))


@lru_cache(maxsize=4096)
def _week(days: tuple[tuple[str, tuple[Range, ...]], ...]) -> Mapping[str, tuple[Range, ...]]:
    """A week of ranges by day, read-only, one shared mapping per pattern."""
    return MappingProxyType(dict(days))


@dataclass(frozen=True)
class Slot:
    """One bookable slot: its schedule, UTC start and end, and the seats still free."""

    schedule_id: int
    start: datetime
    end: datetime
    seats_left: int

    @property
    def slot_id(self) -> str:
        return make_slot_id(self.schedule_id, self.start)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: ids and ISO-8601 UTC times."""
        return {
            "slot_id": self.slot_id,
            "schedule_id": self.schedule_id,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "seats_left": self.seats_left,
        }

    def ref(self) -> dict[str, str]:
        """The short form BOOKING_CONFLICT details use for the next available slot."""
        return {"slot_id": self.slot_id, "start": _iso(self.start), "end": _iso(self.end)}


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def make_slot_id(schedule_id: int, start: datetime) -> str:
    """The slot id of a schedule's slot starting at ``start`` (aware)."""
    return f"{schedule_id}-{start.astimezone(UTC):%Y%m%dT%H%M}Z"


def parse_slot_id(slot_id: str) -> tuple[int, datetime]:
    """``"12-20260302T0800Z"`` -> ``(12, 2026-03-02 08:00 UTC)``; ``ValidationFailed`` on junk."""
    match = _SLOT_ID.match(slot_id.strip()) if isinstance(slot_id, str) else None
    if match is None:
        raise ValidationFailed.field(
            "slot_id", f"{slot_id!r} is not a slot id; {SLOT_ID_FORMAT_HINT}"
        )
    try:
        start = datetime.strptime(match.group(2), "%Y%m%dT%H%M").replace(tzinfo=UTC)
    except ValueError:
        raise ValidationFailed.field(
            "slot_id", f"{slot_id!r} names an impossible date; {SLOT_ID_FORMAT_HINT}"
        ) from None
    if not SLOT_YEARS[0] <= start.year <= SLOT_YEARS[1]:
        raise ValidationFailed.field(
            "slot_id",
            f"{slot_id!r} is not between the years {SLOT_YEARS[0]} and {SLOT_YEARS[1]}; "
            f"{SLOT_ID_FORMAT_HINT}",
        )
    schedule_id = int(match.group(1))
    if schedule_id > BIGINT_MAX:
        raise ValidationFailed.field(
            "slot_id", f"{slot_id!r} names no schedule (ids end at {BIGINT_MAX})"
        )
    return schedule_id, start


@lru_cache(maxsize=1024)
def zone(key: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA key (cached)."""
    return ZoneInfo(key)


_NO_DATES: frozenset[date] = frozenset()


@lru_cache(maxsize=4096)
def _shared_dates(dates: frozenset[date]) -> frozenset[date]:
    """One set per distinct set of blackout dates, as ``_week`` keeps one week per pattern:
    schedules repeat holidays, and a process keeps thousands of specs."""
    return dates


_NO_OVERRIDES: Mapping[date, tuple[Range, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What the engine needs of a schedule, with hour ranges parsed to minutes.

    ``weekly_hours`` maps ``"mon"``..``"sun"`` to sorted ranges; ``overrides`` maps local
    dates to ranges replacing the weekday's (empty: closed); ``blackout_dates`` are closed
    local dates; ``start_date``/``end_date`` bound the local dates with slots (inclusive).
    """

    id: int
    timezone: str
    weekly_hours: Mapping[str, tuple[Range, ...]] = field(hash=False)
    slot_minutes: int
    overrides: Mapping[date, tuple[Range, ...]] = field(
        default_factory=lambda: _NO_OVERRIDES, hash=False
    )
    blackout_dates: frozenset[date] = frozenset()
    buffer_minutes: int = 0
    min_notice_minutes: int = 0
    start_date: date | None = None
    end_date: date | None = None
    capacity: int = 1

    @classmethod
    def from_row(cls, row: Schedule) -> ScheduleSpec:
        """A spec from a stored (already validated) ``Schedule`` row."""
        return cls.build(
            id=row.id,
            timezone=row.timezone,
            weekly_hours=row.weekly_hours,
            overrides=row.overrides,
            blackout_dates=row.blackout_dates,
            slot_minutes=row.slot_minutes,
            buffer_minutes=row.buffer_minutes,
            min_notice_minutes=row.min_notice_minutes,
            start_date=row.start_date,
            end_date=row.end_date,
            capacity=row.capacity,
        )

    @classmethod
    def build(
        cls,
        *,
        id: int,
        timezone: str,
        weekly_hours: Mapping[str, Iterable[Any]],
        slot_minutes: int,
        overrides: Mapping[str, Iterable[Any]] | Mapping[date, Iterable[Any]] | None = None,
        blackout_dates: Iterable[str | date] = (),
        buffer_minutes: int = 0,
        min_notice_minutes: int = 0,
        start_date: date | None = None,
        end_date: date | None = None,
        capacity: int = 1,
    ) -> ScheduleSpec:
        """A spec from the stored JSON shapes (``{"mon": [["09:00", "12:00"]]}``, ISO dates)."""
        return cls(
            id=id,
            timezone=sys.intern(timezone),
            weekly_hours=_week(
                tuple(sorted((day.lower(), _ranges(r)) for day, r in weekly_hours.items()))
            ),
            slot_minutes=slot_minutes,
            # A process keeps thousands of specs: most have no overrides and no blackouts, and
            # share one empty mapping and one empty set (an empty set takes 216 bytes).
            overrides={_as_date(d): _ranges(r) for d, r in (overrides or {}).items()}
            or _NO_OVERRIDES,
            blackout_dates=_shared_dates(frozenset(_as_date(d) for d in blackout_dates))
            or _NO_DATES,
            buffer_minutes=buffer_minutes,
            min_notice_minutes=min_notice_minutes,
            start_date=start_date,
            end_date=end_date,
            capacity=capacity,
        )

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.timezone)

    def ranges_on(self, day: date) -> tuple[Range, ...]:
        """The local hour ranges of ``day``, ignoring blackouts and the date range."""
        if day in self.overrides:
            return self.overrides[day]
        return self.weekly_hours.get(WEEKDAYS[day.weekday()], ())

    def in_date_range(self, day: date) -> bool:
        if self.start_date is not None and day < self.start_date:
            return False
        return self.end_date is None or day <= self.end_date


def _as_date(value: str | date) -> date:
    return value if isinstance(value, date) else iso_date(value)


@lru_cache(maxsize=4096)
def iso_date(text: str) -> date:
    """The date of an ISO text, one object per text: specs keep thousands of dates, few
    distinct."""
    return date.fromisoformat(text)


@lru_cache(maxsize=4096)
def steady_offset(tz: ZoneInfo, day: date) -> int | None:
    """The UTC offset of ``tz`` in minutes, when it is the same all through the local
    ``day`` (no clock change that day, no wall time shown twice); None on a day it changes."""
    midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
    following = day + timedelta(days=1)
    next_midnight = datetime(following.year, following.month, following.day, tzinfo=tz)
    offsets = {
        moment.utcoffset()
        for wall in (midnight, next_midnight)
        for moment in (wall, wall.replace(fold=1))
    }
    # Offsets at both midnights agree, and the day lasts 24 hours in UTC too.
    span = next_midnight.astimezone(UTC) - midnight.astimezone(UTC)
    if len(offsets) != 1 or span != timedelta(days=1):
        return None
    only = offsets.pop()
    if only is None or only % timedelta(minutes=1):
        return None
    return only // timedelta(minutes=1)


def local_instant(day: date, minutes: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of local wall time ``day`` + ``minutes`` in ``tz``.

    Ambiguous times (the repeated hour) take the first occurrence (``fold=0``); times in a
    spring-forward gap move to the end of the gap (the transition instant).
    """
    day = day + timedelta(days=minutes // MINUTES_PER_DAY)  # "24:00" is the next midnight
    minutes %= MINUTES_PER_DAY
    offset = steady_offset(tz, day)
    if offset is not None:  # no transition that day: plain arithmetic
        return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            minutes=minutes - offset
        )
    wall = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=tz)
    utc = wall.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return utc
    # Nonexistent: fold=0 reads the wall time with the offset from before the gap (a later
    # instant), fold=1 with the offset after it (an earlier one); the transition lies between.
    after_offset = wall.replace(fold=1).utcoffset()
    lo, hi = wall.replace(fold=1).astimezone(UTC), utc
    while hi - lo > timedelta(minutes=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(second=0, microsecond=0)
        if mid.astimezone(tz).utcoffset() == after_offset:
            hi = mid
        else:
            lo = mid
    return hi


def slots_on(spec: ScheduleSpec, day: date) -> Iterator[tuple[datetime, datetime]]:
    """Every slot (UTC start, end) cut from ``day``'s ranges, before any exclusion."""
    tz = spec.tz
    length = timedelta(minutes=spec.slot_minutes)
    step = timedelta(minutes=spec.slot_minutes + spec.buffer_minutes)
    for lo, hi in spec.ranges_on(day):
        start = local_instant(day, lo, tz)
        end = local_instant(day, hi, tz)
        while start + length <= end:
            yield start, start + length
            start += step


def _local_date(when: datetime, tz: ZoneInfo) -> date:
    return when.astimezone(tz).date()


def _open_day(spec: ScheduleSpec, day: date) -> bool:
    return spec.in_date_range(day) and day not in spec.blackout_dates


def free_slots(
    schedule: ScheduleSpec,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    taken: Mapping[datetime, int],
    within: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[Slot]:
    """Free slots starting in ``[window_start, window_end)``, in time order.

    Excludes slots already started (past), starting within the minimum notice, on blackout
    dates, outside the schedule's date range, and those whose seats are all ``taken``
    (seats used per slot start, UTC). ``within``: sorted, disjoint ``[start, end)`` stretches;
    only slots starting in one of them (a search's days and hours, ``Plan.stretches``), found
    without cutting the rest of each day.
    """
    spec = schedule
    earliest = max(window_start, now + timedelta(minutes=spec.min_notice_minutes), now)
    if earliest >= window_end:
        return []
    spans: Sequence[tuple[datetime, datetime]] = (
        [(earliest, window_end)] if within is None else _clipped(within, earliest, window_end)
    )
    if not spans:
        return []
    tz = spec.tz
    day = _local_date(earliest, tz) - timedelta(days=1)
    last = _local_date(window_end, tz) + timedelta(days=1)
    if spec.start_date is not None and day < spec.start_date:
        day = spec.start_date
    if spec.end_date is not None and last > spec.end_date:
        last = spec.end_date
    out: list[Slot] = []
    one_day = timedelta(days=1)
    length = timedelta(minutes=spec.slot_minutes)
    step = timedelta(minutes=spec.slot_minutes + spec.buffer_minutes)
    capacity = spec.capacity
    while day <= last:
        offset = steady_offset(tz, day)
        if offset is not None:  # a plain day: its slots start within its 24 hours
            midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(
                minutes=offset
            )
            if not _clipped(spans, midnight, midnight + one_day):
                day += one_day
                continue
        if day not in spec.blackout_dates:
            # The slots of ``slots_on(spec, day)`` that start in a span, without cutting the
            # ones before or after: a range's starts lie on a grid of ``step`` from its
            # start, so the first one at or after a span's start is found by division (a
            # window of an hour no longer cuts the three days around it).
            for lo, hi in spec.ranges_on(day):
                first = local_instant(day, lo, tz)
                end = local_instant(day, hi, tz)
                for span_start, span_end in _clipped(spans, first, end):
                    start = first
                    if start < span_start:
                        start += -((start - span_start) // step) * step
                    while start + length <= end and start < span_end:
                        left = capacity - taken.get(start, 0)
                        if left > 0:
                            out.append(Slot(spec.id, start, start + length, left))
                        start += step
        day += one_day
    out.sort(key=lambda s: s.start)
    return out


def _clipped(
    spans: Sequence[tuple[datetime, datetime]], lo: datetime, hi: datetime
) -> list[tuple[datetime, datetime]]:
    """The parts of the sorted, disjoint ``spans`` that lie in ``[lo, hi)``."""
    i = max(bisect_right(spans, (lo,)) - 1, 0)
    out: list[tuple[datetime, datetime]] = []
    while i < len(spans) and spans[i][0] < hi:
        a, b = spans[i]
        if b > lo:
            out.append((max(a, lo), min(b, hi)))
        i += 1
    return out


WEEK_MINUTES = 7 * MINUTES_PER_DAY

Week = tuple[tuple[int, int], ...]
"""Minutes of a week in UTC, as sorted, disjoint ``[start, end)`` pairs (Monday 00:00 is 0)."""


def week_of(spans: Sequence[tuple[datetime, datetime]]) -> Week | None:
    """The minutes of the week (UTC) that ``spans`` touch, or None when they touch all of it."""
    parts: list[tuple[int, int]] = []
    for lo, hi in spans:
        lo = lo.astimezone(UTC).replace(second=0, microsecond=0)
        length = -((lo - hi) // timedelta(minutes=1))  # whole minutes, rounded up
        if length >= WEEK_MINUTES:
            return None
        if length > 0:
            start = lo.weekday() * MINUTES_PER_DAY + lo.hour * 60 + lo.minute
            _add_to_week(parts, start, start + length)
    return _merged(parts)


def may_start_in(spec: ScheduleSpec, week: Week, first: datetime, last: datetime) -> bool:
    """False only when no slot of ``spec`` starting in ``[first, last)`` can start in ``week``.

    The schedule's hours (each weekday's ranges, and the overrides of the dates in between)
    are laid on a week in UTC, each range widened to hold it at every offset its zone takes
    in between; a slot starts within one of them. Blackouts, dates, notice and seats are left
    to ``free_slots``: this only spares cutting a schedule whose hours never meet the week.
    """
    tz = spec.tz
    lo_day = first.astimezone(tz).date() - timedelta(days=1)
    hi_day = last.astimezone(tz).date() + timedelta(days=1)
    offsets = _offsets_between(tz, lo_day, hi_day)
    if offsets is None:
        return True
    return _meet(_hours_week(spec, offsets, lo_day, hi_day), week)


def _hours_week(spec: ScheduleSpec, offsets: tuple[int, int], first: date, last: date) -> Week:
    """The schedule's hours laid on a week in UTC: each weekday's ranges, and the overrides
    of the dates from ``first`` to ``last``, each widened to hold it at every offset from
    ``offsets[0]`` to ``offsets[1]`` (minutes)."""
    low, high = offsets
    days = [(weekday, spec.weekly_hours.get(name, ())) for weekday, name in enumerate(WEEKDAYS)]
    days += [(d.weekday(), r) for d, r in spec.overrides.items() if first <= d <= last]
    parts: list[tuple[int, int]] = []
    for weekday, ranges in days:
        base = weekday * MINUTES_PER_DAY
        for a, b in ranges:
            if a < b:
                _add_to_week(parts, base + a - high, base + b - low)
    return _merged(parts)


BLOCK_MINUTES = 180
"""A week in UTC is cut into blocks of three hours for ``start_blocks``: 56 of them."""
ALL_BLOCKS = (1 << (WEEK_MINUTES // BLOCK_MINUTES)) - 1
"""Every block: what a schedule's ``start_blocks`` is until computed, and a search without
days or hours asks for."""
BLOCKS_FROM = date(2020, 1, 1)
BLOCKS_UNTIL = date(2045, 12, 31)
"""The local days ``start_blocks`` holds for: its hours are widened to every UTC offset the
zone takes between them, and a search whose window reaches outside asks for every block."""


def blocks_of(week: Week) -> int:
    """The blocks (bit ``i``: minutes ``[180 i, 180 (i + 1))`` of the week) ``week`` touches."""
    mask = 0
    for a, b in week:
        for i in range(a // BLOCK_MINUTES, (b - 1) // BLOCK_MINUTES + 1):
            mask |= 1 << i
    return mask


def start_blocks(spec: ScheduleSpec) -> int:
    """The blocks of a week in UTC where a slot of ``spec`` can start on any local day from
    ``BLOCKS_FROM`` to ``BLOCKS_UNTIL``: its weekly hours and all its overrides, laid on the
    week as ``may_start_in`` lays them, at every offset the zone takes in those years.

    Stored with the schedule (``schedules.start_blocks``), so a search walking the index
    skips a schedule whose hours never meet the blocks it asks for (``Plan.asked_blocks``)
    without reading or cutting it. It holds what ``may_start_in`` holds for any window in
    those years: when that says a slot may start in a week, the week's blocks meet these.
    """
    offsets = _zone_offsets(spec.tz)
    if offsets is None:
        return ALL_BLOCKS
    return blocks_of(_hours_week(spec, offsets, date.min, date.max))


def start_blocks_changes(rows: Iterable[Sequence[Any]]) -> list[dict[str, int]]:
    """Stored schedules whose ``start_blocks`` differ from what their hours give now: rows of
    (id, timezone, weekly_hours, overrides, slot_minutes, start_blocks) in, one
    ``{"sid": id, "blocks": blocks}`` to write out for each that differs."""
    changes = []
    for sid, timezone, weekly, overrides, minutes, held in rows:
        spec = ScheduleSpec.build(
            id=sid,
            timezone=timezone,
            weekly_hours=weekly or {},
            overrides=overrides or {},
            slot_minutes=minutes,
        )
        blocks = start_blocks(spec)
        if blocks != held:
            changes.append({"sid": sid, "blocks": blocks})
    return changes


@lru_cache(maxsize=1024)
def _zone_offsets(tz: ZoneInfo) -> tuple[int, int] | None:
    """``_offsets_between`` over the years ``start_blocks`` holds for: once per zone (tens of
    milliseconds), kept apart from the searches' windows so they never push it out."""
    return _offsets_between.__wrapped__(tz, BLOCKS_FROM, BLOCKS_UNTIL)


@lru_cache(maxsize=1024)
def _offsets_between(tz: ZoneInfo, first: date, last: date) -> tuple[int, int] | None:
    """The lowest and highest UTC offset (minutes) of ``tz`` from local ``first`` to the end
    of ``last``, or None when one is not whole minutes. At most one change a day, so the
    offsets at each midnight (either reading of it) are all the day takes."""
    seen: set[timedelta] = set()
    day = first
    while day <= last + timedelta(days=1):
        wall = datetime(day.year, day.month, day.day, tzinfo=tz)
        for moment in (wall, wall.replace(fold=1)):
            offset = moment.utcoffset()
            if offset is None or offset % timedelta(minutes=1):
                return None
            seen.add(offset)
        day += timedelta(days=1)
    minute = timedelta(minutes=1)
    return min(seen) // minute, max(seen) // minute


def _add_to_week(parts: list[tuple[int, int]], start: int, end: int) -> None:
    """``[start, end)`` (minutes, any integers) folded onto the week."""
    length = end - start
    if length <= 0:
        return
    if length >= WEEK_MINUTES:
        parts.append((0, WEEK_MINUTES))
        return
    start %= WEEK_MINUTES
    end = start + length
    if end <= WEEK_MINUTES:
        parts.append((start, end))
    else:
        parts.append((start, WEEK_MINUTES))
        parts.append((0, end - WEEK_MINUTES))


def _merged(parts: list[tuple[int, int]]) -> Week:
    out: list[tuple[int, int]] = []
    for a, b in sorted(parts):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return tuple(out)


def _meet(one: Week, other: Week) -> bool:
    """Whether two weeks share a minute."""
    i = j = 0
    while i < len(one) and j < len(other):
        if max(one[i][0], other[j][0]) < min(one[i][1], other[j][1]):
            return True
        if one[i][1] <= other[j][1]:
            i += 1
        else:
            j += 1
    return False


def next_free_slot(
    spec: ScheduleSpec,
    after: datetime,
    now: datetime,
    taken: Mapping[datetime, int],
    horizon_days: int = 90,
) -> Slot | None:
    """The first free slot starting at or after ``after``, within ``horizon_days`` of it."""
    limit = max(after, now) + timedelta(days=horizon_days)
    if spec.end_date is not None:
        # No slot can start after the last local day ends (+1 day covers any offset).
        limit = min(
            limit, datetime.combine(spec.end_date, datetime.min.time(), UTC) + timedelta(days=2)
        )
    chunk = timedelta(days=7)
    start = after
    while start < limit:
        stop = min(start + chunk, limit)
        found = free_slots(spec, start, stop, now, taken)
        if found:
            return found[0]
        start = stop
    return None


def is_slot_start(spec: ScheduleSpec, start: datetime) -> bool:
    """Whether ``start`` is the start of one of the schedule's slots (ignoring exclusions)."""
    for day in _candidate_days(spec, start):
        if any(s == start for s, _ in slots_on(spec, day)):
            return True
    return False


def slot_end(spec: ScheduleSpec, start: datetime) -> datetime:
    """The end of the slot starting at ``start``."""
    return start + timedelta(minutes=spec.slot_minutes)


def _candidate_days(spec: ScheduleSpec, start: datetime) -> list[date]:
    # A slot belongs to the local day of its range; a range end moved past a gap or "24:00"
    # keeps starts on that day, but look at the neighbours too, to be safe.
    d = _local_date(start, spec.tz)
    return [d, d - timedelta(days=1), d + timedelta(days=1)]


def _slot_day(spec: ScheduleSpec, start: datetime) -> date | None:
    for day in _candidate_days(spec, start):
        if any(s == start for s, _ in slots_on(spec, day)):
            return day
    return None


def unbookable_reason(
    spec: ScheduleSpec,
    start: datetime,
    now: datetime,
    taken: Mapping[datetime, int],
) -> str | None:
    """Why a slot starting at ``start`` cannot be booked now, or ``None`` if it can.

    Checked in this order: ``past`` (already started), ``outside_date_range``, ``blackout``,
    ``outside_hours`` (not a slot start of that day), ``notice`` (starts within the minimum
    notice), ``full`` (no seat left).
    """
    start = start.astimezone(UTC)
    if start < now:
        return REASON_PAST
    day = _slot_day(spec, start)
    local_day = day if day is not None else _local_date(start, spec.tz)
    if not spec.in_date_range(local_day):
        return REASON_OUTSIDE_DATE_RANGE
    if local_day in spec.blackout_dates:
        return REASON_BLACKOUT
    if day is None:
        return REASON_OUTSIDE_HOURS
    if start < now + timedelta(minutes=spec.min_notice_minutes):
        return REASON_NOTICE
    if taken.get(start, 0) >= spec.capacity:
        return REASON_FULL
    return None


def days_with_slots(spec: ScheduleSpec, first: date, last: date) -> Iterator[date]:
    """Local days in ``[first, last]`` that are open and have at least one range."""
    day = first
    while day <= last:
        if _open_day(spec, day) and spec.ranges_on(day):
            yield day
        day += timedelta(days=1)
