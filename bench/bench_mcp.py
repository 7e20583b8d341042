"""Server CPU per call: our server against a bare echo MCPServer in the same run.

The client, the server and PostgreSQL share the machine's cores, so calls per second measure
the machine as much as the server. The gate is **the server's own CPU time per call**: its
process (every thread, from ``/proc/PID/task/*/schedstat``, in nanoseconds) plus, on
PostgreSQL, the database backends serving it (``pg_stat_activity`` of its database), as a
ratio to the CPU time a bare echo MCPServer (``bench.echo_server``, same transport and process
model: uvicorn, streamable HTTP, stateless) spends per call in the same round. Calls per
second and the clients' CPU stay in the JSON rows, not in the targets.

Cases, each against echo, on a demo catalogue of 100,000 specialists (``Context.catalogue``:
built once per day and demo-data version, copied for each run):

- ``tools/list``, ``view-profile``, ``book-slot`` (each call books a different free slot);
- ``search repeated``: four common queries in turn (answers cached while the catalogue is
  unchanged);
- ``search never sent``: every call a query no call has sent before, drawn from what agents
  send (``never_sent``: any combination of time zones, days, hours, date windows, price bounds
  and currency, sorts and orders, lengths, skills common and rare, languages, place, text and
  min_rating), on 100,000 specialists and, on a second server, on 1,000; besides the mean, the
  p50 and p95 of the per-call CPU and the worst query;
- memory: the resident set of our 100,000-specialist server after ``memory_searches`` distinct
  searches (10,000), against an idle echo process's.

Every call is sequential (one client), so each call's server CPU is measured on its own. A
case runs in ``rounds`` rounds; each alternates blocks of echo and of the case (ABBA: a drift
of the machine's speed weighs on both alike); the table gives the median round's ratio and
the spread (lowest-highest) of the rounds.

Options (``-o KEY VALUE``): ``specialists`` (100000; ``--quick``: 2000), ``small`` (1000;
``--quick``: 200), ``calls`` per side and round (200; ``--quick``: 40), ``rounds`` (5;
``--quick``: 3), ``memory_searches`` (10000; ``--quick``: 300), ``cases`` (every case; a
comma-separated choice of the case names above and ``memory``, to measure a few).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agent_server.accounts.keys import new_api_key, shown_prefix
from agent_server.accounts.models import Agent, AgentStatus
from agent_server.accounts.service import hash_api_key
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.schedules import get_availability
from agent_server.booking.search.query import SearchQuery
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from bench import Context, Ratio
from billing.wallet_funds import adjust_balance
from wallets.addresses import deposit_address_for

BLOCKS = 4
"""Blocks per side in a round, the sides taking turns (``_measure_pair``)."""
BIN = Path(sys.executable).parent
MEMORY_CLIENTS = 4
"""Clients sending the memory phase's searches at once."""


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


@dataclass
class Vocabulary:
    """Values of the catalogue the never-sent queries draw from."""

    skills: list[str]
    rare_skills: list[str]
    languages: list[str]
    cities: list[str]
    countries: list[str]
    words: list[str]


async def _prepare(url: str, slots_wanted: int) -> tuple[str, list[str], int, Vocabulary]:
    """A funded active agent on the catalogue at ``url``: its key, free slot ids to book, a
    specialist id to view, and the catalogue's vocabulary."""
    db = Database(make_engine(url))
    settings = Settings(database_url=url)
    try:
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
                    .limit(2000)
                )
            ).all()
            # Past the longest notice a demo schedule asks (a day) with a day to spare: a
            # slot must still be bookable when the run reaches it, many minutes later.
            start = uow.clock.now() + timedelta(days=2)
            for sid in ids:
                if len(slots) >= slots_wanted:
                    break
                free = await get_availability(uow, sid, start, start + timedelta(days=60))
                slots.extend(s.slot_id for s in free for _ in range(s.seats_left))
            specialist = await uow.session.scalar(
                select(Schedule.specialist_id).where(Schedule.id == ids[0])
            )
            people = (
                await uow.session.execute(
                    select(
                        Specialist.skills,
                        Specialist.languages,
                        Specialist.city,
                        Specialist.country,
                        Specialist.title,
                    )
                    .order_by(Specialist.id)
                    .limit(3000)
                )
            ).all()
        counts: dict[str, int] = {}
        for skills, *_ in people:
            for skill in skills:
                counts[skill] = counts.get(skill, 0) + 1
        ranked = sorted(counts, key=lambda k: (-counts[k], k))
        vocabulary = Vocabulary(
            skills=ranked[:40],
            rare_skills=ranked[-40:],
            languages=sorted({lang for _, langs, *_ in people for lang in langs}),
            cities=sorted({p[2] for p in people})[:60],
            countries=sorted({p[3] for p in people}),
            words=sorted({w.lower() for p in people for w in p[4].split() if len(w) > 3})[:200],
        )
        return key, slots, int(specialist or 1), vocabulary
    finally:
        await db.dispose()


ZONES = (
    "UTC",
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Pacific/Auckland",
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def never_sent(n: int, vocabulary: Vocabulary) -> dict[str, Any]:
    """Query ``n`` of the never-sent mix: any combination of the filters agents send, drawn
    at random (seeded by ``n``); ``price_max`` falls by one micro-unit per ``n``, so no two
    queries are alike and no answer can come from a cache."""
    rng = random.Random(n)
    today = datetime.now(UTC).date()
    query: dict[str, Any] = {}
    if rng.random() < 0.6:
        query["timezone"] = rng.choice(ZONES)
    if rng.random() < 0.3:
        query["days_of_week"] = rng.sample(DAYS, rng.randint(1, 3))
    if rng.random() < 0.3:
        lo = rng.randrange(0, 24 * 60, 30)
        hi = (lo + rng.choice((60, 120, 240, 480))) % (24 * 60)
        query["hours_from"] = f"{lo // 60:02}:{lo % 60:02}"
        query["hours_to"] = f"{hi // 60:02}:{hi % 60:02}"
    if rng.random() < 0.3:
        first = today + timedelta(days=rng.choice((1, 3, 7, 14, 30, 60, 120)))
        query["date_from"] = first.isoformat()
        if rng.random() < 0.7:
            query["date_to"] = (first + timedelta(days=rng.choice((0, 2, 6, 13, 30)))).isoformat()
    currency = rng.choice(("USD", "USDC", "USDT"))
    if currency != "USD":
        query["currency"] = currency
    ceiling = 10**10
    if rng.random() < 0.35:
        ceiling = rng.choice((40, 60, 100, 150, 300)) * 1_000_000
    if rng.random() < 0.25:
        query["price_min"] = rng.choice((20, 50, 80, 120)) * 1_000_000
    query["price_max"] = max(ceiling, query.get("price_min", 0) + 1_000_000) - n
    if rng.random() < 0.1:
        query["duration"] = rng.choice((30, 45, 60, 90))
    sort = rng.choice(("rating", "price", "next_available"))
    query["sort"] = sort
    if sort != "next_available" and rng.random() < 0.3:
        query["order"] = rng.choice(("asc", "desc"))
    if rng.random() < 0.35:
        pool = vocabulary.rare_skills if rng.random() < 0.3 else vocabulary.skills
        query["skills"] = rng.sample(pool, rng.choice((1, 1, 1, 2)))
    if rng.random() < 0.3:
        query["languages"] = rng.sample(vocabulary.languages, rng.choice((1, 1, 2)))
    if rng.random() < 0.1:
        query["city"] = rng.choice(vocabulary.cities)
    elif rng.random() < 0.15:
        query["country"] = rng.choice(vocabulary.countries)
    if rng.random() < 0.2:
        query["q"] = rng.choice(vocabulary.words)
    if "min_rating" in SearchQuery.model_fields and rng.random() < 0.15:
        query["min_rating"] = rng.choice((3.5, 4.0, 4.5, 4.8))
    return query


def _task_cpu_ns(pid: int) -> int:
    """CPU time of every live thread of ``pid`` so far, in nanoseconds (0 once it is gone)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@dataclass
class _Server:
    """A server process and, on PostgreSQL, the database whose backends serve it."""

    pid: int
    dbname: str | None = None
    admin: AsyncEngine | None = None

    async def pids(self) -> list[int]:
        if self.admin is None or self.dbname is None:
            return [self.pid]
        async with self.admin.connect() as conn:
            sql = text("SELECT pid FROM pg_stat_activity WHERE datname = :name")
            backends = [int(p) for p in (await conn.execute(sql, {"name": self.dbname})).scalars()]
        return [self.pid, *backends]

    async def cpu_ns(self) -> tuple[int, list[int]]:
        pids = await self.pids()
        return sum(_task_cpu_ns(p) for p in pids), pids


Call = Callable[[Client, int], Awaitable[Any]]
"""A call of a case; what it returns (the query of a never-sent search) is kept per call."""


@dataclass
class _Side:
    """One server's client in a paired measurement, and what it has measured so far."""

    url: str
    headers: dict[str, str]
    call: Call
    server: _Server
    client: Client | None = None
    calls: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0
    per_call_ms: list[float] = field(default_factory=list)  # server CPU of each call
    sent: list[Any] = field(default_factory=list)  # what each call returned, in order


async def _connect(stack: AsyncExitStack, side: _Side) -> None:
    http = httpx2.AsyncClient(headers=side.headers, timeout=60)
    side.client = await stack.enter_async_context(
        Client(streamable_http_client(side.url, http_client=http))
    )
    for w in range(2):
        await side.call(side.client, 10**6 + w)


async def _block(side: _Side, calls: int, offset: int) -> None:
    """``calls`` sequential calls, each one's server CPU measured on its own."""
    assert side.client is not None
    pids = await side.server.pids()
    for i in range(calls):
        before = sum(_task_cpu_ns(p) for p in pids)
        client_before = time.process_time()
        started = time.perf_counter()
        side.sent.append(await side.call(side.client, offset + i))
        side.seconds += time.perf_counter() - started
        side.client_cpu += time.process_time() - client_before
        after, now_pids = await side.server.cpu_ns()
        # A backend that joined during the call counts whole (its start is the call's cost).
        side.per_call_ms.append((after - before) / 1e6)
        pids = now_pids
        side.calls += 1


@dataclass(frozen=True)
class _Measured:
    """One side of a round: calls per second, server CPU per call (mean, p50, p95, in ms) and
    the client's CPU per call."""

    rate: float
    server_cpu: float
    p50: float
    p95: float
    client_cpu: float


def _measured(side: _Side) -> _Measured:
    samples = side.per_call_ms
    q = statistics.quantiles(samples, n=20, method="inclusive") if len(samples) > 1 else samples
    return _Measured(
        rate=side.calls / side.seconds,
        server_cpu=round(statistics.fmean(samples), 4),
        p50=round(statistics.median(samples), 4),
        p95=round(q[-1], 4),
        client_cpu=round(side.client_cpu * 1000 / side.calls, 4),
    )


async def _measure_pair(base: _Side, case: _Side, calls: int) -> tuple[_Measured, _Measured]:
    """``calls`` calls to each side in ``BLOCKS`` blocks, in the order ABBA ABBA...: the
    machine's speed drifts, and this way both sides see the same drift."""
    per_block = max(1, calls // BLOCKS)
    base.per_call_ms, case.per_call_ms, base.sent, case.sent = [], [], [], []
    base.calls = case.calls = 0
    base.seconds = case.seconds = base.client_cpu = case.client_cpu = 0.0
    for b in range(BLOCKS):
        first, second = (base, case) if b % 2 == 0 else (case, base)
        for side in (first, second):
            await _block(side, per_block, b * per_block)
    return _measured(base), _measured(case)


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
"""``search repeated`` cycles through these common queries."""
TARGETS: dict[str, tuple[str, str]] = {
    "tools/list": ("<= 1.2", "<= 1.2"),
    "view-profile": ("<= 1.5", "<= 2"),
    "search repeated": ("<= 2", "<= 2"),
    "search never sent": ("<= 6", "<= 6"),
    "book-slot": ("<= 5", "<= 5"),
}
"""Targets of each case's server CPU per call against echo's: (SQLite, PostgreSQL)."""


def _serve(url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
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
    return subprocess.Popen(
        [str(BIN / "agent-server"), "serve", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def run(ctx: Context) -> list[dict[str, Any]]:
    opt = ctx.options.get
    big = int(opt("specialists", 2000 if ctx.quick else 100_000))
    small = int(opt("small", 200 if ctx.quick else 1000))
    calls = int(opt("calls", 40 if ctx.quick else 200))
    rounds = int(opt("rounds", 3 if ctx.quick else 5))
    memory_searches = int(opt("memory_searches", 300 if ctx.quick else 10_000))
    chosen = {c.strip() for c in opt("cases", "").split(",") if c.strip()}
    rows: list[dict[str, Any]] = []
    admin = create_async_engine(ctx.pg_admin_url) if ctx.pg_admin_url else None
    async with AsyncExitStack() as stack:
        if admin is not None:
            stack.push_async_callback(admin.dispose)
        url = await stack.enter_async_context(ctx.catalogue(big))
        small_url = await stack.enter_async_context(ctx.catalogue(small))
        # Every book-slot call books one: each round's calls and the warm-up calls of its client.
        per_round = BLOCKS * max(1, calls // BLOCKS) + 2
        key, slots, specialist, vocabulary = await _prepare(url, rounds * per_round + 16)
        small_key, _, _, _ = await _prepare(small_url, 0)
        logs = Path(tempfile.mkdtemp(prefix="bench-mcp-"))
        ports = [_free_port() for _ in range(3)]
        ours = _serve(url, ports[0], logs / "ours.log")
        stack.callback(_stop, ours)
        ours_small = _serve(small_url, ports[1], logs / "ours-small.log")
        stack.callback(_stop, ours_small)
        echo = subprocess.Popen(
            # Run as a script: ``-m bench.echo_server`` would load this package (SQLAlchemy,
            # our store) into the baseline too, and it would no longer be bare.
            [sys.executable, str(Path(__file__).with_name("echo_server.py")), str(ports[2])],
            stdout=(logs / "echo.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        stack.callback(_stop, echo)
        for port, proc in zip(ports, (ours, ours_small, echo), strict=True):
            await _wait_ready(port, proc)
        ours_url, small_url_, echo_url = (f"http://127.0.0.1:{p}/mcp" for p in ports)

        def dbname(u: str) -> str | None:
            return u.rpartition("/")[2] if admin is not None else None

        ours_server = _Server(ours.pid, dbname(url), admin)
        small_server = _Server(ours_small.pid, dbname(small_url), admin)
        echo_server = _Server(echo.pid)
        auth = {"Authorization": f"Bearer {key}"}
        small_auth = {"Authorization": f"Bearer {small_key}"}
        slot_iter = iter(slots)
        fresh = iter(range(10**9))
        sent_to_big = 0

        async def echo_call(client: Client, i: int) -> None:
            _ok(await client.call_tool("echo", {"text": f"hello {i}"}))

        async def list_call(client: Client, i: int) -> None:
            await client.list_tools()

        async def view_call(client: Client, i: int) -> None:
            _ok(await client.call_tool("view-profile", {"specialist_id": specialist}))

        async def repeated_call(client: Client, i: int) -> None:
            _ok(await client.call_tool("search-specialists", SEARCHES[i % len(SEARCHES)]))

        async def never_sent_call(client: Client, i: int) -> dict[str, Any]:
            nonlocal sent_to_big
            sent_to_big += 1
            query = never_sent(next(fresh), vocabulary)
            _ok(await client.call_tool("search-specialists", query))
            return query

        async def never_sent_small_call(client: Client, i: int) -> dict[str, Any]:
            query = never_sent(next(fresh), vocabulary)
            _ok(await client.call_tool("search-specialists", query))
            return query

        async def book_call(client: Client, i: int) -> None:
            slot = next(slot_iter)
            arguments = {"slot_id": slot, "idempotency_key": f"bench-{i}-{slot}"}
            _ok(await client.call_tool("book-slot", arguments))

        # An idle echo process: started and answering, a few calls served.
        async with AsyncExitStack() as warm:
            side = _Side(echo_url, {}, echo_call, echo_server)
            await _connect(warm, side)
        echo_rss = _rss_kib(echo.pid)

        cases: list[tuple[str, str, dict[str, str], Call, _Server, int]] = [
            ("tools/list", ours_url, auth, list_call, ours_server, big),
            ("view-profile", ours_url, auth, view_call, ours_server, big),
            ("search repeated", ours_url, auth, repeated_call, ours_server, big),
            ("search never sent", ours_url, auth, never_sent_call, ours_server, big),
            (
                "search never sent",
                small_url_,
                small_auth,
                never_sent_small_call,
                small_server,
                small,
            ),
            ("book-slot", ours_url, auth, book_call, ours_server, big),
        ]
        for name, url_, headers, call, server, size in cases:
            if chosen and name not in chosen:
                continue
            pairs: list[tuple[_Measured, _Measured]] = []
            samples: list[float] = []
            sent: list[Any] = []
            for _round in range(rounds):
                try:
                    async with AsyncExitStack() as conns:
                        base = _Side(echo_url, {}, echo_call, echo_server)
                        case = _Side(url_, headers, call, server)
                        await _connect(conns, base)
                        await _connect(conns, case)
                        pairs.append(await _measure_pair(base, case, calls))
                        samples += case.per_call_ms
                        sent += case.sent
                except BaseExceptionGroup as group:  # the client's task groups
                    failure = f"{name}: {_first(group)!r}"
                    break
                except Exception as exc:
                    failure = f"{name}: {exc!r}"
                    break
            else:
                failure = None
            if failure is not None:  # the other cases still count
                rows.append({"case": name, "specialists": size, "error": failure})
                continue
            by_ratio = sorted(pairs, key=lambda p: p[1].server_cpu / p[0].server_cpu)
            echo_side, ours_side = by_ratio[rounds // 2]
            worst = max(range(len(samples)), key=samples.__getitem__)
            quantiles = statistics.quantiles(samples, n=20, method="inclusive")
            rows.append(
                {
                    "case": name,
                    "specialists": size,
                    "server_cpu_ms_per_call": ours_side.server_cpu,
                    "echo_server_cpu_ms_per_call": echo_side.server_cpu,
                    "ratio_to_echo": round(ours_side.server_cpu / echo_side.server_cpu, 3),
                    "spread": [
                        round(min(r.server_cpu / e.server_cpu for e, r in pairs), 2),
                        round(max(r.server_cpu / e.server_cpu for e, r in pairs), 2),
                    ],
                    "p50_ms": round(statistics.median(samples), 3),
                    "p95_ms": round(quantiles[-1], 3),
                    "worst_ms": round(samples[worst], 3),
                    "worst_query": sent[worst] if sent[worst] is not None else None,
                    "calls_per_s": round(ours_side.rate, 1),
                    "echo_calls_per_s": round(echo_side.rate, 1),
                    "client_cpu_ms_per_call": ours_side.client_cpu,
                    "echo_client_cpu_ms_per_call": echo_side.client_cpu,
                    "rounds": [
                        {
                            "echo_server_cpu_ms": e.server_cpu,
                            "case_server_cpu_ms": r.server_cpu,
                            "echo_calls_per_s": round(e.rate, 1),
                            "case_calls_per_s": round(r.rate, 1),
                        }
                        for e, r in pairs
                    ],
                }
            )

        # Memory: the 100k server after ``memory_searches`` distinct searches in all.
        if chosen and "memory" not in chosen:
            return rows
        left = max(0, memory_searches - sent_to_big)
        started = time.perf_counter()
        async with AsyncExitStack() as conns:
            sides = [_Side(ours_url, auth, never_sent_call, ours_server) for _ in range(4)]
            for side in sides:
                await _connect(conns, side)

            async def send(client: Client | None, count: int) -> None:
                assert client is not None
                for i in range(count):
                    await never_sent_call(client, i)

            share = -(-left // len(sides))
            await asyncio.gather(*(send(side.client, share) for side in sides))
        rows.append(
            {
                "case": "memory",
                "specialists": big,
                "distinct_searches": sent_to_big,
                "rss_kib": _rss_kib(ours.pid),
                "echo_idle_rss_kib": echo_rss,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[Ratio]:
    """Server CPU per call against echo's, and the search's and memory's own targets."""
    out: list[Ratio] = [
        Ratio("mcp", str(r["backend"]), "FAILED", str(r["error"])[:80])
        for r in rows
        if "error" in r
    ]
    cases = [r for r in rows if "server_cpu_ms_per_call" in r]
    for row in cases:
        backend = str(row["backend"])
        targets = TARGETS.get(str(row["case"]), ("", ""))
        size = int(row["specialists"])
        out.append(
            Ratio(
                benchmark="mcp",
                backend=backend,
                case=f"{row['case']}, {size:,}",
                mode="server CPU/call",
                value=float(row["server_cpu_ms_per_call"]),
                baseline_value=float(row["echo_server_cpu_ms_per_call"]),
                unit="ms",
                baseline="echo",
                target=targets[1 if backend == "postgres" else 0],
                spread="{:.2f}-{:.2f}".format(*row["spread"]),
            )
        )
    never = sorted(
        (r for r in cases if r["case"] == "search never sent"), key=lambda r: -int(r["specialists"])
    )
    if never:
        top = never[0]
        out.append(
            Ratio(
                "mcp",
                str(top["backend"]),
                f"search never sent, {int(top['specialists']):,}",
                "p95 / p50",
                float(top["p95_ms"]),
                float(top["p50_ms"]),
                "ms",
                "its p50",
                "<= 2",
            )
        )
        out.append(
            Ratio(
                "mcp",
                str(top["backend"]),
                f"search never sent, {int(top['specialists']):,}: worst query",
                "server CPU",
                float(top["worst_ms"]),
                float(top["echo_server_cpu_ms_per_call"]),
                "ms",
                "echo",
            )
        )
    if len(never) >= 2:
        top, low = never[0], never[-1]
        out.append(
            Ratio(
                "mcp",
                str(top["backend"]),
                f"search never sent, {int(top['specialists']):,} vs {int(low['specialists']):,}",
                "server CPU/call",
                float(top["server_cpu_ms_per_call"]),
                float(low["server_cpu_ms_per_call"]),
                "ms",
                f"{int(low['specialists']):,}",
                "<= 1.5",
            )
        )
    for row in rows:
        if row.get("case") == "memory":
            out.append(
                Ratio(
                    "mcp",
                    str(row["backend"]),
                    f"memory, {int(row['specialists']):,}, "
                    f"{int(row['distinct_searches']):,} searches",
                    "RSS",
                    int(row["rss_kib"]) / 1024,
                    int(row["echo_idle_rss_kib"]) / 1024,
                    "MiB",
                    "idle echo",
                    "<= 1.5",
                )
            )
    return out


def notes(rows: list[dict[str, Any]]) -> list[str]:
    """The worst never-sent query of each run, as sent."""
    return [
        f"worst never-sent query ({row['backend']}, {int(row['specialists']):,}): "
        f"{float(row['worst_ms']):.1f} ms server CPU: {json.dumps(row['worst_query'])}"
        for row in rows
        if row.get("case") == "search never sent" and row.get("worst_query") is not None
    ]
