"""Run the benchmarks: ``.venv/bin/python -m bench [--pg] [--only NAME] [--quick]``.

Every module ``bench/bench_<name>.py`` is a benchmark. It exposes::

    async def run(ctx: bench.Context) -> list[dict[str, object]]

(a ``run()`` without parameters is called with its own defaults, and rows may also be
dataclasses or pydantic models) and returns rows (one per measured case, e.g.
``{"case": "100k", "p50_ms": 12.3}``); this runner adds the benchmark name, prints every row
in one table, and writes them as JSON to
``bench/results/<name>-<backend>-<UTC time>.json`` (git-ignored). ``ctx`` carries the backend
(SQLite in a scratch directory by default; PostgreSQL with ``--pg`` or when
``AGENT_SERVER_BENCH_PG_URL`` is set), helpers to create scratch databases, and ``quick``
(smaller sizes, for a smoke run). The table shows scalar values; lists and mappings are in the
JSON file only. Benchmarks report ratios against a baseline measured in the
same run, never absolute thresholds, and are not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import inspect
import json
import os
import pkgutil
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

import bench
from bench import Context

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _modules(only: list[str]) -> list[str]:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name.startswith("bench_") and not m.ispkg
    )
    if only:
        names = [n for n in names if n.removeprefix("bench_") in only or n in only]
    return names


def _table(rows: list[dict[str, Any]]) -> str:
    """Scalar columns only; lists and mappings stay in the JSON file."""
    if not rows:
        return "(no results)"
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in columns and not isinstance(value, dict | list):
                columns.append(key)
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


async def _run(run: Any, ctx: Context) -> list[Any]:
    """``run(ctx)``; a ``run()`` without parameters is called bare (its own defaults)."""
    params = list(inspect.signature(run).parameters.values())
    wants_ctx = bool(params) and (params[0].name == "ctx" or params[0].default is params[0].empty)
    result = run(ctx) if wants_ctx else run()
    if inspect.isawaitable(result):
        result = await result
    return list(result)


def _as_row(row: Any) -> dict[str, Any]:
    """A result row as a mapping: dicts as they are, dataclasses and models by field."""
    if isinstance(row, dict):
        return row
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        data = dataclasses.asdict(row)
        for name in dir(type(row)):  # computed properties (a ratio) belong in the table too
            if isinstance(getattr(type(row), name, None), property) and not name.startswith("_"):
                value = getattr(row, name)
                if isinstance(value, int | float | str | bool):
                    data.setdefault(name, value)
        return data
    if hasattr(row, "model_dump"):
        return dict(row.model_dump())
    return {"result": str(row)}


async def _main(args: argparse.Namespace) -> int:
    pg_url = os.environ.get("AGENT_SERVER_BENCH_PG_URL") or (DEFAULT_PG_URL if args.pg else None)
    ctx = Context(pg_admin_url=pg_url, quick=args.quick, options=dict(args.option or []))
    ctx.results_dir.mkdir(parents=True, exist_ok=True)
    all_rows: list[dict[str, Any]] = []
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in _modules(args.only):
        module = importlib.import_module(f"bench.{name}")
        label = name.removeprefix("bench_")
        print(f"== {label} ({ctx.backend})", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            rows = [{"benchmark": label, **_as_row(row)} for row in await _run(module.run, ctx)]
        except Exception as exc:  # one broken benchmark must not hide the others
            traceback.print_exc()
            rows = [{"benchmark": label, "error": repr(exc)}]
        print(f"   done in {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
        out = ctx.results_dir / f"{label}-{ctx.backend}-{stamp}.json"
        out.write_text(json.dumps({"backend": ctx.backend, "rows": rows}, indent=2, default=str))
        all_rows.extend(rows)
    print(_table(all_rows))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--pg", action="store_true", help="run on PostgreSQL")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--only", nargs="*", default=[], help="benchmark names to run")
    parser.add_argument(
        "-o",
        "--option",
        nargs=2,
        action="append",
        metavar=("KEY", "VALUE"),
        help="an option for the benchmarks (e.g. -o sizes 1000,100000)",
    )
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
