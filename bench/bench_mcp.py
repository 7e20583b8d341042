"""MCP calls per second: our server against a bare echo MCPServer, same transport and process
model (a uvicorn process serving streamable HTTP, stateless), driven by the SDK's client.

Cases: echo (baseline), search-specialists over 10,000 demo specialists, view-profile and
book-slot (each booking a different free slot), sequentially (one client) and with 16
concurrent clients. Reported: calls per second and the ratio to echo in the same mode; each
case is measured in ``ROUNDS`` rounds, each taking turns with an echo measurement, and the round
with the median ratio is reported (every round is kept in the rows).
Targets: view-profile ≥ 0.5x echo, search-specialists ≥ 0.3x echo.

search-specialists cycles through four common queries, as agents repeat searches; their
answers are cached while the catalogue is unchanged (``agent_server.booking.cache``). The
``search-specialists (distinct)`` case sends a query no call has sent before each time, so
every answer is computed: it shows the cost of a search itself (no target).

Two more cases show the ceiling for answers of our shape: ``search-specialists (ceiling)``
and ``view-profile (ceiling)`` call a bare MCPServer (``bench.canned_server``, served like the
echo baseline) that returns answers recorded from our server, with our output schemas, and
does nothing else. The SDK's client validates every structured result against its schema and
both sides serialise it, so these ratios bound what any server could reach with such answers.

Every row also holds the CPU time the server process spent per call (``server_cpu_ms_per_call``,
and echo's beside it; read from ``/proc``, absent elsewhere). In a sequential round the client
and the server take turns, so calls per second mix the server's cost with the client's; the
CPU time is the server's own share, the part a server can change. ``client_cpu_ms_per_call``
(and echo's) is the clients' share: all clients run in this process, so at 16 clients a case
whose answers cost a client much more than echo's is bound by this process, whatever the
server does (the ceiling cases show where).

Options (``-o KEY VALUE``): ``specialists`` (default 10000; ``--quick``: 1000), ``calls``
(calls per measurement, default 400; ``--quick``: 96).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select, text

from agent_server.accounts.keys import new_api_key, shown_prefix
from agent_server.accounts.models import Agent, AgentStatus
from agent_server.accounts.service import hash_api_key
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import Schedule
from agent_server.booking.schedules import get_availability
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from bench import Context, Ratio
from billing.wallet_funds import adjust_balance
from wallets.addresses import deposit_address_for

CONCURRENCY = 16
ROUNDS = 5
"""Rounds per case and mode (odd: the median round is one of them); each pairs an echo
measurement with the case's."""
BLOCKS = 8
"""Blocks per side in a round, at most, the sides taking turns (``_measure_pair``)."""
MIN_BLOCK = 6
"""Calls per client in a block, at least."""
TARGETS = {"view-profile": ">= 0.5", "search-specialists": ">= 0.3"}
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until the process accepts connections on ``port`` (bounded)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server on port {port} did not start")
        await asyncio.sleep(0.2)


async def _prepare(url: str, specialists: int, slots_wanted: int) -> tuple[str, list[str], int]:
    """Demo data, a funded active agent; its key, free slot ids to book, a specialist id."""
    db = Database(make_engine(url))
    settings = Settings(database_url=url)
    try:
        await load_demo_data(db, specialists, seed=7)
        # Steady state of a live catalogue, as bench_search measures it: statistics gathered
        # (autovacuum's work on PostgreSQL), so the planner knows the tables' sizes.
        async with db.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("ANALYZE" if db.is_sqlite else "VACUUM ANALYZE"))
        key = new_api_key()
        async with db.uow() as uow:
            now = uow.clock.now()
            agent = Agent(
                name="bench",
                email=f"bench-{secrets.token_hex(4)}@example.com",
                email_verified=True,
                status=AgentStatus.ACTIVE.value,
                api_key_hash=hash_api_key(settings, key),
                api_key_prefix=shown_prefix(key),
                currency="USDC",
                profile={},
                created_at=now,
                updated_at=now,
            )
            uow.session.add(agent)
            await uow.flush()
            await deposit_address_for(uow, agent.id, "USDC")
            await adjust_balance(
                uow, agent_id=agent.id, currency="USDC", amount=10**15, reason="benchmark"
            )
            await uow.commit()
        slots: list[str] = []
        async with db.uow() as uow:
            ids = (
                await uow.session.scalars(
                    select(Schedule.id)
                    .where(Schedule.private.is_(False), Schedule.specialist_id.is_not(None))
                    .order_by(Schedule.id)
                    .limit(400)
                )
            ).all()
            # Past the longest notice a demo schedule asks (a day) with a day to spare: a
            # slot must still be bookable when the run reaches it, many minutes later.
            start = uow.clock.now() + timedelta(days=2)
            for sid in ids:
                free = await get_availability(uow, sid, start, start + timedelta(days=60))
                slots.extend(s.slot_id for s in free for _ in range(s.seats_left))
                if len(slots) >= slots_wanted:
                    break
            specialist = await uow.session.scalar(
                select(Schedule.specialist_id).where(Schedule.id == ids[0])
            )
        return key, slots, int(specialist or 1)
    finally:
        await db.dispose()


Call = Callable[[Client, int], Awaitable[None]]


def _cpu_seconds(pid: int) -> float | None:
    """CPU time (user and system) the process has used so far; None without ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class _Side:
    """One server's clients in a paired measurement, and what they have measured so far."""

    url: str
    headers: dict[str, str]
    call: Call
    pid: int
    clients: list[Client] = field(default_factory=list)
    calls: int = 0
    seconds: float = 0.0
    cpu: float | None = 0.0
    client_cpu: float = 0.0  # this process's CPU time while the side's clients ran


async def _connect(stack: AsyncExitStack, side: _Side, clients: int) -> None:
    """Connect ``clients`` clients to ``side`` and warm each up with two calls."""
    for c in range(clients):
        http = httpx2.AsyncClient(headers=side.headers, timeout=60)
        client = Client(streamable_http_client(side.url, http_client=http))
        side.clients.append(await stack.enter_async_context(client))
        for w in range(2):
            await side.call(side.clients[-1], 10**6 + c * 10 + w)


async def _block(side: _Side, per_client: int, offset: int) -> None:
    """``per_client`` calls on each of ``side``'s clients at once, added to its totals."""

    async def worker(client: Client, start: int) -> None:
        for i in range(per_client):
            await side.call(client, start + i)

    cpu_before = _cpu_seconds(side.pid)
    client_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(worker(cl, offset + c * per_client) for c, cl in enumerate(side.clients))
    )
    side.seconds += time.perf_counter() - started
    side.client_cpu += time.process_time() - client_before
    side.calls += per_client * len(side.clients)
    cpu_after = _cpu_seconds(side.pid)
    if side.cpu is None or cpu_before is None or cpu_after is None:
        side.cpu = None
    else:
        side.cpu += cpu_after - cpu_before


@dataclass(frozen=True)
class _Measured:
    """One side of a round: calls per second, and CPU milliseconds per call of its server
    process and of the clients (this process)."""

    rate: float
    server_cpu: float | None
    client_cpu: float


def _rate(side: _Side) -> _Measured:
    cpu = None if side.cpu is None else round(side.cpu * 1000 / side.calls, 3)
    return _Measured(side.calls / side.seconds, cpu, round(side.client_cpu * 1000 / side.calls, 3))


async def _measure_pair(
    base: _Side, case: _Side, calls: int, clients: int
) -> tuple[_Measured, _Measured]:
    """Calls per second of ``calls`` calls to each side, spread over ``clients`` concurrent
    clients per side (each connected and warmed up before the clock starts), and the CPU
    time each server process spent per call meanwhile, in milliseconds.

    The two sides take turns in up to ``BLOCKS`` blocks, in the order ABBA ABBA...: the machine's
    speed drifts, sometimes by tens of percent within a minute, and this way both sides see
    the same drift (a linear one cancels out exactly)."""
    # Blocks of at least MIN_BLOCK calls per client: as a block ends, its last calls run
    # with fewer clients at once.
    blocks = max(2, min(BLOCKS, calls // (clients * MIN_BLOCK)))
    per_client = max(1, calls // (clients * blocks))
    async with AsyncExitStack() as stack:
        await _connect(stack, base, clients)
        await _connect(stack, case, clients)
        for b in range(blocks):
            first, second = (base, case) if b % 2 == 0 else (case, base)
            for side in (first, second):
                await _block(side, per_client, b * clients * per_client)
    return _rate(base), _rate(case)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error at the bottom of nested exception groups."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _ok(result: Any) -> None:
    if result.is_error:
        raise RuntimeError(result.content[0].text)


SEARCHES: list[dict[str, Any]] = [
    {},
    {"skills": ["python"]},
    {"sort": "price", "languages": ["en"]},
    {"sort": "next_available"},
]
"""search-specialists cycles through these common queries."""


async def _record(url: str, headers: dict[str, str], specialist: int, path: Path) -> None:
    """Our answers to the searches and to one view-profile, with the tools' output schemas,
    written for ``bench.canned_server``."""
    async with Client(
        streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers, timeout=60))
    ) as client:
        schemas = {t.name: t.output_schema for t in (await client.list_tools()).tools}
        calls = {
            "search-specialists": SEARCHES,
            "view-profile": [{"specialist_id": specialist}],
        }
        recorded: dict[str, Any] = {}
        for tool, arguments in calls.items():
            answers = []
            for args in arguments:
                result = await client.call_tool(tool, args)
                _ok(result)
                answers.append(result.structured_content)
            recorded[tool] = {"output_schema": schemas[tool], "answers": answers}
    path.write_text(json.dumps(recorded))


async def run(ctx: Context) -> list[dict[str, Any]]:
    specialists = int(ctx.options.get("specialists", 1000 if ctx.quick else 10_000))
    calls = int(ctx.options.get("calls", 96 if ctx.quick else 400))
    rows: list[dict[str, Any]] = []
    async with ctx.scratch_database("mcp") as url:
        wanted = 2 * ROUNDS * (calls + 2 * CONCURRENCY) + 8  # every book-slot call books one
        key, slots, specialist = await _prepare(url, specialists, wanted)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
        big = str(10**9)
        env.update(
            AGENT_SERVER_DATABASE_URL=url,
            AGENT_SERVER_START_WATCHERS="false",
            AGENT_SERVER_START_WORKER="false",
            AGENT_SERVER_LOG_LEVEL="WARNING",
            AGENT_SERVER_LOG_FORMAT="json",
            AGENT_SERVER_RATE_LIMIT_DEFAULT=big,
            AGENT_SERVER_RATE_LIMITS=f'{{"search-specialists": {big}, "book-slot": {big}}}',
        )
        ours_port, echo_port, canned_port = _free_port(), _free_port(), _free_port()
        logs = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
        ours = subprocess.Popen(
            [str(BIN / "agent-server"), "serve", "--port", str(ours_port)],
            env=env,
            stdout=(logs / "ours.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        echo = subprocess.Popen(
            [sys.executable, "-m", "bench.echo_server", str(echo_port)],
            stdout=(logs / "echo.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        canned: subprocess.Popen[bytes] | None = None
        try:
            await _wait_ready(ours_port, ours)
            await _wait_ready(echo_port, echo)
            ours_url = f"http://127.0.0.1:{ours_port}/mcp"
            echo_url = f"http://127.0.0.1:{echo_port}/mcp"
            canned_url = f"http://127.0.0.1:{canned_port}/mcp"
            auth = {"Authorization": f"Bearer {key}"}
            await _record(ours_url, auth, specialist, logs / "answers.json")
            canned = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.canned_server",
                    str(canned_port),
                    str(logs / "answers.json"),
                ],
                stdout=(logs / "canned.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            await _wait_ready(canned_port, canned)
            slot_iter = iter(slots)

            async def echo_call(client: Client, i: int) -> None:
                _ok(await client.call_tool("echo", {"text": f"hello {i}"}))

            async def search_call(client: Client, i: int) -> None:
                _ok(await client.call_tool("search-specialists", SEARCHES[i % len(SEARCHES)]))

            fresh = itertools.count()

            async def distinct_search_call(client: Client, i: int) -> None:
                # A price ceiling never asked before: the answer cannot come from the cache.
                n = next(fresh)
                query = {"price_max": 10**9 - n, "sort": ("rating", "price")[n % 2]}
                _ok(await client.call_tool("search-specialists", query))

            async def view_call(client: Client, i: int) -> None:
                _ok(await client.call_tool("view-profile", {"specialist_id": specialist}))

            async def canned_search_call(client: Client, i: int) -> None:
                _ok(await client.call_tool("search-specialists", {"n": i}))

            async def canned_view_call(client: Client, i: int) -> None:
                _ok(await client.call_tool("view-profile", {"n": i}))

            async def book_call(client: Client, i: int) -> None:
                slot = next(slot_iter)
                result = await client.call_tool(
                    "book-slot", {"slot_id": slot, "idempotency_key": f"bench-{i}-{slot}"}
                )
                _ok(result)

            cases: list[tuple[str, str, dict[str, str], Call, int]] = [
                ("search-specialists", ours_url, auth, search_call, ours.pid),
                (
                    "search-specialists (ceiling)",
                    canned_url,
                    {},
                    canned_search_call,
                    canned.pid,
                ),
                ("search-specialists (distinct)", ours_url, auth, distinct_search_call, ours.pid),
                ("view-profile", ours_url, auth, view_call, ours.pid),
                ("view-profile (ceiling)", canned_url, {}, canned_view_call, canned.pid),
                ("book-slot", ours_url, auth, book_call, ours.pid),
            ]
            for mode, clients in (("sequential", 1), ("concurrent-16", CONCURRENCY)):
                for name, url_, headers, call, pid in cases:
                    # Each round measures echo and the case in alternating blocks: the
                    # machine's speed drifts over a run, and a baseline taken minutes earlier
                    # would carry that drift into the ratio.
                    pairs = []
                    for _round in range(ROUNDS):
                        try:
                            pairs.append(
                                await _measure_pair(
                                    _Side(echo_url, {}, echo_call, echo.pid),
                                    _Side(url_, headers, call, pid),
                                    calls,
                                    clients,
                                )
                            )
                        except BaseExceptionGroup as group:  # the client's task groups
                            raise RuntimeError(f"{name}, {mode}: {_first(group)!r}") from group
                    # The median round by ratio: the machine's speed moves both rates of a
                    # round together, so a round's ratio is steadier than either of its rates.
                    median = sorted(pairs, key=lambda p: p[1].rate / p[0].rate)[ROUNDS // 2]
                    echo_side, ours_side = median
                    echo_rate, rate = echo_side.rate, ours_side.rate
                    rows.append(
                        {
                            "case": name,
                            "mode": mode,
                            "specialists": specialists,
                            "calls_per_s": round(rate, 1),
                            "echo_calls_per_s": round(echo_rate, 1),
                            "ratio_to_echo": round(rate / echo_rate, 3),
                            # The server's own share of a call: its process's CPU time per
                            # call (the client, the same for every server, is not counted).
                            "server_cpu_ms_per_call": ours_side.server_cpu,
                            "echo_server_cpu_ms_per_call": echo_side.server_cpu,
                            # The clients' share (all in this process): what checking and
                            # decoding this server's answers costs a client, next to echo's.
                            "client_cpu_ms_per_call": ours_side.client_cpu,
                            "echo_client_cpu_ms_per_call": echo_side.client_cpu,
                            "rounds": [
                                {
                                    "echo": round(b.rate, 1),
                                    "case": round(r.rate, 1),
                                    "echo_server_cpu_ms": b.server_cpu,
                                    "case_server_cpu_ms": r.server_cpu,
                                    "echo_client_cpu_ms": b.client_cpu,
                                    "case_client_cpu_ms": r.client_cpu,
                                }
                                for b, r in pairs
                            ],
                        }
                    )
        finally:
            for proc in (ours, echo, canned):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[Ratio]:
    """Each tool's calls per second against the bare echo MCPServer in the same mode."""
    return [
        Ratio(
            benchmark="mcp",
            backend=str(row["backend"]),
            case=str(row["case"]),
            mode=str(row["mode"]),
            value=float(row["calls_per_s"]),
            baseline_value=float(row["echo_calls_per_s"]),
            unit="calls/s",
            baseline="echo MCPServer",
            target=TARGETS.get(str(row["case"]), ""),
        )
        for row in rows
    ]
