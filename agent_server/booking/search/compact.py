"""Compact pages: how much of each result a page shows, and what it costs as sent.

``Hits(plan).hit(person, ev, detail)`` is one result at a ``Detail`` level; a page over
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


@dataclass(frozen=True, slots=True)
class Shown:
    """What a result shows the same at every ``Detail`` level: its first free slot, the
    fitting slots soonest first (schedule id, slot id, local time range) and each matched
    schedule's price. Made once per result of a page (``Hits``), whatever the level."""

    next_available: str
    slots: tuple[tuple[int, str, str], ...]
    prices: tuple[Money, ...]


def shown(plan: Plan, ev: SpecialistEval, most: int) -> Shown:
    """``ev``'s first ``most`` fitting slots and its prices (see ``Shown``)."""
    matched = ev.matched
    soonest = sorted((slot for s in matched for slot in s.fitting), key=lambda slot: slot.start)
    first = min(s.first_free.start for s in matched if s.first_free is not None)
    return Shown(
        next_available=iso_utc(first),
        slots=tuple(
            (slot.schedule_id, slot.slot_id, local_time_range(slot, plan.tz))
            for slot in soonest[:most]
        ),
        prices=tuple(Money.of(s.schedule.price_amount, s.schedule.price_currency) for s in matched),
    )


class Hits:
    """The results of one page, at any ``Detail`` level: what every level shows the same
    (``Shown``) is made once per result, the first time a level asks for it."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._shown: dict[int, Shown] = {}
        self._most = max(d.slots for d in DETAIL_LEVELS)

    def hit(self, person: Person, ev: SpecialistEval, detail: Detail) -> SpecialistHit:
        """``person`` as a result at ``detail``: its matched schedules and first fitting
        slots."""
        same = self._shown.get(ev.specialist_id)
        if same is None:
            same = self._shown[ev.specialist_id] = shown(self.plan, ev, self._most)
        slots = same.slots[: detail.slots]
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
            next_available=same.next_available,
            schedules=[
                ScheduleHit(
                    id=s.schedule.id,
                    label=clip(s.schedule.label, detail.label),
                    slot_minutes=s.schedule.slot_minutes,
                    price=price,
                    capacity=s.schedule.capacity,
                    slots={slot_id: local for sid, slot_id, local in slots if sid == s.schedule.id},
                )
                for s, price in zip(ev.matched, same.prices, strict=True)
            ],
        )


def compact_json(body: Any) -> str:
    """``body`` as compact JSON text, as answers are sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def page_size(page: SearchPage) -> int:
    """Characters of the page as sent: compact JSON, UTF-8 text."""
    return len(compact_json(page.model_dump(mode="json")))
