"""search-specialists: one page of a search, from the query to the compact answer.

``search_specialists(uow, query, now=..., facets=...)`` resolves the plan, repairs unknown
``next_free_at`` bounds, takes the profile index (``profiles``) when the walk or the facets
use it, walks the page, reads its specialists, counts facets (unless given) and shapes the
page within its budget.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.sql import Executable

from agent_server.booking.next_free import refresh_next_free
from agent_server.booking.search.answer import Facets, SearchPage
from agent_server.booking.search.compact import (
    DETAIL_LEVELS,
    PAGE_BUDGET_PER_RESULT,
    Hits,
    Person,
    page_size,
)
from agent_server.booking.search.cursor import encode_cursor
from agent_server.booking.search.facets import count_facets
from agent_server.booking.search.plan import make_plan
from agent_server.booking.search.profiles import has_profile_filters, profile_index
from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.sql import (
    SCHEDULES,
    SPECIALISTS,
    any_of,
    list_params,
    list_size,
    opaque,
    same,
    statement,
)
from agent_server.booking.search.text import iso_utc
from agent_server.booking.search.walk import walk_page
from agent_server.kernel.store import Direct, UnitOfWork, direct_rows, plan_each_time

NULL_REPAIR = 1000
"""Schedules with an unknown ``next_free_at`` one call computes before searching."""


def unknown_query(sqlite: bool) -> Direct:
    """Searchable schedules without a ``next_free_at`` (at most ``NULL_REPAIR``)."""

    def build() -> Executable:
        hidden = opaque if sqlite else same
        return (
            select(SCHEDULES.id)
            .where(
                SCHEDULES.next_free_at.is_(None),
                hidden(SCHEDULES.specialist_id).is_not(None),
                hidden(SCHEDULES.private).is_(False),
                hidden(SCHEDULES.deleted_at).is_(None),
            )
            .limit(NULL_REPAIR)
        )

    return statement(("unknown", sqlite), build)


async def _repair_unknown(uow: UnitOfWork, now: datetime) -> None:
    """Compute ``next_free_at`` of searchable schedules that do not have one yet."""
    ids = [r[0] for r in await direct_rows(uow, unknown_query(uow.db.is_sqlite), {})]
    if ids:
        await refresh_next_free(uow.session, ids, now=now)


_PERSON = (
    SPECIALISTS.id,
    SPECIALISTS.name,
    SPECIALISTS.title,
    SPECIALISTS.about,
    SPECIALISTS.city,
    SPECIALISTS.country,
    SPECIALISTS.languages,
    SPECIALISTS.skills,
    SPECIALISTS.rating,
    SPECIALISTS.review_count,
)


def people_query(size: int) -> Direct:
    def build() -> Executable:
        return select(*_PERSON).where(any_of(SPECIALISTS.id, "i", size))

    return statement(("people", size), build)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def _people(uow: UnitOfWork, ids: list[int]) -> dict[int, Person]:
    """The profiles the page shows, by id."""
    if not ids:
        return {}
    rows = await direct_rows(uow, people_query(list_size(len(ids))), list_params("i", ids))
    return {
        r[0]: Person(r[0], r[1], r[2], r[3], r[4], r[5], _json(r[6]), _json(r[7]), r[8], r[9])
        for r in rows
    }


async def search_specialists(
    uow: UnitOfWork, query: SearchQuery, *, now: datetime, facets: Facets | None = None
) -> SearchPage:
    """One page of specialists matching ``query`` at ``now`` (see the module docstring).

    ``ValidationFailed`` names the field for a bad combination (price_max under price_min,
    hours_from without hours_to, a window past 62 days or in the past, a foreign cursor).
    The page stays compact: texts are shortened, and trimmed further when a page would pass
    ``PAGE_BUDGET_PER_RESULT`` characters per result (7,600 for 10 results).
    ``facets``, when given, are this search's facets as counted for another page of it (the
    same ``fingerprint``) at the same ``now`` on the same catalogue: they do not depend on
    the cursor or the page size, so the page uses them instead of counting again.
    Takes an entered unit of work; flushes, never commits.
    """
    plan = make_plan(query, now, uow.db.is_sqlite)
    await plan_each_time(uow)
    await _repair_unknown(uow, now)
    index = await profile_index(uow) if facets is None or has_profile_filters(query) else None
    walk = await walk_page(uow, plan, index)
    people = await _people(uow, [ev.specialist_id for ev in walk.emitted])
    if facets is None:
        facets = await count_facets(uow, plan, walk, index)
    await uow.flush()
    budget = PAGE_BUDGET_PER_RESULT * max(query.limit, 10)
    page: SearchPage | None = None
    hits = Hits(plan)
    for detail in DETAIL_LEVELS:
        page = SearchPage(
            items=[hits.hit(people[ev.specialist_id], ev, detail) for ev in walk.emitted],
            facets=facets,
            timezone=query.timezone,
            window_start=iso_utc(plan.window_start),
            window_end=iso_utc(plan.window_end),
            next_cursor=(
                encode_cursor(query.fingerprint(), walk.resume) if walk.resume is not None else None
            ),
        )
        if page_size(page) <= budget:
            break
    assert page is not None
    return page
