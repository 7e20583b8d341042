"""Compact pages: how much of each result a page shows, and what it costs as sent.

``hit(plan, person, ev, detail)`` is one result at a ``Detail`` level; a page over
``PAGE_BUDGET_PER_RESULT`` characters per result drops to the next of ``DETAIL_LEVELS``
(shorter about, fewer skills and languages, then fewer slots). ``compact_json`` is the text
answers are sent as, and ``page_size`` measures a page in it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent_server.booking.search.answer import (
    ScheduleHit,
    SearchPage,
    SpecialistHit,
    local_time_range,
)
from agent_server.booking.search.evaluation import SpecialistEval
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.text import clip, iso_utc
from agent_server.kernel.money import Money


@dataclass(frozen=True, slots=True)
class Person:
    """The profile fields a result shows."""

    id: int
    name: str
    title: str
    about: str
    city: str
    country: str
    languages: list[str]
    skills: list[str]
    rating: float
    review_count: int


@dataclass(frozen=True)
class Detail:
    """How much of each result a page shows; pages over budget drop to the next level."""

    about: int
    title: int
    skills: int
    languages: int
    slots: int
    label: int


DETAIL_LEVELS: tuple[Detail, ...] = (
    Detail(about=100, title=64, skills=5, languages=4, slots=3, label=40),
    Detail(about=64, title=48, skills=4, languages=4, slots=3, label=32),
    Detail(about=32, title=48, skills=3, languages=3, slots=3, label=24),
    Detail(about=0, title=40, skills=3, languages=3, slots=3, label=16),
    Detail(about=0, title=40, skills=3, languages=3, slots=2, label=16),
    Detail(about=0, title=32, skills=2, languages=2, slots=1, label=0),
)
PAGE_BUDGET_PER_RESULT = 760
"""A page of n results serialises to at most max(n, 10) times this many characters: 7,600
for 10, which leaves room for the call's receipt within 8,000."""


def hit(plan: Plan, person: Person, ev: SpecialistEval, detail: Detail) -> SpecialistHit:
    """``person`` as a result at ``detail``: its matched schedules and first fitting slots."""
    matched = ev.matched
    shown = sorted((slot for s in matched for slot in s.fitting), key=lambda slot: slot.start)[
        : detail.slots
    ]
    first = min(s.first_free.start for s in matched if s.first_free is not None)
    return SpecialistHit(
        id=person.id,
        name=clip(person.name, 64),
        title=clip(person.title, detail.title),
        about=clip(person.about, detail.about),
        city=person.city,
        country=person.country,
        languages=list(person.languages)[: detail.languages],
        skills=list(person.skills)[: detail.skills],
        rating=person.rating,
        review_count=person.review_count,
        next_available=iso_utc(first),
        schedules=[
            ScheduleHit(
                id=s.schedule.id,
                label=clip(s.schedule.label, detail.label),
                slot_minutes=s.schedule.slot_minutes,
                price=Money.of(s.schedule.price_amount, s.schedule.price_currency),
                capacity=s.schedule.capacity,
                slots={
                    slot.slot_id: local_time_range(slot, plan.tz)
                    for slot in shown
                    if slot.schedule_id == s.schedule.id
                },
            )
            for s in matched
        ],
    )


def compact_json(body: Any) -> str:
    """``body`` as compact JSON text, as answers are sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def page_size(page: SearchPage) -> int:
    """Characters of the page as sent: compact JSON, UTF-8 text."""
    return len(compact_json(page.model_dump(mode="json")))
