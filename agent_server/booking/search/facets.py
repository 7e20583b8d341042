"""Facets: counts of specialists matching a plan's filters (free slots not checked).

``count_facets(uow, plan, walk, index)`` counts among the first ``FACET_ROWS`` entries of
the walk (from where it begins: past a lower price bound for the cheapest first, for
instance): the specialists, those per price bucket (``PRICE_BUCKETS_USD``) and the
``FACET_SKILLS`` most common skills; from what the page's walk already read when it read
that far (rare matches), else in one statement, and their skills from the profile index
when there is one. The cursor and the page size play no part, so every page
of a search has the same facets (``agent_server.booking.cache`` reuses them).
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from sqlalchemy import Select, String, case, distinct, func, literal, select, union_all
from sqlalchemy.sql.expression import cast

from agent_server.booking.search.answer import Facets
from agent_server.booking.search.cursor import Position
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.profiles import ProfileIndex
from agent_server.booking.search.sql import (
    SCHEDULES,
    SKILLS,
    Shape,
    any_of,
    first_position,
    last_position,
    list_params,
    list_size,
    matching,
    params,
    position_params,
    rows_after,
    rows_upto,
    schedule_conditions,
    shape_of,
    statement,
)
from agent_server.booking.search.walk import Walk, slice_end, walk_bounds
from agent_server.kernel.store import Direct, UnitOfWork, direct_rows

FACET_ROWS = 1000
"""Walk entries facets count among: bounded work on any catalogue."""
MET_IDS = 64
"""Specialists a walk met that facets count from it (more: counted in SQL, one statement)."""
FACET_SKILLS = 8
"""Skills a facet lists, the most common first."""
PRICE_BUCKETS_USD: tuple[int, ...] = (0, 50, 100, 200, 500)
"""Lower bounds (whole USD per slot) of the price-range facet buckets."""


def _bucket_label(i: int) -> str:
    lo = PRICE_BUCKETS_USD[i]
    if i + 1 < len(PRICE_BUCKETS_USD):
        return f"{lo}-{PRICE_BUCKETS_USD[i + 1]}"
    return f"{lo}+"


def _bucket(usd_micros: int) -> int:
    whole_usd, _ = divmod(usd_micros, 1_000_000)
    return bisect_right(PRICE_BUCKETS_USD, whole_usd) - 1


async def count_facets(
    uow: UnitOfWork, plan: Plan, walk: Walk | None = None, index: ProfileIndex | None = None
) -> Facets:
    """Facet counts over the matches among the first ``FACET_ROWS`` entries of the walk.

    Bounded work on any catalogue: on a small one that is every match, on a large one the
    matches nearest the top of the sort order (``complete`` is then false). When ``walk``
    (this plan's page) already read every match up to there, as it does when matches are
    rare, its specialists and their cut schedules are counted; otherwise one statement
    finds them and counts them per price bucket. Their skills are counted from the profile
    ``index`` when there is one, else in SQL (``skill_counts_query``, or a third part of
    that statement).
    """
    shape = shape_of(plan)
    start, _ = walk_bounds(plan)  # where the walk begins: a price or rating bound
    end = await slice_end(uow, shape, start, FACET_ROWS)
    buckets: dict[int, int] = {}
    skills: list[tuple[str, int]] = []
    ids = _met_upto(plan, walk, end)
    if ids is not None:
        assert walk is not None
        for sid in ids:
            for i in {_bucket(s.schedule.price_usd_micros) for s in walk.met[sid][1].schedules}:
                buckets[i] = buckets.get(i, 0) + 1
        if ids and index is None:
            query = skill_counts_query(list_size(len(ids)))
            skills = [(k, c) for k, c in await direct_rows(uow, query, list_params("i", ids))]
    else:
        values = params(plan)
        values.update(position_params("a", first_position(shape) if start is None else start))
        values.update(position_params("e", last_position(shape) if end is None else end))
        ids = []
        query = facet_counts_query(shape, skills=index is None)
        for kind, key, count in await direct_rows(uow, query, values):
            if kind == "i":
                ids.append(count)
            elif kind == "p":
                buckets[int(key)] = count
            else:
                skills.append((key, count))
    if index is not None:
        skills = index.skill_counts(ids)
    skills.sort(key=lambda sc: (-sc[1], sc[0]))
    return Facets(
        skills=dict(skills[:FACET_SKILLS]),
        price_ranges={
            _bucket_label(i): buckets[i] for i in range(len(PRICE_BUCKETS_USD)) if buckets.get(i)
        },
        counted=len(ids),
        complete=end is None,
    )


def _met_upto(plan: Plan, walk: Walk | None, end: Position | None) -> list[int] | None:
    """The specialists ``walk`` met with a matching entry at or before ``end``, when it read
    every such entry and they are at most ``MET_IDS``; else None."""
    if walk is None or not walk.read_upto(plan, end):
        return None
    if end is None:
        ids = list(walk.met)
    else:
        last = plan.rank(end)
        ids = [sid for sid, (pos, _) in walk.met.items() if plan.rank(pos) <= last]
    return ids if len(ids) <= MET_IDS else None


def skill_counts_query(size: int) -> Direct:
    """(skill, count) rows: the skills of the specialists ``i0..i<size-1>``."""

    def build() -> Select[Any]:
        return (
            select(SKILLS.skill, func.count())
            .where(any_of(SKILLS.specialist_id, "i", size))
            .group_by(SKILLS.skill)
        )

    return statement(("skill_counts", size), build)


def facet_counts_query(shape: Shape, *, skills: bool = True) -> Direct:
    """(kind, key, count) rows among the walk's entries after ``a0..a2`` and up to
    ``e0..e2``: ``i`` for each specialist (its id as the count), ``p`` per price bucket, and
    with ``skills``, ``s`` per skill."""

    def build() -> Select[Any]:
        walk = matching(shape)
        walked = walk.where(rows_after(shape), rows_upto(shape)).subquery("walked")
        ids = select(walked.c.sid).distinct().cte("ids").prefix_with("MATERIALIZED")
        in_ids = select(ids.c.sid)
        price, bounds = SCHEDULES.price_usd_micros, PRICE_BUCKETS_USD
        bucket = case(
            *((price < bounds[i + 1] * 1_000_000, i) for i in range(len(bounds) - 1)),
            else_=len(bounds) - 1,
        )
        parts = [
            select(literal("i"), cast(None, String), ids.c.sid),
            select(
                literal("p"), cast(bucket, String), func.count(distinct(SCHEDULES.specialist_id))
            )
            .where(SCHEDULES.specialist_id.in_(in_ids), *schedule_conditions(shape))
            .group_by(bucket),
        ]
        if skills:
            parts.append(
                select(literal("s"), SKILLS.skill, func.count())
                .where(SKILLS.specialist_id.in_(in_ids))
                .group_by(SKILLS.skill)
            )
        return union_all(*parts)  # type: ignore[return-value]

    return statement(("facets", shape, skills), build)
