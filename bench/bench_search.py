"""Search with availability over 1,000 and 100,000 demo specialists.

For each size: a copy of the cached demo catalogue (``Context.catalogue``: seed 7, analyzed;
SQLite, or PostgreSQL with ``--pg``) at the real clock; a fixed mix of realistic searches
(filters, every sort, days and hours, a later date window, second pages) runs once to warm
up, then ``rounds`` times measured, the sizes taking turns call by call. Reported: p50 and
p95 per size over all calls, the 100k/1k ratios (target: at most 1.5), and p50 and result
count per query in the JSON file. Measured in-process (no MCP); ``bench_mcp`` measures the
server's CPU per call.

Options (``-o KEY VALUE``): ``sizes`` (default ``1000,100000``; ``--quick``: ``200,5000``),
``rounds`` (default 7).
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

from agent_server.booking.search.query import SearchQuery
from agent_server.booking.search.specialists import search_specialists
from agent_server.kernel.store import Database, make_engine
from bench import Context, Ratio, percentile

NOW = datetime.now(UTC)
LATER = (NOW + timedelta(days=14)).date()

QUERIES: dict[str, dict[str, Any]] = {
    "default": {},
    "skill": {"skills": ["python"]},
    "skill+price": {"skills": ["tax-planning"], "sort": "price"},
    "text+language": {"q": "immigration", "languages": ["en"]},
    "next_available": {"sort": "next_available", "timezone": "America/New_York"},
    "city": {"city": "Berlin"},
    "country+max_price": {"country": "US", "price_max": 150_000_000, "sort": "price"},
    "language+duration desc": {
        "languages": ["es"],
        "duration": 60,
        "sort": "price",
        "order": "desc",
    },
    "weekend": {"days_of_week": ["sat", "sun"], "timezone": "Europe/London"},
    "evening hours+skill": {
        "hours_from": "18:00",
        "hours_to": "22:00",
        "timezone": "Asia/Tokyo",
        "skills": ["career-coaching"],
    },
    "later window+skill": {
        "date_from": LATER.isoformat(),
        "date_to": (LATER + timedelta(days=6)).isoformat(),
        "skills": ["ux-design"],
        "sort": "next_available",
    },
    "price range USDC+text": {
        "price_min": 50_000_000,
        "price_max": 200_000_000,
        "currency": "USDC",
        "q": "startup",
    },
}
SECOND_PAGES = ("default", "next_available", "skill+price")


async def _search(db: Database, raw: dict[str, Any]) -> tuple[float, str | None, int]:
    started = time.perf_counter()
    async with db.uow() as uow:
        page = await search_specialists(uow, SearchQuery.parse(raw), now=db.clock.now())
        await uow.commit()
    return time.perf_counter() - started, page.next_cursor, len(page.items)


async def _prepare(url: str, size: int) -> tuple[Database, float, dict[str, dict[str, Any]]]:
    """Warm up on the catalogue; the cases to measure (with second pages)."""
    db = Database(make_engine(url))
    load_s = 0.0  # the catalogue is built once (Context.catalogue) and copied
    cases = dict(QUERIES)
    for name in SECOND_PAGES:
        _, cursor, _ = await _search(db, QUERIES[name])
        if cursor:
            cases[f"{name} page 2"] = {**QUERIES[name], "cursor": cursor}
    for raw in cases.values():
        await _search(db, raw)
    return db, load_s, cases


async def run(ctx: Context) -> list[dict[str, Any]]:
    default = "200,5000" if ctx.quick else "1000,100000"
    sizes = [int(s) for s in ctx.options.get("sizes", default).split(",")]
    rounds = int(ctx.options.get("rounds", "7"))
    async with AsyncExitStack() as stack:
        prepared = []
        for size in sizes:
            url = await stack.enter_async_context(ctx.catalogue(size))
            db, load_s, cases = await _prepare(url, size)
            stack.push_async_callback(db.dispose)
            prepared.append((size, db, load_s, cases))
        # Sizes take turns call by call, so load from elsewhere on the machine weighs on
        # every size alike and the ratio stays fair.
        samples: dict[int, dict[str, list[float]]] = {
            size: {name: [] for name in cases} for size, _, _, cases in prepared
        }
        items: dict[int, dict[str, int]] = {size: {} for size in sizes}
        names = list(dict.fromkeys(n for _, _, _, cases in prepared for n in cases))
        for _ in range(rounds):
            for name in names:
                for size, db, _, cases in prepared:
                    if name not in cases:
                        continue
                    elapsed, _, count = await _search(db, cases[name])
                    samples[size][name].append(elapsed * 1000)
                    items[size][name] = count
    rows: list[dict[str, Any]] = []
    overall: dict[int, tuple[float, float]] = {}
    for size, _, load_s, _ in prepared:
        every = [v for values in samples[size].values() for v in values]
        overall[size] = (percentile(every, 50), percentile(every, 95))
        rows.append(
            {
                "case": f"{size} specialists",
                "calls": len(every),
                "p50_ms": overall[size][0],
                "p95_ms": overall[size][1],
                "load_s": load_s,
                "per_query_p50_ms": {n: percentile(v, 50) for n, v in samples[size].items()},
                "per_query_items": items[size],
            }
        )
    if len(sizes) >= 2:
        base, big = sizes[0], sizes[-1]
        rows.append(
            {
                "case": f"ratio {big}/{base} (target <= 1.5)",
                "p50_ms": overall[big][0] / overall[base][0],
                "p95_ms": overall[big][1] / overall[base][1],
            }
        )
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[Ratio]:
    """p50 and p95 at the largest size against the smallest (the baseline), target <= 1.5."""
    sized = [r for r in rows if "load_s" in r]
    if len(sized) < 2:
        return []
    base, big = sized[0], sized[-1]
    return [
        Ratio(
            benchmark="search",
            backend=str(big["backend"]),
            case=f"search {str(big['case']).split()[0]} specialists",
            mode=quantile,
            value=float(big[f"{quantile}_ms"]),
            baseline_value=float(base[f"{quantile}_ms"]),
            unit="ms",
            baseline=f"{str(base['case']).split()[0]} specialists",
            target="<= 1.5",
        )
        for quantile in ("p50", "p95")
    ]
