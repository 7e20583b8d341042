"""The availability engine: slots in local hours, DST days, blackouts, overrides, exclusions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_server.booking.availability import (
    BLOCK_MINUTES,
    REASON_BLACKOUT,
    REASON_FULL,
    REASON_NOTICE,
    REASON_OUTSIDE_DATE_RANGE,
    REASON_OUTSIDE_HOURS,
    REASON_PAST,
    UNBOOKABLE_REASONS,
    ScheduleSpec,
    Slot,
    blocks_of,
    free_slots,
    may_start_in,
    next_free_slot,
    parse_slot_id,
    slots_on,
    start_blocks,
    unbookable_reason,
    week_of,
)
from agent_server.booking.stored_specs import parsed_spec
from agent_server.kernel.errors import ValidationFailed

BERLIN = ZoneInfo("Europe/Berlin")
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def spec(**kw: Any) -> ScheduleSpec:
    base: dict[str, Any] = {
        "id": 7,
        "timezone": "Europe/Berlin",
        "weekly_hours": {},
        "slot_minutes": 60,
    }
    base.update(kw)
    return ScheduleSpec.build(**base)


def starts(slots: list[Slot]) -> list[datetime]:
    return [s.start for s in slots]


def test_spring_forward_sunday_in_berlin_has_fewer_real_hours() -> None:
    # 2026-03-29 is the last Sunday of March: 02:00 CET jumps to 03:00 CEST.
    s = spec(
        weekly_hours={d: [["01:00", "04:00"], ["09:00", "11:00"]] for d in ("sat", "sun", "mon")}
    )
    slots = free_slots(s, utc(2026, 3, 28), utc(2026, 3, 31), LONG_AGO, {})
    assert starts(slots) == [
        # Saturday, CET (UTC+1): three night slots and two morning ones.
        utc(2026, 3, 28, 0),
        utc(2026, 3, 28, 1),
        utc(2026, 3, 28, 2),
        utc(2026, 3, 28, 8),
        utc(2026, 3, 28, 9),
        # Sunday: 01:00 CET and 03:00 CEST, the 02:00 hour does not exist; then CEST mornings.
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 7),
        utc(2026, 3, 29, 8),
        # Monday, CEST (UTC+2).
        utc(2026, 3, 29, 23),
        utc(2026, 3, 30, 0),
        utc(2026, 3, 30, 1),
        utc(2026, 3, 30, 7),
        utc(2026, 3, 30, 8),
    ]
    assert all(x.end - x.start == timedelta(hours=1) for x in slots)
    assert slots[6].slot_id == "7-20260329T0100Z"
    assert slots[6].start.astimezone(BERLIN).hour == 3


def test_fall_back_sunday_in_berlin_has_the_repeated_hour_once_more() -> None:
    # 2026-10-25 is the last Sunday of October: 03:00 CEST falls back to 02:00 CET.
    s = spec(weekly_hours={d: [["01:00", "04:00"], ["09:00", "10:00"]] for d in ("sat", "sun")})
    slots = free_slots(s, utc(2026, 10, 23, 22), utc(2026, 10, 26), LONG_AGO, {})
    assert starts(slots) == [
        utc(2026, 10, 23, 23),  # Saturday 01:00 CEST
        utc(2026, 10, 24, 0),
        utc(2026, 10, 24, 1),
        utc(2026, 10, 24, 7),  # Saturday 09:00 CEST
        utc(2026, 10, 24, 23),  # Sunday 01:00 CEST
        utc(2026, 10, 25, 0),  # 02:00 CEST
        utc(2026, 10, 25, 1),  # 02:00 CET, the repeated hour
        utc(2026, 10, 25, 2),  # 03:00 CET
        utc(2026, 10, 25, 8),  # Sunday 09:00 CET
    ]


def test_range_boundaries_inside_the_spring_gap_move_to_its_end() -> None:
    s = spec(weekly_hours={"sun": [["02:30", "05:00"]]}, slot_minutes=30)
    slots = free_slots(s, utc(2026, 3, 28), utc(2026, 3, 30), LONG_AGO, {})
    # 02:30 does not exist on 29 March; the range starts at 03:00 CEST (01:00 UTC).
    assert starts(slots) == [utc(2026, 3, 29, 1) + timedelta(minutes=30 * i) for i in range(4)]


def test_slots_never_overlap_in_real_time_across_a_dst_change() -> None:
    s = spec(weekly_hours={"sun": [["00:00", "06:00"]]}, slot_minutes=90)
    slots = free_slots(s, utc(2026, 3, 28), utc(2026, 3, 30), LONG_AGO, {})
    assert starts(slots) == [utc(2026, 3, 28, 23), utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 2)]
    for a, b in pairwise(slots):
        assert a.end <= b.start


def test_buffer_separates_slots() -> None:
    s = spec(
        timezone="UTC",
        weekly_hours={"mon": [["09:00", "12:00"]]},
        slot_minutes=45,
        buffer_minutes=15,
    )
    slots = free_slots(s, utc(2026, 3, 2), utc(2026, 3, 3), LONG_AGO, {})
    assert starts(slots) == [utc(2026, 3, 2, 9), utc(2026, 3, 2, 10), utc(2026, 3, 2, 11)]
    assert slots[-1].end == utc(2026, 3, 2, 11, 45)


def test_blackout_date_and_overrides_replace_the_weekly_hours() -> None:
    s = spec(
        weekly_hours={d: [["09:00", "11:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
        blackout_dates=["2026-03-04"],
        overrides={
            "2026-03-05": [["14:00", "15:00"]],
            "2026-03-06": [],
            "2026-03-07": [["10:00", "11:00"]],
        },
    )
    slots = free_slots(s, utc(2026, 3, 2), utc(2026, 3, 9), LONG_AGO, {})
    assert starts(slots) == [
        utc(2026, 3, 2, 8),
        utc(2026, 3, 2, 9),
        utc(2026, 3, 3, 8),
        utc(2026, 3, 3, 9),
        # Wednesday 4 March is blacked out.
        utc(2026, 3, 5, 13),  # Thursday's override, 14:00 CET
        # Friday's override closes the day; Saturday's opens it.
        utc(2026, 3, 7, 9),
    ]
    assert unbookable_reason(s, utc(2026, 3, 4, 8), LONG_AGO, {}) == REASON_BLACKOUT
    assert unbookable_reason(s, utc(2026, 3, 5, 8), LONG_AGO, {}) == REASON_OUTSIDE_HOURS
    assert unbookable_reason(s, utc(2026, 3, 5, 13), LONG_AGO, {}) is None


def test_past_and_within_notice_slots_are_excluded() -> None:
    s = spec(timezone="UTC", weekly_hours={"mon": [["08:00", "13:00"]]}, min_notice_minutes=90)
    now = utc(2026, 3, 2, 9, 15)  # 09:00 has started; 10:00 and 10:30 are within 90 minutes
    slots = free_slots(s, utc(2026, 3, 2), utc(2026, 3, 3), now, {})
    assert starts(slots) == [utc(2026, 3, 2, 11), utc(2026, 3, 2, 12)]
    assert unbookable_reason(s, utc(2026, 3, 2, 9), now, {}) == REASON_PAST
    assert unbookable_reason(s, utc(2026, 3, 2, 10), now, {}) == REASON_NOTICE
    assert unbookable_reason(s, utc(2026, 3, 2, 11), now, {}) is None


def test_full_slots_are_excluded_and_seats_left_counted() -> None:
    s = spec(timezone="UTC", weekly_hours={"mon": [["09:00", "12:00"]]}, capacity=3)
    taken = {utc(2026, 3, 2, 9): 3, utc(2026, 3, 2, 10): 1}
    slots = free_slots(s, utc(2026, 3, 2), utc(2026, 3, 3), LONG_AGO, taken)
    assert [(x.start, x.seats_left) for x in slots] == [
        (utc(2026, 3, 2, 10), 2),
        (utc(2026, 3, 2, 11), 3),
    ]
    assert unbookable_reason(s, utc(2026, 3, 2, 9), LONG_AGO, taken) == REASON_FULL


def test_date_range_bounds_the_slots() -> None:
    s = spec(
        timezone="UTC",
        weekly_hours={d: [["09:00", "10:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
        start_date=date(2026, 3, 3),
        end_date=date(2026, 3, 4),
    )
    slots = free_slots(s, utc(2026, 3, 1), utc(2026, 3, 10), LONG_AGO, {})
    assert starts(slots) == [utc(2026, 3, 3, 9), utc(2026, 3, 4, 9)]
    assert unbookable_reason(s, utc(2026, 3, 2, 9), LONG_AGO, {}) == REASON_OUTSIDE_DATE_RANGE
    assert unbookable_reason(s, utc(2026, 3, 5, 9), LONG_AGO, {}) == REASON_OUTSIDE_DATE_RANGE
    assert next_free_slot(s, utc(2026, 3, 4, 10), LONG_AGO, {}) is None


def test_unaligned_time_is_outside_hours() -> None:
    s = spec(timezone="UTC", weekly_hours={"mon": [["09:00", "12:00"]]})
    assert unbookable_reason(s, utc(2026, 3, 2, 9, 30), LONG_AGO, {}) == REASON_OUTSIDE_HOURS
    assert unbookable_reason(s, utc(2026, 3, 2, 12), LONG_AGO, {}) == REASON_OUTSIDE_HOURS
    assert unbookable_reason(s, utc(2026, 3, 3, 9), LONG_AGO, {}) == REASON_OUTSIDE_HOURS
    assert {
        REASON_OUTSIDE_HOURS,
        REASON_BLACKOUT,
        REASON_NOTICE,
        REASON_FULL,
        REASON_PAST,
        REASON_OUTSIDE_DATE_RANGE,
    } == UNBOOKABLE_REASONS


def test_next_free_slot_skips_full_and_blacked_out_slots() -> None:
    s = spec(
        timezone="UTC",
        weekly_hours={"mon": [["09:00", "11:00"]], "fri": [["09:00", "10:00"]]},
        blackout_dates=["2026-03-06"],
    )
    taken = {utc(2026, 3, 2, 9): 1, utc(2026, 3, 2, 10): 1}
    found = next_free_slot(s, utc(2026, 3, 2), LONG_AGO, taken)
    assert found is not None
    assert found.start == utc(2026, 3, 9, 9)  # Monday full, Friday blacked out
    assert next_free_slot(s, utc(2026, 3, 2), LONG_AGO, taken, horizon_days=5) is None


def test_slot_ids_round_trip_and_junk_is_a_validation_error() -> None:
    slot = Slot(12, utc(2026, 3, 2, 8, 30), utc(2026, 3, 2, 9, 30), 1)
    assert slot.slot_id == "12-20260302T0830Z"
    assert parse_slot_id(slot.slot_id) == (12, slot.start)
    for junk in ("", "abc", "12-20260302T0830", "12-20261302T0830Z", "0-20260302T0830Z", "x-1Z"):
        with pytest.raises(ValidationFailed) as err:
            parse_slot_id(junk)
        assert err.value.details["fields"][0]["field"] == "slot_id"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "UTC"]


@st.composite
def schedules(draw: st.DrawFn) -> ScheduleSpec:
    weekly: dict[str, list[list[str]]] = {}
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
        cuts = sorted(draw(st.sets(st.integers(0, 96), max_size=4)))
        pairs = list(zip(cuts[::2], cuts[1::2], strict=False))
        weekly[day] = [[_hhmm(a * 15), _hhmm(b * 15)] for a, b in pairs]
    return spec(
        timezone=draw(st.sampled_from(ZONES)),
        weekly_hours=weekly,
        slot_minutes=draw(st.sampled_from([15, 30, 45, 60, 90])),
        buffer_minutes=draw(st.sampled_from([0, 5, 15])),
    )


@settings(max_examples=60, deadline=None)
@given(schedules(), st.sampled_from([utc(2026, 3, 26), utc(2026, 10, 1), utc(2026, 10, 22)]))
def test_free_slots_are_ordered_disjoint_and_each_one_bookable(
    s: ScheduleSpec, start: datetime
) -> None:
    slots = free_slots(s, start, start + timedelta(days=14), LONG_AGO, {})
    for a, b in pairwise(slots):
        assert a.end <= b.start
    for x in slots:
        assert x.end - x.start == timedelta(minutes=s.slot_minutes)
        assert unbookable_reason(s, x.start, LONG_AGO, {}) is None
        local = x.start.astimezone(s.tz)
        minutes = local.hour * 60 + local.minute
        in_hours = any(lo <= minutes < hi for lo, hi in s.ranges_on(local.date()))
        # On a DST change day a range is cut in real time, so wall times may shift.
        assert in_hours or _dst_change_on(local.date(), s.tz)


def _dst_change_on(day: date, tz: ZoneInfo) -> bool:
    first = datetime(day.year, day.month, day.day, tzinfo=tz)
    last = first + timedelta(hours=23, minutes=59)
    return first.utcoffset() != last.utcoffset()


def _every_slot_cut(
    s: ScheduleSpec, start: datetime, end: datetime, now: datetime, taken: dict[datetime, int]
) -> list[Slot]:
    """free_slots by definition: every slot of every day near the window, then filtered."""
    earliest = max(start, now + timedelta(minutes=s.min_notice_minutes), now)
    found = []
    day = start.astimezone(s.tz).date() - timedelta(days=2)
    while day <= end.astimezone(s.tz).date() + timedelta(days=2):
        if s.in_date_range(day) and day not in s.blackout_dates:
            for a, b in slots_on(s, day):
                left = s.capacity - taken.get(a, 0)
                if earliest <= a < end and left > 0:
                    found.append(Slot(s.id, a, b, left))
        day += timedelta(days=1)
    return sorted(found, key=lambda x: x.start)


@settings(max_examples=150, deadline=None)
@given(
    schedules(),
    st.sampled_from([utc(2026, 3, 28), utc(2026, 10, 24), utc(2026, 4, 4), utc(2026, 6, 1)]),
    st.integers(0, 4 * 24 * 60 - 1),
    st.integers(1, 3 * 24 * 60),
    st.integers(-3 * 24 * 60, 3 * 24 * 60),
)
def test_free_slots_of_any_window_are_the_cut_slots_that_start_in_it(
    s: ScheduleSpec, day: datetime, offset: int, minutes: int, now_offset: int
) -> None:
    """Windows of a minute to days, at any minute, around clock changes: the slots found
    without cutting the whole days around the window are exactly those that cutting them
    gives (a window of an hour once cut the three days around it)."""
    start = day + timedelta(minutes=offset)
    end = start + timedelta(minutes=minutes)
    now = start + timedelta(minutes=now_offset)
    taken = {x.start: 1 for x in _every_slot_cut(s, start, end, now, {})[::3]}
    assert free_slots(s, start, end, now, taken) == _every_slot_cut(s, start, end, now, taken)


def _merged_stretches(day: datetime, raw: list[tuple[int, int]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for offset, minutes in sorted(raw):
        lo = day + timedelta(minutes=offset)
        hi = lo + timedelta(minutes=minutes)
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


@settings(max_examples=150, deadline=None)
@given(
    schedules(),
    st.sampled_from([utc(2026, 3, 28), utc(2026, 10, 24), utc(2026, 6, 1)]),
    st.lists(st.tuples(st.integers(0, 6 * 24 * 60), st.integers(1, 30 * 60)), max_size=6),
    st.integers(-2 * 24 * 60, 2 * 24 * 60),
)
def test_free_slots_within_stretches_are_those_starting_in_one(
    s: ScheduleSpec, day: datetime, raw: list[tuple[int, int]], now_offset: int
) -> None:
    """A search's days and hours as stretches of the window: the slots found in them are
    exactly the window's free slots that start in one, around clock changes too."""
    merged = _merged_stretches(day, raw)
    start, end = day, day + timedelta(days=7)
    now = start + timedelta(minutes=now_offset)
    taken = {x.start: 1 for x in _every_slot_cut(s, start, end, now, {})[::3]}
    expected = [
        slot
        for slot in free_slots(s, start, end, now, taken)
        if any(lo <= slot.start < hi for lo, hi in merged)
    ]
    assert free_slots(s, start, end, now, taken, merged) == expected


@settings(max_examples=300, deadline=None)
@given(
    schedules(),
    st.sampled_from([utc(2026, 3, 26), utc(2026, 10, 22), utc(2026, 4, 3), utc(2026, 6, 1)]),
    st.lists(
        st.tuples(st.integers(0, 20 * 24 * 60), st.integers(1, 6 * 60)), min_size=1, max_size=8
    ),
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 95), st.integers(1, 12)), max_size=2),
)
def test_a_schedule_said_never_to_meet_the_stretches_has_no_slot_in_them(
    s: ScheduleSpec,
    day: datetime,
    raw: list[tuple[int, int]],
    extra: list[tuple[int, int, int]],
) -> None:
    """``may_start_in`` spares cutting a schedule only when cutting would find nothing: its
    hours (overrides too) never meet the stretches' week, around clock changes, in zones with
    odd offsets, over windows of days to three weeks."""
    local = day.astimezone(s.tz).date()
    overrides = {
        (local + timedelta(days=d)).isoformat(): [[_hhmm(a * 15), _hhmm(min(a + n, 96) * 15)]]
        for d, a, n in extra
    }
    if overrides:
        s = spec(
            timezone=s.timezone,
            weekly_hours={
                k: [[_hhmm(a), _hhmm(b)] for a, b in v] for k, v in s.weekly_hours.items()
            },
            overrides=overrides,
            slot_minutes=s.slot_minutes,
            buffer_minutes=s.buffer_minutes,
        )
    within = _merged_stretches(day, raw)
    week = week_of(within)
    if week is None or may_start_in(s, week, within[0][0], within[-1][1]):
        return
    assert free_slots(s, within[0][0], within[-1][1], LONG_AGO, {}, within) == []


@st.composite
def sparse_schedules(draw: st.DrawFn) -> ScheduleSpec:
    """A few ranges on a few days, and overrides up to a year either side of ``AROUND``:
    schedules whose blocks leave most of the week out."""
    weekly: dict[str, list[list[str]]] = {}
    for day in draw(st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]))):
        a = draw(st.integers(0, 95))
        weekly[day] = [[_hhmm(a * 15), _hhmm(min(a + draw(st.integers(1, 16)), 96) * 15)]]
    overrides = {}
    for offset, a, n in draw(
        st.lists(st.tuples(st.integers(-400, 400), st.integers(0, 95), st.integers(1, 12)))
    ):
        day = (AROUND + timedelta(days=offset)).isoformat()
        overrides[day] = [[_hhmm(a * 15), _hhmm(min(a + n, 96) * 15)]]
    return spec(
        timezone=draw(st.sampled_from(ZONES)),
        weekly_hours=weekly,
        overrides=overrides,
        slot_minutes=draw(st.sampled_from([15, 30, 60, 90])),
    )


AROUND = date(2031, 3, 20)


@settings(max_examples=300, deadline=None)
@given(
    sparse_schedules(),
    st.sampled_from(
        [utc(2026, 3, 26), utc(2026, 10, 22), utc(2031, 3, 21), utc(2031, 7, 1), utc(2031, 10, 20)]
    ),
    st.lists(
        st.tuples(st.integers(0, 13 * 24 * 60), st.integers(1, 6 * 60)), min_size=1, max_size=8
    ),
)
def test_every_slot_starts_in_one_of_its_schedules_blocks(
    s: ScheduleSpec, day: datetime, raw: list[tuple[int, int]]
) -> None:
    """What the stored ``start_blocks`` leave out, cutting never finds: every slot of two
    weeks (summer or winter time, overrides near or far) starts in one of the schedule's
    blocks, and when a search's stretches miss them all, ``may_start_in`` says so too."""
    blocks = start_blocks(s)
    for slot in free_slots(s, day, day + timedelta(days=14), LONG_AGO, {}):
        start = slot.start.astimezone(UTC)
        minute = start.weekday() * 24 * 60 + start.hour * 60 + start.minute
        assert blocks >> (minute // BLOCK_MINUTES) & 1, (slot, bin(blocks))
    within = _merged_stretches(day, raw)
    week = week_of(within)
    if week is not None and not blocks & blocks_of(week):
        assert not may_start_in(s, week, within[0][0], within[-1][1])


def test_start_blocks_lay_the_hours_on_a_week_in_utc_at_every_offset_of_the_zone() -> None:
    """Berlin's Monday 09:00-17:00 starts slots from 07:00 UTC (summer) to 16:00 UTC
    (winter): blocks 2 to 5 of Monday. An override adds its own weekday's blocks; a schedule
    without hours has none; a search's week touches each block it reaches into."""
    office = spec(
        timezone="Europe/Berlin", weekly_hours={"mon": [["09:00", "17:00"]]}, slot_minutes=60
    )
    assert start_blocks(office) == sum(1 << i for i in (2, 3, 4, 5))
    saturday = spec(
        timezone="Europe/Berlin",
        weekly_hours={"mon": [["09:00", "17:00"]]},
        overrides={"2026-06-06": [["10:00", "11:00"]]},
        slot_minutes=60,
    )
    assert start_blocks(saturday) == start_blocks(office) | (1 << (5 * 8 + 2)) | (1 << (5 * 8 + 3))
    assert start_blocks(spec(timezone="UTC", weekly_hours={}, slot_minutes=60)) == 0
    assert blocks_of(((0, 1), (179, 181), (7 * 24 * 60 - 1, 7 * 24 * 60))) == (1 | 0b10 | 1 << 55)
    assert blocks_of(()) == 0


def test_stretches_a_schedule_never_meets_are_known_without_cutting() -> None:
    """Weekday office hours in Berlin against a month of lunch hours in New York, against
    weekends, and against an hour they do meet; a date's override opens what the week does
    not; a zone half an hour off UTC is laid on the week to the minute."""
    office = spec(
        timezone="Europe/Berlin",
        weekly_hours={d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
        slot_minutes=60,
    )
    new_york = ZoneInfo("America/New_York")

    def daily(
        first: date, days: int, lo: int, hi: int, tz: ZoneInfo
    ) -> list[tuple[datetime, datetime]]:
        out = []
        for n in range(days):
            d = first + timedelta(days=n)
            midnight = datetime(d.year, d.month, d.day, tzinfo=tz)
            out.append(
                (
                    (midnight + timedelta(minutes=lo)).astimezone(UTC),
                    (midnight + timedelta(minutes=hi)).astimezone(UTC),
                )
            )
        return out

    def meets(s: ScheduleSpec, within: list[tuple[datetime, datetime]]) -> bool:
        week = week_of(within)
        assert week is not None
        met = may_start_in(s, week, within[0][0], within[-1][1])
        found = free_slots(s, within[0][0], within[-1][1], LONG_AGO, {}, within)
        assert met or not found
        return met

    lunch = daily(date(2026, 3, 1), 31, 12 * 60, 13 * 60, new_york)  # across both clock changes
    assert not meets(office, lunch)
    assert meets(office, daily(date(2026, 3, 1), 31, 5 * 60, 6 * 60, new_york))  # 11:00 in Berlin
    weekend = daily(date(2026, 6, 6), 2, 0, 24 * 60, ZoneInfo("Europe/Berlin"))
    assert not meets(office, weekend)
    saturday = spec(
        timezone="Europe/Berlin",
        weekly_hours=office.weekly_hours and {"mon": [["09:00", "17:00"]]},
        overrides={"2026-06-06": [["10:00", "12:00"]]},
        slot_minutes=60,
    )
    assert meets(saturday, weekend)
    kolkata = spec(
        timezone="Asia/Kolkata", weekly_hours={"mon": [["09:00", "10:00"]]}, slot_minutes=30
    )
    monday = datetime(2026, 6, 1, tzinfo=UTC)  # 09:00 in Kolkata is 03:30 UTC
    assert meets(kolkata, [(monday + timedelta(minutes=210), monday + timedelta(minutes=240))])
    assert not meets(kolkata, [(monday + timedelta(minutes=180), monday + timedelta(minutes=210))])
    assert week_of([(monday, monday + timedelta(days=7))]) is None


def test_specs_of_schedules_with_the_same_holidays_share_one_set_of_dates() -> None:
    """A process keeps thousands of parsed schedules: the same blackout dates and start
    dates, as stored text, become one shared object; other dates stay their own."""
    week = '{"mon": [["09:00", "17:00"]]}'
    holidays = '["2026-12-24", "2026-12-25"]'
    raw = ("Europe/Berlin", week, "{}", holidays, 60, 0, 0, "2026-12-01", None, 1)
    other = ("Europe/Berlin", week, "{}", '["2026-12-31"]', 60, 0, 0, "2026-12-01", None, 1)
    first, second, third = parsed_spec(9101, raw), parsed_spec(9102, raw), parsed_spec(9103, other)

    assert first.blackout_dates == {date(2026, 12, 24), date(2026, 12, 25)}
    assert first.blackout_dates is second.blackout_dates
    assert first.start_date is second.start_date is third.start_date
    assert third.blackout_dates == {date(2026, 12, 31)}
    assert parsed_spec(9101, raw) is first  # the same stored values: parsed once
    changed = parsed_spec(9101, other)  # the schedule changed: parsed again
    assert changed is not first and changed.blackout_dates == third.blackout_dates
    assert (first.id, second.id, changed.id) == (9101, 9102, 9101)


@settings(max_examples=60, deadline=None)
@given(
    hours=st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), max_size=3),
    notice=st.sampled_from([0, 60, 24 * 60]),
    booked=st.integers(min_value=0, max_value=6),
    early=st.integers(min_value=0, max_value=5 * 24 * 60),
)
def test_the_first_free_slot_is_the_same_looked_for_from_any_lower_bound(
    hours: list[str], notice: int, booked: int, early: int
) -> None:
    """``first_free(after=...)`` starts looking at a bound no free slot starts before (a
    schedule's ``next_free_at``): from any such bound it finds what looking from now finds."""
    from agent_server.booking.next_free import first_free

    s = spec(
        weekly_hours={day: [["09:00", "12:00"]] for day in hours},
        min_notice_minutes=notice,
    )
    now = utc(2026, 3, 2, 10, 17)
    upcoming = free_slots(s, now, now + timedelta(days=14), now, {})
    taken = {slot.start: 1 for slot in upcoming[:booked]}
    expected = first_free(s, now, taken)
    if expected is None:
        assert first_free(s, now, taken, after=now + timedelta(minutes=early)) is None
        return
    bound = min(now + timedelta(minutes=early), expected.start)
    assert first_free(s, now, taken, after=bound) == expected
    assert first_free(s, now, taken, after=now - timedelta(days=3)) == expected
