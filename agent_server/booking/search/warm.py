"""Warm-up: the search's statements compiled before the first search needs them.

A statement is compiled the first time its shape is met (``sql.statement``), which costs a
search several milliseconds per statement; on a fresh server most searches met a shape for
the first time. ``warm_statements(db)`` compiles, for ``db``'s dialect, the statements of
every shape searches commonly have: each sort and order (next_available: ascending), with
and without days or hours asked, up to ``WARM_WORDS`` words and ``WARM_SKILLS`` skills,
with and without languages, lists of ids up to ``WARM_IDS``. Other shapes still compile on
first use. ``agent-server serve`` calls it before it listens.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from agent_server.booking.search.evaluation import schedules_query, seats_query
from agent_server.booking.search.facets import MET_IDS, facet_counts_query, skill_counts_query
from agent_server.booking.search.query import SortBy
from agent_server.booking.search.specialists import people_query, unknown_query
from agent_server.booking.search.sql import (
    STATEMENTS,
    Shape,
    driven_walk_query,
    list_size,
    skill_count_query,
    slice_end_query,
    walk_query,
    word_slots,
)
from agent_server.kernel.store import PLAN_EACH_TIME, Database, Direct

WARM_WORDS = 2
WARM_SKILLS = 2
WARM_IDS = 64
"""The largest shapes compiled ahead: words of ``q``, skills, and ids in one list."""


def warm_shapes(sqlite: bool) -> list[Shape]:
    """The shapes compiled ahead, the commonest first."""
    languages = (0, list_size(1))
    words = sorted({word_slots(n) for n in range(WARM_WORDS + 1)})  # one and two words: one
    return [
        Shape(sort, desc, sqlite, slots, skills, langs)
        for slots, skills, langs, sort, desc in itertools.product(
            words, range(WARM_SKILLS + 1), languages, SortBy, (False, True)
        )
        if not (desc and sort is SortBy.NEXT_AVAILABLE)  # soonest first only
    ]


def warm_statements(db: Database) -> int:
    """Compile the common shapes' statements for ``db``'s dialect; how many there are."""
    dialect = db.engine.dialect
    sqlite = db.is_sqlite
    directs: list[Direct] = [PLAN_EACH_TIME, unknown_query(sqlite), skill_count_query()]
    sizes = []
    size = list_size(1)
    while size <= WARM_IDS:
        sizes.append(size)
        size *= 2
    for size in sizes:
        directs += [people_query(size), seats_query(size)]
        if size <= list_size(MET_IDS):
            directs.append(skill_counts_query(size))
    for shape in warm_shapes(sqlite):
        blocks = replace(shape, blocks=True)  # days or hours asked
        directs += [walk_query(shape), slice_end_query(shape), facet_counts_query(shape)]
        directs.append(walk_query(blocks))
        if shape.skills:
            directs += [driven_walk_query(shape), driven_walk_query(blocks)]
        directs += [schedules_query(shape, size) for size in sizes]  # one per backend
    unique = list({id(d): d for d in directs}.values())
    assert len(unique) <= STATEMENTS, "the statement table must keep every warmed statement"
    for direct in unique:
        direct.compiled(dialect)
    return len(unique)
