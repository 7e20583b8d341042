"""Search and profile view over 200 seeded demo specialists, on SQLite and PostgreSQL.

Every filter, sort and page is checked against a reference written plainly below: it reads
all specialists and schedules, cuts each schedule's slots with the availability engine and
filters and sorts them in Python.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from test_bookings import specialist_schedule

from agent_server.accounts.models import Agent
from agent_server.booking.availability import ScheduleSpec, Slot, free_slots
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import Booking, Schedule, Specialist
from agent_server.booking.next_free import refresh_due
from agent_server.booking.schedules import usd_value
from agent_server.booking.search import facets as search_facets
from agent_server.booking.search import walk as search_walk
from agent_server.booking.search.answer import SearchPage
from agent_server.booking.search.profile import view_profile
from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.specialists import search_specialists
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.store import Database

WEEKDAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


# --- the reference ---------------------------------------------------------------------------


@dataclass
class Catalogue:
    specialists: list[Specialist]
    schedules: dict[int, list[Schedule]]
    taken: dict[int, dict[datetime, int]]


async def catalogue(db: Database) -> Catalogue:
    async with db.uow() as uow:
        people = list((await uow.session.scalars(select(Specialist))).all())
        rows = list((await uow.session.scalars(select(Schedule))).all())
        bookings = list((await uow.session.scalars(select(Booking))).all())
        uow.session.expunge_all()  # plain objects from here on
    by_owner: dict[int, list[Schedule]] = {}
    for s in rows:
        if s.specialist_id is not None:
            by_owner.setdefault(s.specialist_id, []).append(s)
    taken: dict[int, dict[datetime, int]] = {}
    for b in bookings:
        if b.status in ("pending", "accepted", "completed"):
            per = taken.setdefault(b.schedule_id, {})
            per[b.slot_start] = per.get(b.slot_start, 0) + 1
    return Catalogue(people, by_owner, taken)


def fold(text: str) -> str:
    return "".join(
        c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c)
    )


def window(query: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    tz = ZoneInfo(query.get("timezone", "UTC"))
    if "date_from" not in query and "date_to" not in query:
        return now, now + timedelta(days=7)
    today = now.astimezone(tz).date()
    first = date.fromisoformat(query["date_from"]) if "date_from" in query else today
    last = date.fromisoformat(query["date_to"]) if "date_to" in query else first + timedelta(days=6)

    def midnight(d: date) -> datetime:
        return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)

    return max(now, midnight(first)), midnight(last + timedelta(days=1))


def fits(query: dict[str, Any], slot: Slot) -> bool:
    local = slot.start.astimezone(ZoneInfo(query.get("timezone", "UTC")))
    days = {WEEKDAYS[d[:3].lower()] for d in query.get("days_of_week", [])}
    if days and local.weekday() not in days:
        return False
    if "hours_from" in query:
        lo = int(query["hours_from"][:2]) * 60 + int(query["hours_from"][3:])
        hi = int(query["hours_to"][:2]) * 60 + int(query["hours_to"][3:])
        start = local.hour * 60 + local.minute
        length = (slot.end - slot.start).seconds // 60
        if lo < hi:
            return lo <= start and start + length <= hi
        # a range past midnight: 22:00-02:00 takes starts from 22:00 and before 02:00
        if start >= lo:
            return start + length <= hi + 24 * 60
        return start + length <= hi
    return True


def profile_matches(p: Specialist, query: dict[str, Any]) -> bool:
    words = [p.name, p.title, p.about, *p.skills, *(s.replace("-", " ") for s in p.skills)]
    text = fold(" ".join(words))
    if any(word not in text for word in fold(query.get("q", "")).split()):
        return False
    if "min_rating" in query and p.rating < query["min_rating"]:
        return False
    wanted = {s.lower().replace(" ", "-") for s in query.get("skills", [])}
    if not wanted <= set(p.skills):
        return False
    languages = {code.lower() for code in query.get("languages", [])}
    if languages and not languages & set(p.languages):
        return False
    if "city" in query and p.city.lower() != query["city"].lower():
        return False
    return not ("country" in query and p.country != query["country"].upper())


def schedule_matches(s: Schedule, query: dict[str, Any]) -> bool:
    if s.private or s.deleted_at is not None:
        return False
    currency = query.get("currency", "USD")
    if "price_min" in query and s.price_usd_micros < usd_value(query["price_min"], currency):
        return False
    if "price_max" in query and s.price_usd_micros > usd_value(query["price_max"], currency):
        return False
    return "duration" not in query or s.slot_minutes == query["duration"]


def expected(cat: Catalogue, query: dict[str, Any], now: datetime) -> list[int]:
    """Specialist ids in the order the search must return them."""
    start, end = window(query, now)
    sort = query.get("sort", "rating")
    desc = query.get("order", "desc" if sort == "rating" else "asc") == "desc"
    keyed: list[tuple[Any, int]] = []
    for p in cat.specialists:
        if not profile_matches(p, query):
            continue
        matched: list[tuple[Schedule, list[Slot]]] = []
        for s in cat.schedules.get(p.id, []):
            if not schedule_matches(s, query):
                continue
            slots = free_slots(ScheduleSpec.from_row(s), now, end, now, cat.taken.get(s.id, {}))
            if any(slot.start >= start and fits(query, slot) for slot in slots):
                matched.append((s, slots))
        if not matched:
            continue
        if sort == "rating":  # ties by review count, then id
            key: Any = (p.rating, p.review_count)
        elif sort == "price":
            prices = [s.price_usd_micros for s, _ in matched]
            key = max(prices) if desc else min(prices)
        else:
            key = min(slots[0].start for _, slots in matched)
        keyed.append((key, p.id))
    keyed.sort(reverse=desc)
    return [sid for _, sid in keyed]


async def run_search(db: Database, query: dict[str, Any]) -> SearchPage:
    async with db.uow() as uow:
        page = await search_specialists(uow, SearchQuery.parse(query), now=db.clock.now())
        await uow.commit()
    return page


async def all_pages(db: Database, query: dict[str, Any]) -> list[int]:
    ids: list[int] = []
    cursor = None
    for _ in range(300):
        page = await run_search(db, {**query, **({"cursor": cursor} if cursor else {})})
        ids += [item.id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


@pytest.fixture
async def loaded(db: Database) -> Catalogue:
    await load_demo_data(db, 200, seed=7)
    return await catalogue(db)


# --- filters, sorts and pages ----------------------------------------------------------------


def _common(values: list[str]) -> str:
    return max(sorted(set(values)), key=values.count)


async def test_every_filter_matches_the_reference(db: Database, loaded: Catalogue) -> None:
    now = db.clock.now()
    people = loaded.specialists
    skill = _common([s for p in people for s in p.skills])
    pair = next(p.skills[:2] for p in people if len(p.skills) >= 2 and skill in p.skills)
    city = _common([p.city for p in people])
    accented = next(p.city for p in people if fold(p.city) != p.city.lower())
    title_word = people[0].title.split()[-1]
    queries: list[dict[str, Any]] = [
        {},
        {"skills": [skill.replace("-", " ").title()]},
        {"skills": pair},
        {"languages": ["DE", "fr"]},
        {"city": city.upper()},
        {"country": "us"},
        {"q": title_word.lower()},
        {"q": f"{fold(accented)} {skill.split('-')[0]}"},
        {"price_min": 50_000_000, "price_max": 150_000_000},
        {"price_max": 60_000_000, "currency": "USDC"},
        {"price_min": 3 * 10**7, "currency": "ETH"},  # 0.03 ETH in gwei
        {"duration": 45},
        {"days_of_week": ["sat", "Sunday"], "timezone": "Asia/Tokyo"},
        {"hours_from": "07:00", "hours_to": "10:00", "timezone": "America/New_York"},
        {"hours_from": "22:00", "hours_to": "02:00", "timezone": "Europe/Berlin"},
        {
            "date_from": (now + timedelta(days=10)).date().isoformat(),
            "date_to": (now + timedelta(days=12)).date().isoformat(),
        },
        {"date_to": now.date().isoformat(), "timezone": "Pacific/Auckland"},
        {
            "days_of_week": ["mon"],
            "hours_from": "09:00",
            "hours_to": "12:00",
            "skills": [skill],
            "timezone": "Europe/London",
        },
    ]
    nonempty = 0
    for query in queries:
        query = {**query, "limit": 50}
        want = expected(loaded, query, now)
        got = await all_pages(db, query)
        assert got == want, json.dumps(query)
        nonempty += bool(want)
    assert nonempty >= len(queries) - 2  # the filters were exercised on real matches


async def test_every_sort_and_order_pages_through_in_reference_order(
    db: Database, loaded: Catalogue
) -> None:
    now = db.clock.now()
    for query in (
        {"sort": "rating"},
        {"sort": "rating", "order": "asc", "languages": ["en"]},
        {"sort": "price"},
        {"sort": "price", "order": "desc", "timezone": "America/Los_Angeles"},
        {"sort": "next_available", "timezone": "Asia/Kolkata"},
        {"sort": "next_available", "date_from": (now + timedelta(days=3)).date().isoformat()},
    ):
        paged = {**query, "limit": 17}
        got = await all_pages(db, paged)
        assert got == expected(loaded, paged, now), json.dumps(query)
        assert len(got) == len(set(got))
        assert len(got) > 17  # more than one page


async def test_bookings_take_slots_out_of_results(db: Database, loaded: Catalogue) -> None:
    """A booked slot is not offered, and a fully booked day removes the specialist from a
    search of that day; the next available slot moves on."""
    now = db.clock.now()
    person = next(
        p
        for p in loaded.specialists
        if len(loaded.schedules.get(p.id, [])) == 1
        and loaded.schedules[p.id][0].capacity == 1
        and not loaded.schedules[p.id][0].private
        and loaded.schedules[p.id][0].deleted_at is None
    )
    sched = loaded.schedules[person.id][0]
    spec = ScheduleSpec.from_row(sched)
    first = free_slots(spec, now, now + timedelta(days=14), now, {})[0]
    day = first.start.astimezone(ZoneInfo(sched.timezone)).date()
    query = {
        "skills": person.skills,
        "city": person.city,
        "timezone": sched.timezone,
        "date_from": day.isoformat(),
        "date_to": day.isoformat(),
        "limit": 50,
    }
    before = await run_search(db, query)
    assert person.id in [item.id for item in before.items]
    day_slots = [
        s
        for s in free_slots(spec, now, now + timedelta(days=14), now, {})
        if s.start.astimezone(ZoneInfo(sched.timezone)).date() == day
    ]
    async with db.uow() as uow:
        for i, slot in enumerate(day_slots):
            uow.session.add(
                Booking(
                    schedule_id=sched.id,
                    specialist_id=person.id,
                    slot_start=slot.start,
                    slot_end=slot.end,
                    seat=1,
                    status="accepted",
                    idempotency_key=f"k{i}",
                    created_at=now,
                    updated_at=now,
                )
            )
        await uow.commit()
    after = await run_search(db, query)
    assert person.id not in [item.id for item in after.items]
    assert [item.id for item in after.items] == expected(await catalogue(db), query, now)

    soonest = await run_search(
        db, {"skills": person.skills, "city": person.city, "sort": "next_available", "limit": 50}
    )
    hit = next(item for item in soonest.items if item.id == person.id)
    offered = [slot_id for sch in hit.schedules for slot_id in sch.slots]
    assert not {s.slot_id for s in day_slots} & set(offered)
    after_day = free_slots(
        spec, now, now + timedelta(days=30), now, {s.start: 1 for s in day_slots}
    )[0]
    assert hit.next_available == after_day.start.strftime("%Y-%m-%dT%H:%MZ")


async def test_results_show_only_public_schedules_of_specialists(
    db: Database, loaded: Catalogue
) -> None:
    now = db.clock.now()
    hidden = {
        s.id
        for rows in loaded.schedules.values()
        for s in rows
        if s.private or s.deleted_at is not None
    }
    assert hidden  # the demo data has some
    async with db.uow() as uow:
        agent = Agent(
            name="Scheduler bot",
            email="bot@example.com",
            api_key_hash="x" * 64,
            api_key_prefix="as_x",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(agent)
        await uow.flush()
        template = loaded.schedules[loaded.specialists[0].id][0]
        uow.session.add(
            Schedule(
                agent_id=agent.id,
                timezone="UTC",
                weekly_hours={"mon": [["00:00", "24:00"]]},
                slot_minutes=30,
                start_date=now.date(),
                price_amount=1,
                price_usd_micros=1,
                skills=template.skills,
                label="agent-owned",
                created_at=now,
                updated_at=now,
            )
        )
        await uow.commit()
    page = await run_search(db, {"limit": 50, "sort": "price"})
    shown = {sch.id for item in page.items for sch in item.schedules}
    assert shown and not shown & hidden
    assert "agent-owned" not in page.model_dump_json()
    for item in page.items:
        assert "email" not in item.model_dump() and "phone" not in item.model_dump()


def price_range(usd_micros: int) -> str:
    for lo, hi in ((0, 50), (50, 100), (100, 200), (200, 500)):
        if usd_micros < hi * 1_000_000:
            return f"{lo}-{hi}"
    return "500+"


async def test_facets_count_skills_and_price_ranges(db: Database, loaded: Catalogue) -> None:
    now = db.clock.now()
    query: dict[str, Any] = {"languages": ["en"]}
    page = await run_search(db, query)
    _, end = window(query, now)
    counted: set[int] = set()
    skills: dict[str, int] = {}
    buckets: dict[str, set[int]] = {}
    for p in loaded.specialists:
        if not profile_matches(p, query):
            continue
        usable = [
            s
            for s in loaded.schedules.get(p.id, [])
            if schedule_matches(s, query)
            and free_slots(ScheduleSpec.from_row(s), now, end, now, {})
        ]
        if not usable:
            continue
        counted.add(p.id)
        for skill in p.skills:
            skills[skill] = skills.get(skill, 0) + 1
        for s in usable:
            buckets.setdefault(price_range(s.price_usd_micros), set()).add(p.id)
    top = sorted(skills.items(), key=lambda kv: (-kv[1], kv[0]))[:8]
    assert page.facets.complete
    assert page.facets.counted == len(counted)
    assert list(page.facets.skills.items()) == top  # the most common first
    labels = ["0-50", "50-100", "100-200", "200-500", "500+"]
    assert list(page.facets.price_ranges.items()) == [  # the cheapest first
        (label, len(buckets[label])) for label in labels if label in buckets
    ]


@pytest.mark.parametrize(
    "query",
    [
        {"sort": "price", "order": "asc", "price_min": 100_000_000},
        {"sort": "price", "order": "desc", "price_max": 40_000_000},
        {"sort": "rating", "order": "asc", "min_rating": 4.5},
    ],
)
async def test_facets_count_from_where_the_walk_begins(
    db: Database, loaded: Catalogue, monkeypatch: pytest.MonkeyPatch, query: dict[str, Any]
) -> None:
    """Facets count among the first entries of the walk past a price or rating bound, not
    among the catalogue's cheapest (or dearest, or lowest rated), which the bound excludes."""
    monkeypatch.setattr(search_facets, "FACET_ROWS", 5)
    page = await run_search(db, query)
    assert page.items
    assert not page.facets.complete
    assert 1 <= page.facets.counted <= 5
    assert sum(page.facets.price_ranges.values()) >= page.facets.counted


async def test_schedules_with_slots_longer_than_the_hours_are_never_cut(
    db: Database, loaded: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot must start and end within the hours asked, so a schedule of 90-minute slots
    never fits an hour: it is neither a result nor counted in the facets, and the search
    does not cut its slots to find that out."""
    cut: list[int] = []
    evaluate = search_walk.evaluate

    async def counting(uow: Any, plan: Any, ids: list[int], bounds: Any) -> Any:
        cut.extend(ids)
        return await evaluate(uow, plan, ids, bounds)

    monkeypatch.setattr(search_walk, "evaluate", counting)
    hour = {"timezone": "UTC", "hours_from": "09:00", "hours_to": "10:00"}
    page = await run_search(db, {**hour, "duration": 90})
    assert page.items == [] and page.facets.counted == 0 and cut == []

    page = await run_search(db, hour)
    short = {
        p.id
        for p in loaded.specialists
        if any(
            schedule_matches(s, hour) and s.slot_minutes <= 60
            for s in loaded.schedules.get(p.id, [])
        )
    }
    assert page.items and {item.id for item in page.items} <= short
    assert set(cut) <= short
    assert page.facets.complete and page.facets.counted == len(short)


# --- the page on the wire ------------------------------------------------------------------


async def test_a_page_of_ten_fits_in_8000_characters(db: Database, loaded: Catalogue) -> None:
    now = db.clock.now()
    async with db.uow() as uow:  # ten specialists with the longest texts the store allows
        for i in range(10):
            person = Specialist(
                name=f"Maximiliane-Alexandra {i} von Hohenzollern-Sigmaringen" + "x" * 150,
                title="Senior international immigration and corporate tax attorney " * 4,
                about="Long biography. " * 300,
                city="Rio de Janeiro",
                country="BR",
                timezone="America/Sao_Paulo",
                languages=["pt", "en", "es", "fr", "de", "it"],
                skills=[f"extremely-long-skill-name-number-{k}" for k in range(12)],
                education=[],
                hourly_rate=1,
                rating=5.0,
                review_count=999,
                email=f"long{i}@example.com",
                phone="+55 555 555 5555",
                search_text="zzlong",
                created_at=now,
                updated_at=now,
            )
            uow.session.add(person)
            await uow.flush()
            for k in range(2):
                uow.session.add(
                    Schedule(
                        specialist_id=person.id,
                        timezone="America/Sao_Paulo",
                        weekly_hours={d: [["00:00", "24:00"]] for d in WEEKDAYS},
                        slot_minutes=15 + k * 15,
                        start_date=now.date() - timedelta(days=1),
                        price_amount=123_456_789_012,
                        price_currency="USDC",
                        price_usd_micros=123_456_789_012,
                        label="A very long label " * 10,
                        created_at=now,
                        updated_at=now,
                    )
                )
        await uow.commit()
    queries: list[dict[str, Any]] = [{"q": "zzlong", "timezone": "Pacific/Chatham"}]
    queries += [{"sort": s} for s in ("rating", "price", "next_available")]
    for query in queries:
        page = await run_search(db, query)
        assert len(page.items) == 10
        body = json.dumps(page.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
        assert len(body) <= 7600, (query, len(body))  # 8,000 with the call's receipt
        for item in page.items:
            assert item.schedules and any(sch.slots for sch in item.schedules)


async def test_a_search_that_writes_nothing_makes_no_orm_session(
    db: Database, loaded: Catalogue
) -> None:
    """Its statements all go straight to the driver; only a search that stores what it
    found (fresh next-free bounds) needs the ORM session (cheaper to go without)."""
    query = SearchQuery.parse({"sort": "next_available"})
    await run_search(db, {"sort": "next_available"})  # stores any bounds found stale
    async with db.uow() as uow:
        page = await search_specialists(uow, query, now=db.clock.now())
        assert page.items
        assert not uow.has_session
        await uow.commit()


async def test_slots_map_each_slot_id_to_its_local_times(db: Database, loaded: Catalogue) -> None:
    page = await run_search(db, {"timezone": "Asia/Kolkata", "sort": "next_available"})
    assert page.timezone == "Asia/Kolkata"
    shown = [
        (sch, slot_id, text)
        for item in page.items
        for sch in item.schedules
        for slot_id, text in sch.slots.items()
    ]
    assert shown
    for sch, slot_id, text in shown:
        _, stamp = slot_id.split("-")
        start = datetime.strptime(stamp, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
        local = start.astimezone(ZoneInfo("Asia/Kolkata"))
        end = local + timedelta(minutes=sch.slot_minutes)
        later = f"+{(end.date() - local.date()).days}" if end.date() != local.date() else ""
        assert text == f"{local:%Y-%m-%d %a %H:%M}-{end:%H:%M}{later}"


async def test_slots_the_clock_shows_twice_carry_their_offset(
    db: Database, clock: FakeClock
) -> None:
    # New York's clocks go back at 02:00 on 2026-11-01: 01:00-02:00 happens twice. A schedule
    # kept in UTC offers half-hour slots from 05:00 to 07:00 UTC on Sundays, which is that
    # hour, twice.
    clock.set(datetime(2026, 10, 30, 12, 0, tzinfo=UTC))
    specialist, schedule = await specialist_schedule(
        db,
        weekly_hours={"sun": [["05:00", "07:00"], ["12:00", "12:30"]]},
        slot_minutes=30,
        start_date="2026-10-01",
    )
    new_york = "America/New_York"
    async with db.uow() as uow:
        profile = await view_profile(uow, specialist, now=clock.now(), timezone=new_york)
        page = await search_specialists(
            uow,
            SearchQuery.parse({"timezone": new_york, "date_from": "2026-11-01"}),
            now=clock.now(),
        )
    texts = profile.schedules[0].slots
    assert list(texts.values()) == [
        "2026-11-01 Sun 01:00 (UTC-04:00)-01:30 (UTC-04:00)",
        "2026-11-01 Sun 01:30 (UTC-04:00)-01:00 (UTC-05:00)",
        "2026-11-01 Sun 01:00 (UTC-05:00)-01:30 (UTC-05:00)",
        "2026-11-01 Sun 01:30 (UTC-05:00)-02:00",
        "2026-11-01 Sun 07:00-07:30",  # 12:00 UTC: an hour the clock shows once
    ]
    assert list(texts) == [
        f"{schedule}-20261101T{hhmm}Z" for hhmm in ("0500", "0530", "0600", "0630", "1200")
    ]
    [hit] = page.items
    shown = hit.schedules[0].slots
    assert shown and all(texts[slot_id] == text for slot_id, text in shown.items())
    async with db.uow() as uow:  # in UTC every time reads once
        in_utc = await view_profile(uow, specialist, now=clock.now())
    assert "(UTC" not in " ".join(in_utc.schedules[0].slots.values())


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 51}, "limit"),
        ({"skills": ["tax!"]}, "skills"),
        ({"languages": ["english"]}, "languages"),
        ({"country": "Germany"}, "country"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"days_of_week": ["someday"]}, "days_of_week"),
        ({"hours_from": "25:00", "hours_to": "26:00"}, "hours_from"),
        ({"price_min": -1}, "price_min"),
        ({"currency": "EUR"}, "currency"),
        ({"sort": "name"}, "sort"),
        ({"duration": 5}, "duration"),
        ({"date_from": "tomorrow"}, "date_from"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_query_fields_are_named(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        SearchQuery.parse(raw)
    fields = [entry["field"] for entry in caught.value.details["fields"]]
    assert fields and fields[0].split("[")[0] == field


async def test_bad_combinations_are_named_and_cursors_are_checked(db: Database) -> None:
    clock = db.clock
    assert isinstance(clock, FakeClock)
    today = clock.now().date()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"price_min": 10, "price_max": 5}, "price_max"),
        ({"hours_from": "09:00"}, "hours_to"),
        ({"hours_to": "09:00"}, "hours_from"),
        ({"hours_from": "09:00", "hours_to": "09:00"}, "hours_to"),
        (
            {"date_from": today.isoformat(), "date_to": (today - timedelta(days=1)).isoformat()},
            "date_to",
        ),
        (
            {"date_from": today.isoformat(), "date_to": (today + timedelta(days=62)).isoformat()},
            "date_to",
        ),
        ({"date_to": (today - timedelta(days=2)).isoformat()}, "date_to"),
        ({"date_from": (today + timedelta(days=400)).isoformat()}, "date_from"),
        ({"sort": "next_available", "order": "desc"}, "order"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ]
    await load_demo_data(db, 30, seed=3)
    first = await run_search(db, {"limit": 5})
    assert first.next_cursor is not None
    cases.append(({"limit": 5, "sort": "price", "cursor": first.next_cursor}, "cursor"))
    for raw, field in cases:
        with pytest.raises(ValidationFailed) as caught:
            await run_search(db, raw)
        assert caught.value.details["fields"][0]["field"] == field, raw
    # the same filters with another page size keep the cursor valid
    second = await run_search(db, {"limit": 7, "cursor": first.next_cursor})
    assert second.items


# --- view-profile ------------------------------------------------------------------------------


async def test_view_profile_reveals_contact_and_public_schedules(
    db: Database, loaded: Catalogue
) -> None:
    now = db.clock.now()
    person = next(
        p
        for p in loaded.specialists
        if any(s.private or s.deleted_at for s in loaded.schedules.get(p.id, []))
        and any(not s.private and s.deleted_at is None for s in loaded.schedules.get(p.id, []))
    )
    async with db.uow() as uow:
        view = await view_profile(uow, person.id, now=now, timezone="Europe/Paris")
    assert (view.email, view.phone) == (person.email, person.phone)
    assert view.education == person.education and view.about == person.about
    public = [s.id for s in loaded.schedules[person.id] if not s.private and s.deleted_at is None]
    assert [s.id for s in view.schedules] == public
    for sched in view.schedules:
        row = next(s for s in loaded.schedules[person.id] if s.id == sched.id)
        want = free_slots(ScheduleSpec.from_row(row), now, now + timedelta(days=14), now, {})[:5]
        assert list(sched.slots) == [s.slot_id for s in want]
        for slot in want:  # in the time zone asked for, not UTC
            paris = slot.start.astimezone(ZoneInfo("Europe/Paris"))
            assert sched.slots[slot.slot_id].startswith(f"{paris:%Y-%m-%d %a %H:%M}-")
    async with db.uow() as uow:
        with pytest.raises(NotFound):
            await view_profile(uow, 10**9, now=now)


# --- next_free_at: unknown, stale, and a short budget --------------------------------------------


async def test_unknown_and_stale_next_free_bounds_do_not_change_results(
    db: Database, loaded: Catalogue, clock: FakeClock
) -> None:
    """Schedules written without a bound, and bounds left behind by time, are repaired."""
    async with db.uow() as uow:
        await uow.session.execute(update(Schedule).values(next_free_at=None))
        await uow.commit()
    query = {"sort": "next_available", "limit": 50}
    assert await all_pages(db, query) == expected(loaded, query, clock.now())

    clock.advance(timedelta(days=2, hours=5))
    now = clock.now()
    for query in ({"sort": "next_available", "limit": 30}, {"sort": "price", "limit": 50}):
        assert await all_pages(db, query) == expected(loaded, query, now), query
    async with db.uow() as uow:
        refreshed = await refresh_due(uow.session, now=now)
        await uow.commit()
    async with db.uow() as uow:
        bounds = (
            await uow.session.scalars(
                select(Schedule.next_free_at).where(
                    Schedule.private.is_(False), Schedule.deleted_at.is_(None)
                )
            )
        ).all()
    assert refreshed >= 0 and all(b is not None and b >= now for b in bounds)


async def test_a_walk_of_many_slices_stores_its_fresh_bounds_once_in_id_order(
    db: Database, loaded: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bounds found slice by slice are written together when the walk ends, lowest id first:
    two searches meeting the same schedules in other orders then never wait for each other's
    rows in a cycle (on PostgreSQL such a pair deadlocked, and one search failed)."""
    monkeypatch.setattr(search_walk, "FIRST_SLICE", 2)
    monkeypatch.setattr(search_walk, "MAX_SLICE", 4)
    passed = datetime(2020, 1, 1, tzinfo=UTC)
    async with db.uow() as uow:  # every bound stale: passed long ago (still a lower bound)
        await uow.session.execute(update(Schedule).values(next_free_at=passed))
        await uow.commit()
    writes: list[list[int]] = []
    store = search_walk.store_next_free

    async def recording(session: Any, values: dict[int, datetime]) -> None:
        writes.append(list(values))
        await store(session, values)

    evaluated: list[int] = []
    evaluate = search_walk.evaluate

    async def counting(uow: Any, plan: Any, ids: list[int], bounds: Any) -> Any:
        evaluated.append(len(ids))
        return await evaluate(uow, plan, ids, bounds)

    monkeypatch.setattr(search_walk, "store_next_free", recording)
    monkeypatch.setattr(search_walk, "evaluate", counting)
    page = await run_search(db, {"sort": "rating", "limit": 6})
    assert page.items and len(evaluated) > 2  # the walk read several slices
    assert len(writes) == 1 and len(writes[0]) >= len(page.items)
    async with db.uow() as uow:
        stored = (
            await uow.session.scalars(select(Schedule.id).where(Schedule.next_free_at > passed))
        ).all()
    assert sorted(stored) == sorted(writes[0])


async def test_pages_are_the_same_wherever_the_walks_slices_end(
    db: Database, loaded: Catalogue, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice's end only divides the walk: slices ending a step in or far on, and ends kept
    from earlier searches while the catalogue changes under them, give the same pages; a
    search from the start of an index finds its slices' ends already known."""
    monkeypatch.setattr(search_walk, "FIRST_SLICE", 4)
    monkeypatch.setattr(search_walk, "MAX_SLICE", 16)
    queries: list[dict[str, Any]] = [
        {"sort": "next_available", "limit": 7},
        {"sort": "price", "order": "desc", "hours_from": "06:00", "hours_to": "12:00", "limit": 5},
        {"sort": "rating", "order": "asc", "limit": 6},
        {"sort": "price", "price_min": 30_000_000, "limit": 4},
    ]
    real = search_walk.slice_end
    reads: list[int] = []

    async def odd(uow: Any, shape: Any, after: Any, rows: int) -> Any:
        reads.append(rows)
        return await real(uow, shape, after, 1 if len(reads) % 2 else rows * 3)

    monkeypatch.setattr(search_walk, "slice_end", odd)
    now = clock.now()
    for query in queries:
        assert await all_pages(db, query) == expected(loaded, query, now), query
    monkeypatch.setattr(search_walk, "slice_end", real)
    # The ends kept above no longer fall where they would: every price moves, and every
    # next free slot is to be found again.
    async with db.uow() as uow:
        await uow.session.execute(
            update(Schedule).values(
                price_usd_micros=Schedule.price_usd_micros * 2 % 97_000_000, next_free_at=None
            )
        )
        await uow.commit()
    loaded = await catalogue(db)
    for query in queries:
        assert await all_pages(db, query) == expected(loaded, query, now), query

    monkeypatch.setattr(search_walk, "slice_end", odd)
    reads.clear()
    first = {"sort": "rating", "min_rating": 1.5, "limit": 3}
    await run_search(db, first)
    assert reads  # the first search from the bound reads its slices' ends
    reads.clear()
    await run_search(db, {**first, "limit": 2, "q": "a"})
    assert reads == []  # the next one from the same bound finds them known


async def test_slice_ends_are_kept_a_minute_and_only_so_many(
    db: Database, loaded: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice end older than ``SLICE_END_SECONDS`` is read again, and a process keeps at
    most ``SLICE_ENDS`` of them per database, the least recently used leaving first."""
    monkeypatch.setattr(search_walk, "FIRST_SLICE", 4)
    monkeypatch.setattr(search_walk, "MAX_SLICE", 16)
    seconds = [1_000.0]
    monkeypatch.setattr(search_walk, "time", SimpleNamespace(monotonic=lambda: seconds[0]))
    real = search_walk.slice_end
    reads: list[tuple[Any, int]] = []

    async def counting(uow: Any, shape: Any, after: Any, rows: int) -> Any:
        reads.append((after, rows))
        return await real(uow, shape, after, rows)

    monkeypatch.setattr(search_walk, "slice_end", counting)
    query = {"sort": "rating", "limit": 3}
    await run_search(db, query)
    first = len(reads)
    assert first > 0
    seconds[0] += search_walk.SLICE_END_SECONDS - 1
    await run_search(db, query)
    assert len(reads) == first  # still known
    seconds[0] += 2
    await run_search(db, query)
    assert len(reads) == 2 * first  # a minute on, read again

    monkeypatch.setattr(search_walk, "SLICE_ENDS", 2)
    reads.clear()
    await run_search(db, {"sort": "price", "limit": 30})
    assert len(reads) >= 3
    kept = search_walk._SLICE_ENDS[db]
    assert len(kept) == 2
    assert [key[3:] for key in kept] == [(after, rows) for after, rows in reads[-2:]]


async def test_a_short_examination_budget_gives_short_pages_that_still_add_up(
    db: Database, loaded: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a call may cut slots for only a few specialists, it returns what it has and a
    cursor; following the cursors gives exactly the reference list, in order."""
    now = db.clock.now()
    queries: list[dict[str, Any]] = [
        {"sort": "next_available", "days_of_week": ["sat"], "timezone": "Europe/Madrid"},
        {"sort": "price", "order": "desc", "hours_from": "06:00", "hours_to": "09:00"},
        {"sort": "rating", "duration": 90},
        {"sort": "price", "languages": ["ja"]},
    ]
    for budget in ({"MAX_EXAMINED": 3}, {"FIRST_SLICE": 3, "MAX_SLICE": 5, "MAX_SCANNED": 9}):
        for name, value in budget.items():
            monkeypatch.setattr(search_walk, name, value)
        for query in queries:
            paged = {**query, "limit": 4}
            assert await all_pages(db, paged) == expected(loaded, paged, now), (budget, query)
        monkeypatch.undo()
