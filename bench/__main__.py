"""Run the benchmarks: ``.venv/bin/python -m bench [--sqlite | --pg] [--only NAME] [--quick]``.

``make bench`` runs every benchmark on SQLite and on PostgreSQL (when one answers at
``AGENT_SERVER_BENCH_PG_URL``, default the local server; ``--sqlite`` or ``--pg`` picks one),
prints ONE table of ratios against the baselines measured in the same run, each with its
target and the spread of its rounds, and writes every result as one JSON file,
``bench/results/bench-<UTC time>.json`` (git-ignored): the ratios, and every benchmark's raw
rows. The table (with each benchmark's ``notes``, e.g. the worst query) and the JSON go to
``artifacts/bench.txt`` and ``artifacts/bench.json`` too (and a copy named by the time).

Every module ``bench/bench_<name>.py`` is a benchmark. It exposes::

    async def run(ctx: bench.Context) -> list[dict[str, object]]
    def ratios(rows: list[dict[str, object]]) -> list[bench.Ratio]
    def notes(rows: list[dict[str, object]]) -> list[str]    # optional

``run`` measures (a ``run()`` without parameters is called with its own defaults; rows may
also be dataclasses or pydantic models) and returns one row per measured case;
``ratios`` turns its rows (with ``backend`` added) into the table's lines: what was
measured, the baseline it is compared with, their ratio and the target. ``ctx`` carries the
backend, helpers to create scratch databases, and ``quick`` (smaller sizes, for a smoke run).
Benchmarks report ratios against a baseline measured in the same run, never absolute
thresholds, and are not part of the test suite.
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
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

import bench
from bench import Context, Ratio

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
COLUMNS = (
    "benchmark",
    "backend",
    "case",
    "mode",
    "measured",
    "baseline",
    "ratio",
    "rounds",
    "target",
    "",
)


def _modules(only: list[str]) -> list[str]:
    names = sorted(
        m.name
        for m in pkgutil.iter_modules(bench.__path__)
        if m.name.startswith("bench_") and not m.ispkg
    )
    if only:
        names = [n for n in names if n.removeprefix("bench_") in only or n in only]
    return names


def _table(ratios: list[Ratio]) -> str:
    """The ratio table: one line per comparison."""
    if not ratios:
        return "(no results)"
    cells = [r.cells() for r in ratios]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    right = {"measured", "baseline", "ratio", "rounds"}

    def line(values: tuple[str, ...] | list[str]) -> str:
        return "  ".join(
            v.rjust(w) if c in right else v.ljust(w)
            for c, v, w in zip(COLUMNS, values, widths, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths).rstrip()
    return "\n".join([line(COLUMNS), rule, *(line(row) for row in cells)])


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
        for name in dir(type(row)):  # computed properties (a ratio) belong in the JSON too
            if isinstance(getattr(type(row), name, None), property) and not name.startswith("_"):
                value = getattr(row, name)
                if isinstance(value, int | float | str | bool):
                    data.setdefault(name, value)
        return data
    if hasattr(row, "model_dump"):
        return dict(row.model_dump())
    return {"result": str(row)}


async def _postgres_answers(url: str) -> str | None:
    """None when PostgreSQL answers at ``url``; else why not."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return repr(exc)
    finally:
        await engine.dispose()


async def _backends(args: argparse.Namespace) -> list[str | None]:
    """The PostgreSQL admin URL for each backend to run (None: SQLite)."""
    pg_url = os.environ.get("AGENT_SERVER_BENCH_PG_URL") or DEFAULT_PG_URL
    if args.sqlite:
        return [None]
    if args.pg:
        return [pg_url]
    why = await _postgres_answers(pg_url)
    if why is not None:
        print(f"PostgreSQL skipped (not answering at {pg_url}: {why})", file=sys.stderr)
        return [None]
    return [None, pg_url]


async def _main(args: argparse.Namespace) -> int:
    options = dict(args.option or [])
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    rows: list[dict[str, Any]] = []
    ratios: list[Ratio] = []
    notes: list[str] = []
    failed = False
    for pg_url in await _backends(args):
        ctx = Context(pg_admin_url=pg_url, quick=args.quick, options=options)
        ctx.results_dir.mkdir(parents=True, exist_ok=True)
        for name in _modules(args.only):
            module = importlib.import_module(f"bench.{name}")
            label = name.removeprefix("bench_")
            print(f"== {label} ({ctx.backend})", file=sys.stderr, flush=True)
            started = time.perf_counter()
            try:
                measured = [
                    {"benchmark": label, **_as_row(row), "backend": ctx.backend}
                    for row in await _run(module.run, ctx)
                ]
                ratios += module.ratios(measured)
                if hasattr(module, "notes"):
                    notes += module.notes(measured)
            except Exception as exc:  # one broken benchmark must not hide the others
                traceback.print_exc()
                failed = True
                measured = [{"benchmark": label, "backend": ctx.backend, "error": repr(exc)}]
                ratios.append(Ratio(label, ctx.backend, "FAILED", repr(exc)[:80]))
            elapsed = time.perf_counter() - started
            print(f"   done in {elapsed:.1f}s", file=sys.stderr, flush=True)
            rows += measured
    out = bench.RESULTS_DIR / f"bench-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "started": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "quick": args.quick,
        "options": options,
        "ratios": [r.to_dict() for r in ratios],
        "rows": rows,
    }
    out.write_text(json.dumps(document, indent=2, default=str))
    report = "\n".join([_table(ratios), "", *notes]).rstrip() + "\n"
    print(report, end="")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for name in (f"bench-{stamp}", "bench"):
        (ARTIFACTS / f"{name}.txt").write_text(report)
        (ARTIFACTS / f"{name}.json").write_text(json.dumps(document, indent=2, default=str))
    print(f"\nall results: {out}; the table: {ARTIFACTS / 'bench.txt'}", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--pg", action="store_true", help="only PostgreSQL")
    which.add_argument("--sqlite", action="store_true", help="only SQLite")
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
