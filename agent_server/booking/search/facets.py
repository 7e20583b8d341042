"""Facets: counts of specialists matching a plan's filters (free slots not checked).

``count_facets(uow, plan)`` counts among the first ``FACET_ROWS`` entries of the walk, in one
statement: the specialists, those per price bucket (``PRICE_BUCKETS_USD``) and the
``FACET_SKILLS`` most common skills. The cursor and the page size play no part, so every page
of a search has the same facets (``agent_server.booking.cache`` reuses them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, String, case, distinct, func, literal, select, union_all
from sqlalchemy.sql.expression import cast

from agent_server.booking.search.answer import Facets
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.sql import (
    SCHEDULES,
    SKILLS,
    Shape,
    last_position,
    matching,
    params,
    position_params,
    rows_upto,
    schedule_conditions,
    shape_of,
    statement,
)
from agent_server.booking.search.walk import slice_end
from agent_server.kernel.store import Direct, UnitOfWork, direct_rows

FACET_ROWS = 1000
"""Walk entries facets count among: bounded work on any catalogue."""
FACET_SKILLS = 8
"""Skills a facet lists, the most common first."""
PRICE_BUCKETS_USD: tuple[int, ...] = (0, 50, 100, 200, 500)
"""Lower bounds (whole USD per slot) of the price-range facet buckets."""


def _bucket_label(i: int) -> str:
    lo = PRICE_BUCKETS_USD[i]
    if i + 1 < len(PRICE_BUCKETS_USD):
        return f"{lo}-{PRICE_BUCKETS_USD[i + 1]}"
    return f"{lo}+"


async def count_facets(uow: UnitOfWork, plan: Plan) -> Facets:
    """Facet counts over the matches among the first ``FACET_ROWS`` entries of the walk.

    Bounded work on any catalogue: on a small one that is every match, on a large one the
    matches nearest the top of the sort order (``complete`` is then false). One statement:
    the matched ids once, then three aggregates over them.
    """
    shape = shape_of(plan)
    end = await slice_end(uow, shape, None, FACET_ROWS)
    values = params(plan)
    values.update(position_params("e", last_position(shape) if end is None else end))
    counted = 0
    buckets: dict[int, int] = {}
    skills: list[tuple[str, int]] = []
    for kind, key, count in await direct_rows(uow, facet_counts_query(shape), values):
        if kind == "n":
            counted = count
        elif kind == "p":
            buckets[int(key)] = count
        else:
            skills.append((key, count))
    skills.sort(key=lambda sc: (-sc[1], sc[0]))
    return Facets(
        skills=dict(skills[:FACET_SKILLS]),
        price_ranges={
            _bucket_label(i): buckets[i] for i in range(len(PRICE_BUCKETS_USD)) if buckets.get(i)
        },
        counted=counted,
        complete=end is None,
    )


def facet_counts_query(shape: Shape) -> Direct:
    """(kind, key, count) rows: ``n`` specialists, ``p`` per price bucket, ``s`` per skill."""

    def build() -> Select[Any]:
        walk = matching(shape)
        walked = walk.where(rows_upto(shape)).subquery("walked")
        ids = select(walked.c.sid).distinct().cte("ids").prefix_with("MATERIALIZED")
        in_ids = select(ids.c.sid)
        price, bounds = SCHEDULES.price_usd_micros, PRICE_BUCKETS_USD
        bucket = case(
            *((price < bounds[i + 1] * 1_000_000, i) for i in range(len(bounds) - 1)),
            else_=len(bounds) - 1,
        )
        parts = [
            select(literal("n"), cast(None, String), func.count()).select_from(ids),
            select(
                literal("p"), cast(bucket, String), func.count(distinct(SCHEDULES.specialist_id))
            )
            .where(SCHEDULES.specialist_id.in_(in_ids), *schedule_conditions(shape))
            .group_by(bucket),
            select(literal("s"), SKILLS.skill, func.count())
            .where(SKILLS.specialist_id.in_(in_ids))
            .group_by(SKILLS.skill),
        ]
        return union_all(*parts)  # type: ignore[return-value]

    return statement(("facets", shape), build)
