"""A server warmed up before it listens compiles no statement for the searches agents send."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from agent_server.booking.demo import load_demo_data
from agent_server.booking.search import sql as search_sql
from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.specialists import search_specialists
from agent_server.booking.search.warm import warm_statements
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database
from agent_server.kernel.store import direct as store_direct

QUERIES: list[dict[str, Any]] = [
    {},
    {"sort": "price", "skills": ["python"], "price_max": 90_000_000},
    {"sort": "price", "order": "desc", "languages": ["en", "de"], "q": "tax"},
    {"sort": "next_available", "skills": ["python", "tax-law"], "timezone": "Asia/Tokyo"},
    {"sort": "rating", "order": "asc", "q": "senior advisor", "city": "Berlin"},
    {"order": "asc", "languages": ["fr"], "min_rating": 4.0, "limit": 50},
    {"days_of_week": ["mon"], "hours_from": "09:00", "hours_to": "12:00", "duration": 60},
]


def _counting_compilations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The statements compiled from now on (the start of each), in order."""
    compiled: list[str] = []
    original = store_direct.compile_direct

    def counting(statement: Any, dialect: Any) -> Any:
        compiled.append(str(statement)[:80])
        return original(statement, dialect)

    monkeypatch.setattr(store_direct, "compile_direct", counting)
    return compiled


async def test_warmed_statements_serve_every_common_search_shape(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    await load_demo_data(db, 40, seed=3)
    warmed = warm_statements(db)
    assert warmed > 100
    compiled = _counting_compilations(monkeypatch)
    found = 0
    for raw in QUERIES:
        async with db.uow() as uow:
            page = await search_specialists(uow, SearchQuery.parse(raw), now=clock.now())
            await uow.commit()
        found += len(page.items)
    assert found > 0  # the searches did find specialists
    assert compiled == []  # and none of them compiled a statement


async def test_a_search_of_one_word_runs_the_statements_of_two(
    db: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One word is bound as two patterns (the second matches every text), so a server keeps
    and warms one set of statements for both; a third word is a shape of its own."""
    await load_demo_data(db, 40, seed=3)
    compiled = _counting_compilations(monkeypatch)

    async def search(raw: dict[str, Any]) -> int:
        async with db.uow() as uow:
            page = await search_specialists(uow, SearchQuery.parse(raw), now=clock.now())
            await uow.commit()
        return len(page.items)

    await search({"q": "advisor", "sort": "price"})
    first = len(compiled)
    assert first > 0  # a cold process compiles the shape's statements
    await search({"q": "senior advisor", "sort": "price"})
    assert len(compiled) == first  # two words: the same statements
    await search({"q": "senior tax advisor", "sort": "price"})
    assert len(compiled) > first  # three words: statements of their own


async def test_warming_up_holds_one_statement_tree_at_a_time(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compiled statement lets its tree go. Warming up builds each statement only once the
    one before is compiled, so a fresh process never holds hundreds of trees at once (about
    10 MiB, whose room its heap would keep for good)."""
    table: OrderedDict[Any, Any] = OrderedDict()
    monkeypatch.setattr(search_sql, "_TABLE", table)  # a fresh process: nothing built yet
    trees: list[int] = []
    original = store_direct.compile_direct

    def counting(statement: Any, dialect: Any) -> Any:
        trees.append(sum(1 for d in table.values() if d._statement is not None))
        return original(statement, dialect)

    monkeypatch.setattr(store_direct, "compile_direct", counting)
    warmed = warm_statements(db)
    assert warmed > 100 and len(trees) >= len(table) > 100
    assert max(trees) == 1  # the one being compiled
    assert all(d._statement is None for d in table.values())
