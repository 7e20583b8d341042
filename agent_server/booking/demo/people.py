"""Demo people: one specialist with one or two schedules at a time, from a seeded random
source, so the same seed gives the same people."""

from __future__ import annotations

import dataclasses
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agent_server.booking.demo.places import CITIES, LANGUAGE_NAMES, NAMES, City
from agent_server.booking.demo.professions import (
    GLOBAL_UNIVERSITIES,
    NEIGHBOURS,
    PROFESSION_BY_KEY,
    PROFESSIONS,
    UNIVERSITIES,
    Profession,
)
from agent_server.booking.schedules.usd import usd_value
from agent_server.booking.search.text import specialist_search_text

# Schedule shapes and how often each is drawn, laid out by hand.
# fmt: off
WEEKLY_PATTERNS: tuple[dict[str, list[list[str]]], ...] = (
    {d: [["09:00", "12:00"], ["13:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    {d: [["08:00", "12:00"]] for d in ("mon", "tue", "wed", "thu", "fri")},
    {d: [["13:00", "18:00"]] for d in ("mon", "tue", "wed", "thu")},
    {d: [["18:00", "21:00"]] for d in ("mon", "tue", "wed", "thu")},
    {d: [["10:00", "16:00"]] for d in ("sat", "sun")},
    {"tue": [["08:00", "18:00"]], "thu": [["08:00", "18:00"]], "sat": [["09:00", "13:00"]]},
    {d: [["07:00", "09:00"], ["17:00", "20:00"]] for d in ("mon", "wed", "fri")},
    {d: [["10:00", "14:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat")},
)
PATTERN_WEIGHTS = (30, 14, 10, 10, 6, 8, 6, 10)
SLOT_MINUTES = (30, 45, 60, 90)
SLOT_WEIGHTS = (25, 15, 45, 15)
NOTICE_MINUTES = (0, 60, 120, 240, 720, 1440)
NOTICE_WEIGHTS = (20, 30, 20, 10, 10, 10)
BUFFER_MINUTES = (0, 5, 10, 15)
BUFFER_WEIGHTS = (50, 15, 20, 15)
# fmt: on


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


def _skill_label(slug: str) -> str:
    return slug.replace("-", " ")


MAX_DEMO_REVIEWS = 12
"""Reviews a demo person receives at most (each one a completed demo booking)."""
REVIEW_TEXTS: dict[int, tuple[str, ...]] = {
    5: (
        "Excellent: clear, prepared and kind.",
        "Exactly what I needed, thank you.",
        "Sharp advice and concrete next steps.",
    ),
    4: (
        "Very helpful; we ran a little over time.",
        "Good session, solid answers.",
        "Knowledgeable and friendly.",
    ),
    3: ("Fine, though a bit generic.", "Helpful in parts.", "Okay; I expected more depth."),
    2: ("Started late and felt rushed.", "Not much I could use."),
    1: ("Did not answer my questions.", "Missed most of the session."),
}


@dataclass
class Person:
    specialist: dict[str, Any]
    schedules: list[dict[str, Any]]
    reviews: list[tuple[int, str]] = dataclasses.field(default_factory=list)
    """(rating, text) of each review, oldest first; written as real reviews of completed
    bookings, from which the specialist's rating and review count are computed."""


class Generator:
    def __init__(self, rng: random.Random, now: datetime, number_base: int) -> None:
        self.rng = rng
        self.now = now
        self.today = now.date()
        self.number_base = number_base

    def person(self, n: int) -> Person:
        rng = self.rng
        city = rng.choice(CITIES)
        firsts, lasts = NAMES[city.names]
        first, last = rng.choice(firsts), rng.choice(lasts)
        name = f"{first} {last}"
        field = rng.choice(PROFESSIONS)
        skills = rng.sample(field.skills, rng.randint(2, min(5, len(field.skills))))
        if rng.random() < 0.2:  # a side skill from a neighbouring field
            other = PROFESSION_BY_KEY[rng.choice(NEIGHBOURS[field.key])]
            extra = rng.choice(other.skills)
            if extra not in skills:
                skills.append(extra)
        languages = _languages(rng, city)
        title = rng.choice(field.titles)
        years = rng.randint(2, 30)
        rate_lo, rate_hi = field.rate_usd
        hourly = rng.randint(rate_lo, rate_hi) // 5 * 5
        reviews = 0 if rng.random() < 0.1 else min(900, int(rng.paretovariate(1.3) * 6))
        target = 0.0 if reviews == 0 else round(rng.triangular(3.4, 5.0, 4.7), 1)
        about = _about(rng, field, title, years, city, skills, languages)
        education = self._education(rng, field, city, years)
        handle = f"{_ascii(first)}.{_ascii(last)}.{self.number_base + n}"
        specialist = {
            "name": name,
            "title": title,
            "about": about,
            "city": city.name,
            "country": city.country,
            "timezone": city.timezone,
            "languages": languages,
            "skills": skills,
            "education": education,
            "hourly_rate": hourly * 1_000_000,
            "rate_currency": "USD",
            # Computed from the review rows once they are written (``loader``).
            "rating": 0.0,
            "review_count": 0,
            "email": f"{handle}@example.com",
            "phone": f"+{city.phone} 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            "search_text": specialist_search_text(name, title, about, skills),
            "created_at": self.now,
            "updated_at": self.now,
        }
        count = 1 if rng.random() < 0.6 else 2
        schedules = [self._schedule(rng, field, city, skills, hourly) for _ in range(count)]
        return Person(specialist, schedules, _reviews(handle, reviews, target))

    def _education(
        self, rng: random.Random, field: Profession, city: City, years: int
    ) -> list[dict[str, Any]]:
        out = []
        for i in range(rng.choice((1, 1, 2))):
            degree, subject = rng.choice(field.degrees)
            pool = UNIVERSITIES.get(city.country, GLOBAL_UNIVERSITIES)
            if rng.random() < 0.25:
                pool = GLOBAL_UNIVERSITIES
            out.append(
                {
                    "degree": degree,
                    "field": subject,
                    "institution": rng.choice(pool),
                    "year": self.today.year - years - 1 + i * rng.randint(1, 4),
                }
            )
        return out

    def _schedule(
        self, rng: random.Random, field: Profession, city: City, skills: list[str], hourly: int
    ) -> dict[str, Any]:
        weekly = rng.choices(WEEKLY_PATTERNS, PATTERN_WEIGHTS)[0]
        minutes = rng.choices(SLOT_MINUTES, SLOT_WEIGHTS)[0]
        group = rng.random() < 0.08
        capacity = rng.randint(4, 12) if group else 1
        usd = hourly * minutes / 60 * (0.4 if group else 1.0)
        price_usd = max(5, int(usd) // 5 * 5) * 1_000_000
        currency = "USDC" if rng.random() < 0.15 else "USD"
        own = [s for s in skills if s in field.skills]
        topic_skills = rng.sample(own, min(len(own), rng.randint(1, 2)))
        kind = "group " + field.session if group else field.session
        label = f"{_skill_label(topic_skills[0]).capitalize()} {kind}"
        blackouts = sorted(
            {
                (self.today + timedelta(days=rng.randint(1, 30))).isoformat()
                for _ in range(rng.choice((0, 0, 0, 1, 2, 3)))
            }
        )
        overrides: dict[str, list[list[str]]] = {}
        if rng.random() < 0.1:
            day = (self.today + timedelta(days=rng.randint(1, 20))).isoformat()
            overrides[day] = [] if rng.random() < 0.5 else [["10:00", "12:00"]]
        end_date = None if rng.random() < 0.8 else self.today + timedelta(rng.randint(20, 180))
        return {
            "label": label,
            "description": f"{minutes}-minute {kind} on "
            f"{' and '.join(map(_skill_label, topic_skills))}, online, from {city.name}.",
            "skills": topic_skills,
            "timezone": city.timezone,
            "weekly_hours": weekly,
            "overrides": overrides,
            "blackout_dates": blackouts,
            "slot_minutes": minutes,
            "buffer_minutes": rng.choices(BUFFER_MINUTES, BUFFER_WEIGHTS)[0],
            "min_notice_minutes": rng.choices(NOTICE_MINUTES, NOTICE_WEIGHTS)[0],
            "start_date": self.today - timedelta(days=rng.randint(0, 90)),
            "end_date": end_date,
            "price_amount": price_usd,
            "price_currency": currency,
            "price_usd_micros": usd_value(price_usd, currency),
            "capacity": capacity,
            "private": rng.random() < 0.04,
            "auto_accept": rng.random() < 0.7,
            "created_at": self.now,
            "updated_at": self.now,
            "deleted_at": self.now if rng.random() < 0.02 else None,
        }


def _reviews(handle: str, drawn: int, target: float) -> list[tuple[int, str]]:
    """Reviews around ``target``, from their own seeded source (the person's other draws are
    unchanged by them); a third of ``drawn``, at most ``MAX_DEMO_REVIEWS``."""
    if drawn == 0:
        return []
    rng = random.Random(f"{handle}:reviews")  # noqa: S311 - demo data
    out = []
    for _ in range(min(MAX_DEMO_REVIEWS, max(1, drawn // 3))):
        rating = min(5, max(1, round(rng.gauss(target, 0.7))))
        out.append((rating, rng.choice(REVIEW_TEXTS[rating])))
    return out


def _languages(rng: random.Random, city: City) -> list[str]:
    langs = [city.languages[0]]
    for lang in city.languages[1:]:
        if rng.random() < 0.6:
            langs.append(lang)
    if "en" not in langs and rng.random() < 0.5:
        langs.append("en")
    if rng.random() < 0.1:
        extra = rng.choice(("es", "fr", "de", "pt", "zh", "ar", "ru", "it", "ja"))
        if extra not in langs:
            langs.append(extra)
    return langs


def _about(
    rng: random.Random,
    field: Profession,
    title: str,
    years: int,
    city: City,
    skills: Sequence[str],
    languages: Sequence[str],
) -> str:
    focus = ", ".join(_skill_label(s) for s in skills[:-1])
    focus = f"{focus} and {_skill_label(skills[-1])}" if focus else _skill_label(skills[-1])
    spoken = [LANGUAGE_NAMES.get(code, code) for code in languages]
    parts = [
        f"I help {rng.choice(field.clients)} with {focus}.",
        rng.choice(field.approach),
        f"{title}, {years} years of experience, based in {city.name}.",
        f"Sessions online in {', '.join(spoken)}.",
    ]
    return " ".join(parts)
