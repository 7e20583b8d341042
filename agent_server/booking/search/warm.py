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
from collections.abc import Iterator
from dataclasses import replace

from agent_server.booking.search.evaluation import schedules_query, seats_query
from agent_server.booking.search.facets import MET_IDS, facet_counts_query, skill_counts_query
from agent_server.booking.search.profiles import profile_statements
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
    """Compile the common shapes' statements for ``db``'s dialect; how many there are.

    Each statement is built and compiled before the next is built: a compiled statement lets
    its tree go, so the process never holds all the trees at once (about 10 MiB, whose room
    the heap would keep for good)."""
    dialect = db.engine.dialect
    warmed: set[int] = set()
    for direct in _warm_directs(db.is_sqlite):
        direct.compiled(dialect)
        warmed.add(id(direct))  # every one stays in the statement table (or is a constant)
    assert len(warmed) <= STATEMENTS, "the statement table must keep every warmed statement"
    return len(warmed)


def _warm_directs(sqlite: bool) -> Iterator[Direct]:
    """The statements to compile, each built only when the one before has been compiled."""
    yield PLAN_EACH_TIME
    yield from profile_statements(sqlite)
    yield unknown_query(sqlite)
    yield skill_count_query()
    sizes = []
    size = list_size(1)
    while size <= WARM_IDS:
        sizes.append(size)
        size *= 2
    for size in sizes:
        yield people_query(size)
        yield seats_query(size)
        if size <= list_size(MET_IDS):
            yield skill_counts_query(size)
    for shape in warm_shapes(sqlite):
        blocks = replace(shape, blocks=True)  # days or hours asked
        yield walk_query(shape)
        yield slice_end_query(shape)
        yield facet_counts_query(shape)
        yield facet_counts_query(shape, skills=False)
        yield walk_query(blocks)
        if shape.skills:
            yield driven_walk_query(shape)
            yield driven_walk_query(blocks)
        if shape.skills or shape.languages:
            yield driven_walk_query(shape, by_ids=True)
            yield driven_walk_query(blocks, by_ids=True)
        for size in sizes:
            yield schedules_query(shape, size)  # one per backend
