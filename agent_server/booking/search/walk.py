"""The walk: the plan's index read in sort order until a page is known exactly.

``walk_page(uow, plan)`` gives a ``Walk``: the specialists of the page (at most
``limit + 1``, in order, as ``SpecialistEval``) and the position the next page resumes
after (None at the end). A specialist is emitted once the walk has passed its key, so the
order is exact although keys are known only after slots are cut. The walk reads the index a
slice at a time (``slice_end``, or the same end found by an earlier search:
``known_slice_end``) and stops early after ``MAX_EXAMINED`` specialists or
``MAX_SCANNED`` entries: then the page may be short and the cursor resumes it. When few
specialists pass the profile filters (the profile index counts them:
``booking.search.profiles``), the walk reads their matching entries, sorted, instead of the
index (``driven_walk_query``): the same rows in the same order; when none do, it reads
nothing. Without the index (it is being rebuilt), a skill few specialists list
(``RARE_SKILL``) drives the walk the same way.
"""

from __future__ import annotations

import heapq
import json
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from weakref import WeakKeyDictionary

from agent_server.booking.next_free import store_next_free
from agent_server.booking.search.cursor import Position
from agent_server.booking.search.evaluation import SpecialistEval, evaluate
from agent_server.booking.search.plan import Plan
from agent_server.booking.search.profiles import ProfileIndex, has_profile_filters
from agent_server.booking.search.query import SortBy
from agent_server.booking.search.sql import (
    Shape,
    driven_walk_query,
    first_position,
    last_position,
    moment,
    params,
    position_params,
    shape_of,
    skill_count_query,
    slice_end_query,
    walk_query,
)
from agent_server.kernel.store import Database, UnitOfWork, direct_rows

MAX_EXAMINED = 200
"""Specialists whose slots one search call may cut before it returns a short page."""
FIRST_SLICE = 256
"""Index entries of the first slice; each next slice is four times longer, up to MAX_SLICE."""
MAX_SLICE = 4096
RARE_SKILL = 400
"""Specialists a skill filter may match at most for the walk to start from them, sorted,
instead of walking the sort index."""
MAX_SCANNED = 12_000
"""Walk entries one search call may read before it returns a short page (rare matches)."""
ALL_ROWS = 2**31 - 1
"""The limit of a driven walk's one statement: every row it matches."""
BEYOND_IDS = 2**62
"""Above every id: a position after all rows of one sort value."""
SLICE_END_SECONDS = 60.0
"""How long a slice's end found by one search serves the next ones (``known_slice_end``)."""
SLICE_ENDS = 2048
"""Slice ends one process keeps per database; the least recently used leave first."""


@dataclass
class Walk:
    """A page as the walk found it, and where the next page starts."""

    emitted: list[SpecialistEval]
    resume: Position | None  # where the next page starts, or None at the end
    met: dict[int, tuple[Position, SpecialistEval]]
    """Every specialist the walk met: where first (its first matching entry) and as cut."""
    covered: Position | None
    """On a first page (no cursor), the position up to which every matching entry was read
    (``met`` holds all of their specialists); None otherwise. ``exhausted``: every entry."""
    exhausted: bool

    def read_upto(self, plan: Plan, end: Position | None) -> bool:
        """Whether ``met`` holds every specialist with a matching entry at or before ``end``
        (None: the end of the walk)."""
        if self.exhausted and plan.after is None:
            return True
        if self.covered is None or end is None:
            return False
        return plan.rank(self.covered) >= plan.rank(end)


async def slice_end(
    uow: UnitOfWork, shape: Shape, after: Position | None, rows: int
) -> Position | None:
    """The position ``rows`` entries of the walk's index after ``after`` (before any filter),
    or None when fewer are left.

    Read from the index alone, so a slice of the walk costs the same on any catalogue size
    whatever the planner thinks of the filters.
    """
    values = position_params("a", first_position(shape) if after is None else after)
    values["off"] = rows - 1
    found = await direct_rows(uow, slice_end_query(shape), values)
    return None if not found else as_position(shape, found[0])


_SLICE_ENDS: WeakKeyDictionary[Database, OrderedDict[Hashable, tuple[float, Position | None]]] = (
    WeakKeyDictionary()
)


async def known_slice_end(
    uow: UnitOfWork, shape: Shape, after: Position | None, rows: int
) -> Position | None:
    """``slice_end``, as found by an earlier search when one asked the same less than
    ``SLICE_END_SECONDS`` ago.

    A slice's end only divides the walk: the page, its order and its cursor are the same
    wherever the slices end, as long as each ends after it begins, and an end found after
    ``after`` always does. Searches from the start of an index (or from the same price or
    rating bound) meet the same ends slice after slice, so most are not read again; one
    older than a minute is, so slices stay near their size as the catalogue changes.
    """
    ends = _SLICE_ENDS.get(uow.db)
    if ends is None:
        ends = _SLICE_ENDS[uow.db] = OrderedDict()
    key = (shape.sort, shape.desc, shape.sqlite, after, rows)
    now = time.monotonic()
    found = ends.get(key)
    if found is not None and now - found[0] < SLICE_END_SECONDS:
        ends.move_to_end(key)
        return found[1]
    end = await slice_end(uow, shape, after, rows)
    ends[key] = (now, end)
    ends.move_to_end(key)
    while len(ends) > SLICE_ENDS:
        ends.popitem(last=False)
    return end


def as_position(shape: Shape, row: Sequence[Any]) -> Position:
    """A walk position from the driver's values of its three columns."""
    value = row[0]
    if shape.sort is SortBy.NEXT_AVAILABLE:
        value = moment(value)
    return (value, row[1], row[2])


async def rarest_skill(uow: UnitOfWork, plan: Plan) -> str | None:
    """The skill filter fewest specialists list, when at most ``RARE_SKILL`` do; else None."""
    best: tuple[int, str] | None = None
    for skill in plan.query.skills:
        values = {"skill": skill, "cap": RARE_SKILL + 1}
        count = (await direct_rows(uow, skill_count_query(), values))[0][0]
        if count <= RARE_SKILL and (best is None or count < best[0]):
            best = (count, skill)
    return None if best is None else best[1]


def walk_bounds(plan: Plan) -> tuple[Position | None, Position | None]:
    """Where matches can begin and end in the walk, from the bounds on its sort column: the
    price bounds for the price sort, ``min_rating`` for the rating sort (None: no bound).

    The walk starts after the first and, once a slice reaches past the second, reads the rest
    at once (SQL's own bound ends it), so a narrow price band or a high ``min_rating`` is not
    met by scanning the index from its start.
    """
    low_value: Any = None
    high_value: Any = None
    if plan.sort is SortBy.PRICE:
        low_value, high_value = plan.usd_min, plan.usd_max
    elif plan.sort is SortBy.RATING:
        low_value = plan.query.min_rating
    low = None if low_value is None else (low_value, 0, 0)
    high = None if high_value is None else (high_value, BEYOND_IDS, BEYOND_IDS)
    return (high, low) if plan.desc else (low, high)


async def walk_page(uow: UnitOfWork, plan: Plan, index: ProfileIndex | None = None) -> Walk:
    """The specialists of the page ``plan`` asks for, in order (see the module docstring);
    ``index``: the profile index at the catalogue's profiles version, when there is one."""
    want = plan.query.limit + 1
    after = plan.after
    after_rank = plan.rank(after) if after is not None else None
    heap: list[tuple[tuple[Any, ...], int]] = []
    found: dict[int, SpecialistEval] = {}
    seen: set[int] = set()
    met: dict[int, tuple[Position, SpecialistEval]] = {}
    emitted: list[SpecialistEval] = []
    examined = scanned = 0
    slice_rows = FIRST_SLICE
    start, stop = walk_bounds(plan)
    last: Position | None = after
    if start is not None and (after is None or plan.rank(after) < plan.rank(start)):
        last = start  # nothing before it matches: the walk begins there
    exhausted = False

    def emit_up_to(pos: Position) -> None:
        here = plan.rank(pos)
        while heap and heap[0][0] <= here and len(emitted) < want:
            emitted.append(found[heapq.heappop(heap)[1]])

    bounds: dict[int, datetime] = {}  # fresh next-free bounds, stored once the walk ends
    shape = shape_of(plan)
    filters = params(plan)
    by_ids = False
    later: list[int] | None = None  # the matching specialists, to drive from after a slice
    rare = None
    if index is not None and has_profile_filters(plan.query):
        mask = index.matching(plan.query)
        count = mask.bit_count()
        if count == 0:  # no specialist passes the profile filters
            return Walk([], None, {}, None, True)
        if count <= index.drives:
            by_ids = True
            filters["ids"] = json.dumps(index.ids_of(mask))
        elif count <= MAX_SLICE:
            later = index.ids_of(mask)
    else:
        rare = await rarest_skill(uow, plan)
        if rare is not None:
            filters["rare"] = rare
    driven = by_ids or rare is not None
    gathered: Sequence[Sequence[Any]] | None = None  # a driven walk's rows not yet taken
    while len(emitted) < want:
        if later is not None and scanned and len(later) * 2 <= slice_rows:
            # The slices read held too few of them (they sit further on in this sort order),
            # and there are fewer of them than entries in the next slice: read them all,
            # sorted, from here on.
            filters["ids"], later = json.dumps(later), None
            by_ids = driven = True
        end = None if driven else await known_slice_end(uow, shape, last, slice_rows)
        final = end is None  # the slice reads to the end of the walk
        if stop is not None and not driven and (end is None or plan.rank(end) >= plan.rank(stop)):
            end, final = stop, True  # past the last entry that can match: read up to it
        need = want - len(emitted)
        batch = need + need // 2 + 1  # most specialists met fit; grows when they do not
        values = dict(filters, lim=batch)
        values.update(position_params("a", first_position(shape) if last is None else last))
        if driven:
            if gathered is None:  # every match from here on, sorted, in one statement
                values["lim"] = ALL_ROWS
                query = driven_walk_query(shape, by_ids=by_ids)
                gathered = await direct_rows(uow, query, values)
            taken, gathered = gathered[:batch], gathered[batch:]
            rows = [(r[0], *as_position(shape, r[1:])) for r in taken]
        else:
            values.update(position_params("e", last_position(shape) if end is None else end))
            fetched = await direct_rows(uow, walk_query(shape), values)
            rows = [(r[0], *as_position(shape, r[1:])) for r in fetched]
        new_ids = list(dict.fromkeys(r[0] for r in rows if r[0] not in seen))
        evals = await evaluate(uow, plan, new_ids, bounds)
        examined += len(new_ids)
        for row in rows:
            specialist_id = row[0]
            if specialist_id not in seen:
                seen.add(specialist_id)
                ev = evals[specialist_id]
                met[specialist_id] = ((row[1], row[2], row[3]), ev)
                if ev.key is not None and (after_rank is None or plan.rank(ev.key) > after_rank):
                    found[specialist_id] = ev
                    heapq.heappush(heap, (plan.rank(ev.key), specialist_id))
            last = (row[1], row[2], row[3])
            emit_up_to(last)
            if len(emitted) >= want:
                break
        if len(emitted) >= want:
            break
        if len(rows) < batch:  # the whole slice was read: move past it
            if final:
                exhausted = True
                break
            assert end is not None
            last = end
            emit_up_to(end)
            scanned += slice_rows
            slice_rows = min(slice_rows * 4, MAX_SLICE)
        if examined >= MAX_EXAMINED or scanned >= MAX_SCANNED:
            break
    if bounds:
        # All of them at once, in id order (``store_next_free``): slice by slice, two searches
        # meeting the same schedules in another order could each wait for the other's rows.
        # Only a search with something to write makes a session.
        await store_next_free(uow.session, bounds)
    if exhausted:
        while heap and len(emitted) < want:
            emitted.append(found[heapq.heappop(heap)[1]])
    page = emitted[: plan.query.limit]
    resume = None if exhausted else last
    if len(emitted) > plan.query.limit:
        assert page[-1].key is not None
        resume = page[-1].key
    covered = last if plan.after is None else None
    return Walk(page, resume, met, covered, exhausted)
