"""Hypothesis strategies for MCP tool arguments, drawn from each tool's input JSON schema.

``arguments_for(schema, ids)`` gives dictionaries of arguments for one tool: mostly values
that fit the schema (so calls get past validation and reach the services and the database),
mixed with hostile ones (huge and unicode strings, NUL bytes, negative and huge numbers,
far dates, injection payloads, values of the wrong type, unknown arguments). ``ids`` are
real ids of the database under test (own and other agents' bookings, schedules,
specialists), so calls reach real rows and not only NOT_FOUND.

The schema subset handled is what pydantic writes for our input models: ``type`` (object,
string, integer, number, boolean, array, null), ``properties``, ``required``,
``additionalProperties``, ``anyOf``, ``$ref``/``$defs``, ``enum``, ``format`` (date,
date-time), ``pattern``, ``minLength``/``maxLength``, ``minimum``/``maximum``, ``items``,
``maxItems``. An unknown keyword makes ``arguments_for`` fail loudly, so a new kind of
input cannot go unfuzzed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

Json = Any

KNOWN_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "anyOf",
    "$ref",
    "$defs",
    "enum",
    "const",
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "items",
    "maxItems",
    "minItems",
    "default",
    "description",
    "title",
    "examples",
}

INJECTIONS = (
    "' OR 1=1 --",
    "'; DROP TABLE bookings; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5)",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/a}",
    "{{7*7}}",
    "../../../../etc/passwd",
    "%00%0d%0aSet-Cookie: x=1",
    "\\x00",
    "$where: '1 == 1'",
)
ODD_STRINGS = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\n\r",
    "\u202e\u200b\ufeff",
    "\U0001d573\U0001d58a\U0001d591\U0001d591\U0001d594 \U0001f469\u200d\U0001f469\u200d\U0001f467",
    "ß" * 10_000,
    "x" * 100_000,
    "null",
    "NaN",
    "-1",
    "1e309",
    "0x7fffffffffffffff",
    "9999-12-31",
    "0001-01-01",
    "+275760-09-13",
    "2026-02-30",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00-12:00",
    "2026-03-08T02:30:00",
    "24:00",
    "25:61",
    "Mars/Olympus",
    "../UTC",
    "Etc/GMT+14",
    "1-99991231T2359Z",
    "9223372036854775807-20260302T0900Z",
    "99999999999999999999-20260302T0900Z",
    "0-20260302T0900Z",
)
ODD_NUMBERS = (
    -1,
    0,
    -(2**63),
    2**63 - 1,
    2**63,
    2**64,
    10**30,
    -(10**30),
    1.5,
    -0.0,
    1e308,
)
ODD_OTHERS: tuple[Json, ...] = (None, True, False, [], {}, [None], {"$ne": 1}, [[[]]])

hostile: st.SearchStrategy[Json] = st.one_of(
    st.sampled_from(INJECTIONS),
    st.sampled_from(ODD_STRINGS),
    st.sampled_from(ODD_NUMBERS),
    st.sampled_from(ODD_OTHERS),
    st.text(min_size=1, max_size=40),
    st.integers(),
)

far_dates = st.one_of(
    st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
    st.dates(min_value=date(2026, 1, 1), max_value=date(2027, 12, 31)),
)
near_datetimes = st.datetimes(
    min_value=datetime(2026, 2, 20), max_value=datetime(2026, 5, 1), timezones=st.just(UTC)
)
far_datetimes = st.one_of(
    near_datetimes,
    near_datetimes,
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)),  # naive
)
idempotency_keys = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-",
    min_size=8,
    max_size=80,
)
hhmm = st.one_of(
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 24), st.sampled_from([0, 15, 30])),
    st.sampled_from(["24:00", "9:00", "09:60", "", "noon", "23:59:59"]),
)
hour_ranges = st.lists(st.lists(hhmm, min_size=0, max_size=3), max_size=4)
weekdays = st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun", "monday", "Mon"])
weekly_hours = st.dictionaries(st.one_of(weekdays, st.text(max_size=5)), hour_ranges, max_size=8)
overrides = st.dictionaries(
    st.one_of(far_dates.map(date.isoformat), st.sampled_from(ODD_STRINGS[:12])),
    hour_ranges,
    max_size=4,
)


def _slot_ids(ids: dict[str, list[int]]) -> st.SearchStrategy[str]:
    schedules = [*ids.get("schedule", []), 1, 2**62]
    start = datetime(2026, 3, 2, tzinfo=UTC)
    moments = st.integers(-200, 24 * 120).map(
        lambda h: (start + timedelta(minutes=30 * h)).strftime("%Y%m%dT%H%MZ")
    )
    return st.one_of(
        st.builds(lambda s, m: f"{s}-{m}", st.sampled_from(schedules), moments),
        st.sampled_from(ODD_STRINGS[-4:]),
    )


class _Builder:
    def __init__(self, root: dict[str, Json], ids: dict[str, list[int]]) -> None:
        self.root = root
        self.ids = ids

    def resolve(self, schema: dict[str, Json]) -> dict[str, Json]:
        while "$ref" in schema:
            ref = str(schema["$ref"])
            assert ref.startswith("#/$defs/"), ref
            schema = self.root["$defs"][ref.removeprefix("#/$defs/")]
        return schema

    def value(self, schema: dict[str, Json], name: str = "") -> st.SearchStrategy[Json]:
        """Values that fit ``schema`` (with names of known meaning given real shapes)."""
        schema = self.resolve(schema)
        unknown = set(schema) - KNOWN_KEYWORDS
        assert not unknown, f"{name}: schema keywords the fuzzer does not handle: {unknown}"
        special = self.special(name, schema)
        if special is not None:
            return special
        if "anyOf" in schema:
            return st.one_of(*(self.value(s, name) for s in schema["anyOf"]))
        if "enum" in schema:
            return st.sampled_from(schema["enum"])
        if "const" in schema:
            return st.just(schema["const"])
        kind = schema.get("type")
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            low, high = schema.get("minimum"), schema.get("maximum")
            return st.one_of(
                st.integers(low, high),
                st.integers(low if low is not None else -1000, 1000 if high is None else high),
            )
        if kind == "number":
            return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
        if kind == "string":
            return self.string(schema)
        if kind == "array":
            items = self.value(schema.get("items", {}), name)
            return st.lists(
                items,
                min_size=schema.get("minItems", 0),
                max_size=min(schema.get("maxItems", 5), 5),
            )
        if kind == "object":
            if "properties" in schema:
                return self.object(schema)
            return st.dictionaries(st.text(max_size=10), hostile, max_size=3)
        return hostile

    def string(self, schema: dict[str, Json]) -> st.SearchStrategy[Json]:
        fmt = schema.get("format")
        if fmt == "date":
            return far_dates.map(date.isoformat)
        if fmt == "date-time":
            return far_datetimes.map(datetime.isoformat)
        if "pattern" in schema:
            low, high = schema.get("minLength", 0), schema.get("maxLength", 10_000)
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: low <= len(s) <= high
            )
        return st.text(
            min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 60), 60)
        )

    def special(self, name: str, schema: dict[str, Json]) -> st.SearchStrategy[Json] | None:
        """Fields whose plain schema says little: ids, slot ids, hours, time zones."""
        ids = self.ids
        if name in ("booking_id", "schedule_id", "specialist_id"):
            pool = ids.get(name.removesuffix("_id"), [])
            known = st.sampled_from(pool) if pool else st.integers(1, 50)
            return st.one_of(known, known, st.integers(1, 2**63 - 1))
        if name in ("slot_id", "new_slot_id"):
            return _slot_ids(ids)
        if name == "weekly_hours":
            return weekly_hours
        if name == "overrides":
            return overrides
        if name in ("timezone",):
            zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
            return st.one_of(st.sampled_from(zones), st.text(max_size=20))
        if name in ("hours_from", "hours_to"):
            return hhmm
        if name == "days_of_week":
            return st.lists(weekdays, max_size=7)
        if name == "tool":
            names = ["search-specialists", "view-profile", "book-slot", "create-schedule", "quote"]
            return st.one_of(st.sampled_from(names), st.text(max_size=30))
        if name == "changes":
            return self.changes
        if name == "idempotency_key":
            return idempotency_keys
        return None

    changes: st.SearchStrategy[Json] = st.nothing()

    def object(self, schema: dict[str, Json]) -> st.SearchStrategy[dict[str, Json]]:
        """Arguments that fit the schema (the required ones always, optional ones sometimes),
        or the same with one or two of them, or an argument the tool does not know, made
        hostile."""
        properties: dict[str, dict[str, Json]] = schema.get("properties", {})
        required = set(schema.get("required", []))
        valid = st.fixed_dictionaries(
            {p: self.value(properties[p], p) for p in sorted(required)},
            optional={p: self.value(properties[p], p) for p in sorted(set(properties) - required)},
        )
        names = [*sorted(properties), "bogus", "__proto__", "idempotency_key ", "limit\x00"]

        @st.composite
        def corrupted(draw: st.DrawFn) -> dict[str, Json]:
            arguments = dict(draw(valid))
            for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2)):
                arguments[name] = draw(hostile)
            return arguments

        return st.one_of(valid, corrupted())


def arguments_for(
    schema: dict[str, Json],
    ids: dict[str, list[int]],
    changes_schema: dict[str, Json] | None = None,
) -> st.SearchStrategy[dict[str, Json]]:
    """Arguments for a tool with input ``schema``; ``changes_schema`` (create-schedule's)
    gives update-schedule's free-form ``changes`` their real fields."""
    builder = _Builder(schema, ids)
    if changes_schema is not None:
        changes = _Builder(changes_schema, ids)
        fields = {
            k: v for k, v in changes_schema.get("properties", {}).items() if k != "idempotency_key"
        }
        builder.changes = st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    k: st.one_of(changes.value(v, k), changes.value(v, k), hostile)
                    for k, v in fields.items()
                },
            ),
            st.dictionaries(st.text(max_size=12), hostile, max_size=3),
        )
    else:
        builder.changes = st.dictionaries(st.text(max_size=12), hostile, max_size=3)
    return builder.object(builder.resolve(schema))


# --- one hostile field at a time ---------------------------------------------------------------

CONTROL_STRINGS = (
    "\x00",
    "a\x00b",
    "tax\x01law",
    "\x1b[31mred",
    "bell\x07",
    "del\x7f",
    "\x00" * 64,
)
# Lone surrogates (which no UTF-8 column can hold) are not here: the SDK's client cannot send
# them (nor objects nested past its serializer's depth); test_inputs.py covers both rules.
BEYOND_64_BITS = (2**63, 2**64, -(2**63) - 1, 10**30, -(10**30), 2**200)
CALENDAR_ENDS = ("9999-12-30", "9999-12-31", "0001-01-01", "1999-12-31", "2201-01-01")
MOMENT_ENDS = (
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-12:00",
    "9999-12-30T00:00:00Z",
    "2026-03-02T09:00:00",
    "1999-12-31T23:59:59+00:00",
)
NON_CANONICAL_ZONES = ("localtime", "posixrules", "Factory", "posix/Europe/Berlin", "right/UTC")


def deep(levels: int) -> Json:
    """``{"a": [[...]]}`` nested ``levels`` deep (built without recursion)."""
    value: Json = []
    for _ in range(levels):
        value = [value]
    return {"a": value}


DEEP_OBJECTS = (deep(40), deep(200), {str(i): [["09:00", "10:00"]] for i in range(3000)})
HOSTILE_SLOT_IDS = (
    "1-99991230T0000Z",
    "9223372036854775808-20260302T0900Z",
    "9999999999999999999-20260302T0900Z",
    "1-20260302T0900Z\x00",
    "1-00010101T0000Z",
)
HOSTILE_CHANGES: tuple[Json, ...] = (
    {"label": "a\x00b"},
    {"description": "\x1b"},
    {"skills": ["tax\x00"]},
    {"price_amount": 2**64},
    {"min_notice_minutes": 2**64},
    {"capacity": -(2**63) - 1},
    {"start_date": "9999-12-30"},
    {"end_date": "0001-01-01"},
    {"blackout_dates": ["9999-12-31"]},
    {"overrides": {"9999-12-30": []}},
    {"timezone": "localtime"},
    {"weekly_hours": deep(50)},
    {"weekly_hours": {"mon": [["09:00\x00", "10:00"]]}},
)


def hostile_for(name: str, schema: dict[str, Json], root: dict[str, Json]) -> list[Json]:
    """Values an attacker would send to the field ``name`` of ``schema``'s kind."""
    while "$ref" in schema:
        schema = root["$defs"][str(schema["$ref"]).removeprefix("#/$defs/")]
    kinds = [schema, *schema.get("anyOf", [])]
    values: list[Json] = []
    for kind in kinds:
        while "$ref" in kind:
            kind = root["$defs"][str(kind["$ref"]).removeprefix("#/$defs/")]
        if kind.get("type") == "string":
            if kind.get("format") == "date":
                values += CALENDAR_ENDS
            if kind.get("format") == "date-time":
                values += MOMENT_ENDS
            values += CONTROL_STRINGS
        elif kind.get("type") in ("integer", "number"):
            values += BEYOND_64_BITS
        elif kind.get("type") == "object" and "properties" not in kind:
            values += DEEP_OBJECTS
        elif kind.get("type") == "array":
            item = kind.get("items", {})
            values += [[v] for v in hostile_for(name, item, root)[:6]]
    special: list[Json] = []
    if name in ("slot_id", "new_slot_id"):
        special += HOSTILE_SLOT_IDS
    if name == "timezone":
        special += NON_CANONICAL_ZONES
    if name == "changes":
        special += HOSTILE_CHANGES
    if name in ("weekly_hours", "overrides"):
        special += [{"mon": [["09:00\x00", "10:00"]]}, {"9999-12-30": [["09:00", "10:00"]]}]
    if name == "cursor":
        special += ["eyJiZWZvcmUiOiAxMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDB9"]  # {"before": 10**23}
    return special + values


def one_field(targets: dict[str, list[Json]]) -> st.SearchStrategy[tuple[str, Json]]:
    """A field (each as likely as any other), then one of its hostile values."""
    return st.sampled_from(sorted(targets)).flatmap(
        lambda field: st.tuples(st.just(field), st.sampled_from(targets[field]))
    )


def attacks_for(
    schema: dict[str, Json], ids: dict[str, list[int]]
) -> st.SearchStrategy[tuple[str, dict[str, Json]]]:
    """``(field, arguments)``: arguments that fit ``schema`` but for one field, which holds
    a hostile value of its kind (control characters, integers beyond 64 bits, dates at the
    ends of the calendar, non-canonical time zones, deep or huge free-form objects)."""
    builder = _Builder(schema, ids)
    builder.changes = st.fixed_dictionaries({}, optional={"label": st.text(max_size=10)})
    root = builder.resolve(schema)
    properties: dict[str, dict[str, Json]] = root.get("properties", {})
    required = set(root.get("required", []))
    valid = st.fixed_dictionaries(
        {p: builder.value(properties[p], p) for p in sorted(required)},
        optional={p: builder.value(properties[p], p) for p in sorted(set(properties) - required)},
    )
    targets = {p: hostile_for(p, properties[p], schema) for p in sorted(properties)}
    targets = {p: v for p, v in targets.items() if v}
    if not targets:
        return st.nothing()

    @st.composite
    def attack(draw: st.DrawFn) -> tuple[str, dict[str, Json]]:
        arguments = dict(draw(valid))
        field, arguments[field] = draw(one_field(targets))
        return field, arguments

    return attack()
