"""The soak: Agent Server under load, with client disconnects and a killed process, then an audit.

    .venv/bin/python tests/soak.py [--agents 50] [--calls 10000] [--seed 1]     (``make soak``)

What it does, on a fresh PostgreSQL database (created, migrated, loaded with demo specialists,
dropped afterwards unless ``--keep-database``):

1. starts two ``agent-server serve`` processes on that database (chain watchers off, the
   webhook worker on, rate limits raised) and a webhook receiver on 127.0.0.1;
2. signs up the agents through the REST API of both servers (register with a callback URL,
   verify with the code from the mail outbox, rotate the webhook secret), funds them with an
   operator credit that activates them; a few get little money and a second wallet;
3. runs the mixed tool calls (search, view-profile, availability, create-schedule,
   book-slot with idempotency keys and retries of the same key, cancel-booking,
   reschedule-booking, get-wallet, quote, the list tools) through the MCP SDK's client over
   streamable HTTP with each agent's bearer key, split across both servers. Some calls are
   cut off mid-flight (a client disconnect) and retried with the same idempotency key; one
   server is killed with SIGKILL part-way through and restarted, so the calls in flight to it
   fail and are retried on the other one. Now and then an agent fires cancels and reschedules
   of one booking at once at both servers: at most one of them may succeed;
   Both servers also run the booking clock with short times (``soak_clock``): pending
   bookings booked "yesterday" expire, sessions that ended are completed and, once their
   dispute window closed, paid out, while the agents dispute some of them (``open-dispute``)
   and an operator settles those disputes with refunds, releases and splits;
4. waits until the clocks caught up with whatever was due, stops the servers, lets the
   housekeeping release what the killed calls left held (as the
   running servers do once a hold is stale), and hands every observed call to
   ``soak_audit.audit``, which checks the database and a reference model against each other;
5. sends withdrawals and payouts on a real anvil with two ``send-withdrawals`` processes on the
   same database, one killed with SIGKILL again and again, and checks wallets, payable and
   pending-withdrawal accounts and the chain against a model (``soak_withdrawals``).

``tests/test_soak.py`` runs a reduced soak inside the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from sqlalchemy import select, text

from agent_server.accounts.status import activate_if_pending
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import Schedule
from agent_server.booking.schedules import get_availability
from agent_server.kernel.store import Database, make_engine
from agent_server.kernel.store.migrate import upgrade
from agent_server.mail import OutboxMail
from billing.wallet_funds import adjust_balance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from db_support import pg_admin
from proof_support import Connection
from soak_audit import AgentSetup, AuditReport, Call, audit
from soak_clock import (
    clock_figures,
    plan_clock,
    resolve_disputes,
    seed,
    settle_clock,
    wait_for_status,
)
from soak_withdrawals import run_withdrawal_soak
from webhook_receiver import Receiver

BIN = Path(sys.executable).parent
DEFAULT_PG_ADMIN_URL = os.environ.get(
    "AGENT_SERVER_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
PEPPER = "soak-pepper-5f1c0e7a9b"
USDC = 1_000_000
UNLIMITED = str(10**9)
KEYED_TOOLS = ("book-slot", "create-schedule")
KEYED_RETRIES = 6


@dataclass(frozen=True)
class SoakConfig:
    """The size and shape of one soak."""

    agents: int = 50
    calls: int = 10_000
    specialists: int = 300
    seed: int = 1
    disconnect_rate: float = 0.04
    kill_at: float = 0.45  # the fraction of the calls after which one server is killed
    down_seconds: float = 1.5  # how long the killed server stays down
    pg_admin_url: str = DEFAULT_PG_ADMIN_URL
    keep_database: bool = False
    workdir: Path | None = None


@dataclass
class SoakResult:
    """What ran and what the audit found (the database stays when it was kept)."""

    database_url: str
    database_name: str
    pg_admin_url: str
    setups: list[AgentSetup]
    calls: list[Call]
    received: list[Any]
    report: AuditReport
    seconds: float
    logs: Path

    async def drop_database(self) -> None:
        await drop_database(self.pg_admin_url, self.database_name)

    def summary(self) -> dict[str, Any]:
        outcomes: dict[str, int] = {}
        for call in self.calls:
            outcomes[call.outcome] = outcomes.get(call.outcome, 0) + 1
        return {
            "calls": len(self.calls),
            "outcomes": outcomes,
            "seconds": round(self.seconds, 1),
            **self.report.figures,
        }


# --- servers ------------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """One ``agent-server serve`` process on a fixed port; it can be killed and restarted."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.env = env
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.up = False
        self.starts = 0
        self.started_at = 0.0
        self.in_flight: set[int] = set()  # ids of the Call records under way to this server

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base}/mcp"

    async def start(self) -> None:
        self.starts += 1
        log = (self.logs / f"{self.name}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "agent-server"), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 90
        self.started_at = time.monotonic()
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                with suppress(httpx.HTTPError):
                    if (await http.get(f"{self.base}/readyz")).status_code == 200:
                        break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start; see {self.logs}")
                await asyncio.sleep(0.2)
        self.up = True

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup; calls in flight die with it."""
        self.up = False
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        self.up = False
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def server_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=database_url,
        AGENT_SERVER_SECRET_PEPPER=PEPPER,
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="true",
        AGENT_SERVER_WEBHOOK_ALLOW_PRIVATE="true",
        AGENT_SERVER_WEBHOOK_BACKOFF_SECONDS="1",
        AGENT_SERVER_WEBHOOK_TIMEOUT_SECONDS="5",
        AGENT_SERVER_LOG_FORMAT="json",
        AGENT_SERVER_LOG_LEVEL="INFO",
        AGENT_SERVER_RATE_LIMIT_DEFAULT=UNLIMITED,
        AGENT_SERVER_RATE_LIMITS=json.dumps(
            {"search-specialists": int(UNLIMITED), "book-slot": int(UNLIMITED)}
        ),
        AGENT_SERVER_REGISTER_PER_IP_PER_HOUR=UNLIMITED,
        AGENT_SERVER_EMAIL_CHECKS_PER_IP_PER_HOUR=UNLIMITED,
    )
    return env


# --- the database -------------------------------------------------------------------------------


async def drop_database(admin_url: str, name: str) -> None:
    await pg_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def fresh_database(admin_url: str) -> tuple[str, str]:
    """A new, migrated PostgreSQL database; (its name, its URL)."""
    name = f"agent_server_soak_{secrets.token_hex(4)}"
    await pg_admin(admin_url, f'CREATE DATABASE "{name}"')
    base, _, _ = admin_url.rpartition("/")
    url = f"{base}/{name}"
    await asyncio.to_thread(upgrade, url)
    return name, url


async def hot_slots(db: Database, wanted: int, rng: random.Random) -> list[str]:
    """Free slots of a few public schedules, which many agents will try to book at once."""
    async with db.uow() as uow:
        ids = list(
            (
                await uow.session.scalars(
                    select(Schedule.id)
                    .where(
                        Schedule.private.is_(False),
                        Schedule.deleted_at.is_(None),
                        Schedule.specialist_id.is_not(None),
                    )
                    .order_by(Schedule.id)
                    .limit(60)
                )
            ).all()
        )
        rng.shuffle(ids)
        start = uow.clock.now() + timedelta(hours=1)
        slots: list[str] = []
        for sid in ids:
            free = await get_availability(uow, sid, start, start + timedelta(days=10))
            slots.extend(s.slot_id for s in free[:6])
            if len(slots) >= wanted:
                break
    return slots[:wanted]


# --- agents -------------------------------------------------------------------------------------


async def sign_up(db: Database, server: ServeProcess, index: int, callback_url: str) -> AgentSetup:
    """Register, verify, rotate the webhook secret (REST) and fund (operator credit)."""
    email = f"soak-{index}-{secrets.token_hex(3)}@example.com"
    async with httpx.AsyncClient(base_url=f"{server.base}/api", timeout=30) as api:
        reply = await api.post(
            "/agent/register",
            json={
                "name": f"Soak agent {index}",
                "email": email,
                "currency": "USDC",
                "callback_url": callback_url,
            },
        )
        assert reply.status_code == 201, reply.text
        registered = reply.json()
        agent_id, key = int(registered["agent_id"]), str(registered["api_key"])
        async with db.uow() as uow:
            mail = (
                await uow.session.scalars(
                    select(OutboxMail.body)
                    .where(OutboxMail.to_addr == email)
                    .order_by(OutboxMail.id.desc())
                )
            ).first()
        found = re.search(r"\b(\d{6})\b", mail or "")
        assert found, f"no verification code mailed to {email}"
        verified = await api.post(
            "/agent/verify-email", json={"email": email, "code": found.group(1)}
        )
        assert verified.status_code == 200, verified.text
        rotated = await api.post(
            "/agent/webhook-secret", headers={"Authorization": f"Bearer {key}"}
        )
        assert rotated.status_code == 200, rotated.text
        secret = str(rotated.json()["webhook_secret"])
    # Every fifth agent is poor: it runs out of USDC and falls back on a small USDT wallet.
    poor = index % 5 == 4
    funding = {"USDC": 40 * USDC, "USDT": 25 * USDC} if poor else {"USDC": 200_000 * USDC}
    async with db.uow() as uow:
        for currency, amount in funding.items():
            await adjust_balance(
                uow, agent_id=agent_id, currency=currency, amount=amount, reason="soak funding"
            )
        await activate_if_pending(uow, agent_id, "soak funding", actor="soak")
        await uow.commit()
    return AgentSetup(agent_id, key, email, secret, funding)


# --- the workload -------------------------------------------------------------------------------

SEARCHES: tuple[dict[str, Any], ...] = (
    {},
    {"limit": 10, "sort": "next_available"},
    {"skills": ["python"]},
    {"sort": "price", "languages": ["en"]},
    {"q": "tax", "limit": 5},
    {"city": "Berlin"},
    {"days_of_week": ["sat", "sun"], "timezone": "Europe/London"},
    {"hours_from": "18:00", "hours_to": "22:00", "timezone": "Asia/Tokyo"},
    {"price_max": 150_000_000, "sort": "price"},
    {"sort": "rating", "limit": 20},
)

WEIGHTS: dict[str, int] = {
    "search-specialists": 16,
    "view-profile": 9,
    "get-availability": 5,
    "book-slot": 20,
    "cancel-booking": 8,
    "reschedule-booking": 5,
    "race-booking": 3,  # concurrent cancels and reschedules of one booking, both servers
    "create-schedule": 4,
    "update-schedule": 2,
    "get-wallet": 8,
    "quote": 7,
    "list-bookings": 6,
    "list-schedules": 3,
    "list-transactions": 4,
    "get-usage": 3,
    "open-dispute": 5,  # of a seeded session that ended (soak_clock)
}


class Budget:
    """The calls left to make, shared by every agent; the kill fires part-way through.

    Half the calls left after the kill point wait until the killed server is back
    (``restarted``): on a fast machine the survivor alone could otherwise make them all
    before the restart, and no call would show the restarted server serving."""

    def __init__(self, total: int, kill_after: int) -> None:
        self.total = total
        self.used = 0
        self.kill_after = kill_after
        self.hold_after = kill_after + (total - kill_after) // 2
        self.kill_due = asyncio.Event()
        self.restarted = asyncio.Event()

    def take(self) -> bool:
        if self.used >= self.total:
            return False
        self.used += 1
        if self.used >= self.kill_after:
            self.kill_due.set()
        return True

    async def until_restarted(self) -> None:
        """Past the hold point, wait until the killed server is back."""
        if self.used > self.hold_after:
            await self.restarted.wait()


SLOT_ID = re.compile(r"^\d+-\d{8}T\d{4}Z$")


def _slot_ids(data: Any) -> list[str]:
    """Every free slot's slot_id anywhere in a tool result (listed as ``slots``, a mapping of
    slot_id to its local time range)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            slots = node.get("slots")
            if isinstance(slots, dict):
                found.extend(k for k in slots if isinstance(k, str) and SLOT_ID.match(k))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(data)
    return found


@dataclass
class Actor:
    """One agent making calls one after another, as an LLM agent would."""

    setup: AgentSetup
    servers: list[ServeProcess]
    budget: Budget
    calls: list[Call]
    hot: list[str]
    rng: random.Random
    disconnect_rate: float
    specialists: int
    connections: dict[str, Connection] = field(default_factory=dict)
    # The agent's own running account of its wallets, exact while nothing is in doubt.
    expected: dict[str, int] = field(default_factory=dict)
    receipts: set[str] = field(default_factory=set)
    doubt: bool = False
    wallet_checks: int = 0
    problems: list[str] = field(default_factory=list)
    known_slots: list[str] = field(default_factory=list)
    specialist_ids: list[int] = field(default_factory=list)
    bookings: dict[int, str] = field(default_factory=dict)  # active booking id -> slot id
    schedules: list[int] = field(default_factory=list)
    keys: int = 0
    races: int = 0
    ended: list[int] = field(default_factory=list)  # sessions it may still dispute

    # -- transport --

    def _server(self, avoid: str | None = None) -> ServeProcess:
        up = [s for s in self.servers if s.up and s.name != avoid]
        if not up:
            up = [s for s in self.servers if s.up] or self.servers
        return self.rng.choice(up)

    def _new_http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.setup.key}"}, timeout=60)

    def _connection(self, server: ServeProcess) -> Connection:
        """The agent's open client to ``server``, opened again after it broke."""
        connection = self.connections.get(server.name)
        if connection is None or connection.broken:
            http = self._new_http()
            connection = Connection(
                lambda: Client(streamable_http_client(server.mcp_url, http_client=http))
            )
            self.connections[server.name] = connection
        return connection

    async def close(self) -> None:
        for connection in self.connections.values():
            await connection.close()
        self.connections.clear()

    async def call(
        self,
        tool: str,
        arguments: dict[str, Any],
        *,
        server: ServeProcess | None = None,
        disconnect: bool | None = None,
    ) -> Call:
        """One call through the SDK's client; its observed outcome is recorded and returned.

        ``disconnect``: the client goes away after a moment, whether or not the answer came
        (a client of its own, so the agent's open one is not disturbed).
        """
        server = server or self._server()
        if disconnect is None:
            disconnect = self.rng.random() < self.disconnect_rate
        record = Call(
            agent_id=self.setup.agent_id,
            tool=tool,
            arguments=arguments,
            server=server.name,
            started=time.monotonic(),
        )
        self.calls.append(record)
        result: CallToolResult | None = None
        server.in_flight.add(id(record))
        try:
            if disconnect:
                result = await self._cut_off(server, tool, arguments)
            else:
                result = await self._connection(server).call(tool, arguments)
        except Exception as exc:  # the server died under the call, or refused the connection
            record.unknown(f"transport: {type(exc).__name__}")
            self.doubt = True
            return record
        finally:
            server.in_flight.discard(id(record))
        if result is None:
            record.unknown("disconnect")
            self.doubt = True
            return record
        data = dict(result.structured_content or {})
        if result.is_error:
            record.failed(data.get("error") or {"code": "UNSTRUCTURED", "message": str(result)})
        else:
            record.succeeded(data)
            self._account(record)
        return record

    def _account(self, record: Call) -> None:
        """What the agent expects its wallets to hold after a call it saw succeed."""
        receipt = record.receipt
        if receipt is not None and receipt["call_id"] not in self.receipts:
            self.receipts.add(receipt["call_id"])
            spent = record.spent
            if spent is not None:
                currency, amount = spent
                self.expected[currency] = self.expected.get(currency, 0) - amount
        refunded, refund_currency = record.refund
        if record.tool == "cancel-booking" and refunded and refund_currency is not None:
            self.expected[refund_currency] = self.expected.get(refund_currency, 0) + refunded

    async def _cut_off(
        self, server: ServeProcess, tool: str, arguments: dict[str, Any]
    ) -> CallToolResult | None:
        """A call whose client disconnects after a moment; None when it was cut off."""
        cut = self.rng.uniform(0.001, 0.15)
        async with self._new_http() as http:
            async with Client(streamable_http_client(server.mcp_url, http_client=http)) as client:
                # Connected first, so the cut lands on the tool call itself.
                try:
                    async with asyncio.timeout(cut):
                        return await client.call_tool(tool, arguments)
                except TimeoutError:
                    return None

    async def keyed(self, tool: str, arguments: dict[str, Any]) -> Call:
        """A call with an idempotency key, retried with the same key until it has an answer:
        after a disconnect, a dead server or ``IDEMPOTENCY_MISMATCH`` (still in flight)."""
        record = await self.call(tool, arguments)
        for attempt in range(KEYED_RETRIES):
            retry = record.outcome == "unknown" or (
                record.outcome == "error"
                and record.code == "IDEMPOTENCY_MISMATCH"
                and record.error.get("details", {}).get("retryable") is True
            )
            if not retry or not self.budget.take():
                break
            await asyncio.sleep(0.05 * 2**attempt)
            record = await self.call(
                tool, arguments, server=self._server(avoid=record.server), disconnect=False
            )
        return record

    # -- operations --

    async def run(self) -> None:
        tools = list(WEIGHTS)
        weights = [WEIGHTS[t] for t in tools]
        try:
            while self.budget.take():
                await self.budget.until_restarted()
                tool = self.rng.choices(tools, weights)[0]
                await getattr(self, "op_" + tool.replace("-", "_"))()
        finally:
            await self.close()

    def _remember(self, data: dict[str, Any]) -> None:
        slots = _slot_ids(data)
        if slots:
            self.known_slots = [*self.known_slots, *slots][-200:]
        for item in data.get("items") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), int):
                self.specialist_ids = [*self.specialist_ids, item["id"]][-50:]

    def _key(self, prefix: str) -> str:
        self.keys += 1
        return f"{prefix}-{self.setup.agent_id}-{self.keys:05d}-{secrets.token_hex(2)}"

    async def op_search_specialists(self) -> None:
        record = await self.call("search-specialists", dict(self.rng.choice(SEARCHES)))
        if record.outcome == "ok":
            self._remember(record.body)

    async def op_view_profile(self) -> None:
        specialist = (
            self.rng.choice(self.specialist_ids)
            if self.specialist_ids and self.rng.random() < 0.8
            else self.rng.randint(1, self.specialists + 5)  # now and then an unknown id
        )
        record = await self.call("view-profile", {"specialist_id": specialist, "window_days": 7})
        if record.outcome == "ok":
            self._remember(record.body)

    async def op_get_availability(self) -> None:
        if self.known_slots and self.rng.random() < 0.7:
            schedule = int(self.rng.choice(self.known_slots).split("-", 1)[0])
            arguments: dict[str, Any] = {"schedule_id": schedule}
        else:
            arguments = {"specialist_id": self.rng.randint(1, self.specialists)}
        record = await self.call("get-availability", arguments)
        if record.outcome == "ok":
            self._remember(record.body)

    async def op_book_slot(self) -> None:
        pool = self.hot if (self.rng.random() < 0.4 or not self.known_slots) else self.known_slots
        if not pool:  # nothing to book yet: the call this turn is a search for slots
            return await self.op_search_specialists()
        arguments = {
            "slot_id": self.rng.choice(pool),
            "idempotency_key": self._key("book"),
            "topic": "soak session",
        }
        if self.rng.random() < 0.05 and self.budget.take():
            # The same key sent to both servers at once (a client retrying too eagerly).
            self.doubt = True  # one of them may still hold the money while the other answers
            first, second = await asyncio.gather(
                self.call("book-slot", arguments, server=self.servers[0]),
                self.call("book-slot", arguments, server=self.servers[1]),
            )
            record = first if first.outcome == "ok" else second
            if record.outcome != "ok":
                record = await self.keyed("book-slot", arguments)
        else:
            record = await self.keyed("book-slot", arguments)
        if record.outcome == "ok":
            booking = record.body["booking"]
            self.bookings[int(booking["id"])] = str(booking["slot_id"])
            if self.rng.random() < 0.15 and self.budget.take():
                # A retry of a call that succeeded: the same booking, never a second charge.
                await self.call("book-slot", arguments, disconnect=False)

    async def op_cancel_booking(self) -> None:
        if not self.bookings:
            return await self.op_list_bookings()
        booking_id = self.rng.choice(sorted(self.bookings))
        arguments = {
            "booking_id": booking_id,
            "reason_code": self.rng.choice(["no_time", "not_feeling_well", "other"]),
        }
        record = await self.call("cancel-booking", arguments)
        if record.outcome == "ok" or record.code in ("BOOKING_CONFLICT", "NOT_FOUND"):
            self.bookings.pop(booking_id, None)
        elif record.outcome == "unknown" and self.budget.take():
            # Not idempotent: ask again; "already canceled" answers the first attempt.
            again = await self.call("cancel-booking", arguments, disconnect=False)
            if again.outcome == "ok" or again.code == "BOOKING_CONFLICT":
                self.bookings.pop(booking_id, None)
        return None

    async def op_reschedule_booking(self) -> None:
        if not self.bookings:
            return await self.op_book_slot()
        booking_id = self.rng.choice(sorted(self.bookings))
        schedule = int(self.bookings[booking_id].split("-", 1)[0])
        free = await self.call("get-availability", {"schedule_id": schedule})
        if free.outcome != "ok":
            return None
        choices = [s for s in _slot_ids(free.body) if s != self.bookings[booking_id]]
        # Each call made takes one of the budget's calls, and only a call made takes one.
        if not choices or not self.budget.take():
            return None
        target = self.rng.choice(choices[:10])
        record = await self.call(
            "reschedule-booking", {"booking_id": booking_id, "new_slot_id": target}
        )
        if record.outcome == "ok":
            self.bookings.pop(booking_id, None)
            new = record.body["booking"]
            self.bookings[int(new["id"])] = str(new["slot_id"])
        elif record.outcome == "unknown" or record.code == "BOOKING_CONFLICT":
            self.bookings.pop(booking_id, None)  # its state is unsure; leave it be
        return None

    async def op_race_booking(self) -> None:
        """Two cancels and two reschedules of one booking at once, split across both servers:
        at most one may succeed, the others answer BOOKING_CONFLICT."""
        if not self.bookings:
            return await self.op_book_slot()
        booking_id = self.rng.choice(sorted(self.bookings))
        current = self.bookings.pop(booking_id)
        schedule = int(current.split("-", 1)[0])
        free = await self.call("get-availability", {"schedule_id": schedule})
        targets = [s for s in _slot_ids(free.body) if s != current][:10] if free.body else []
        calls: list[tuple[str, dict[str, Any]]] = [
            ("cancel-booking", {"booking_id": booking_id, "reason_code": "other"})
        ] * 2
        calls += [
            ("reschedule-booking", {"booking_id": booking_id, "new_slot_id": target})
            for target in self.rng.sample(targets, min(2, len(targets)))
        ]
        calls = [c for c in calls if self.budget.take()]
        if not calls:
            return None
        self.races += 1
        records = await asyncio.gather(
            *(
                self.call(tool, arguments, server=self.servers[i % 2], disconnect=False)
                for i, (tool, arguments) in enumerate(calls)
            )
        )
        won = [r for r in records if r.outcome == "ok"]
        if len(won) > 1:
            self.problems.append(
                f"agent {self.setup.agent_id}: {len(won)} concurrent changes of booking "
                f"{booking_id} all succeeded: {[r.tool for r in won]}"
            )
        for record in won:
            if record.tool == "reschedule-booking":
                new = record.body["booking"]
                self.bookings[int(new["id"])] = str(new["slot_id"])
        return None

    async def op_create_schedule(self) -> None:
        days = self.rng.sample(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], 3)
        currency = self.rng.choice(["USD", "USDC"])
        arguments: dict[str, Any] = {
            "timezone": self.rng.choice(["Europe/Berlin", "America/New_York", "UTC"]),
            "weekly_hours": {d: [["09:00", "12:00"]] for d in days},
            "slot_minutes": self.rng.choice([30, 60]),
            "price_amount": self.rng.choice([0, 5, 20]) * USDC,
            "price_currency": currency,
            "private": self.rng.random() < 0.5,
            "label": f"soak schedule {self.keys}",
            "idempotency_key": self._key("schedule"),
        }
        record = await self.keyed("create-schedule", arguments)
        if record.outcome == "ok":
            self.schedules.append(int(record.body["schedule"]["id"]))

    async def op_update_schedule(self) -> None:
        if not self.schedules:
            return await self.op_list_schedules()
        await self.call(
            "update-schedule",
            {
                "schedule_id": self.rng.choice(self.schedules),
                "changes": {"label": f"renamed {self.rng.randint(1, 999)}"},
            },
        )
        return None

    async def op_get_wallet(self) -> None:
        record = await self.call("get-wallet", {})
        if record.outcome != "ok" or self.doubt:
            return
        # Nothing this agent did is in doubt: its balances are exactly what it was told.
        held = {w["currency"]: int(w["balance"]["amount"]) for w in record.body["wallets"]}
        self.wallet_checks += 1
        for currency in set(held) | set(self.expected):
            if held.get(currency, 0) != self.expected.get(currency, 0):
                self.problems.append(
                    f"agent {self.setup.agent_id} was shown {held.get(currency, 0)} {currency}, "
                    f"its receipts and refunds say {self.expected.get(currency, 0)}"
                )

    async def op_quote(self) -> None:
        tool = self.rng.choice(
            ["search-specialists", "view-profile", "create-schedule", "book-slot"]
        )
        arguments: dict[str, Any] = {"tool": tool}
        if tool == "book-slot" and self.known_slots:
            arguments["slot_id"] = self.rng.choice(self.known_slots)
        await self.call("quote", arguments)

    async def op_list_bookings(self) -> None:
        arguments: dict[str, Any] = {"limit": self.rng.choice([5, 20, 50])}
        if self.rng.random() < 0.3:
            arguments["status"] = self.rng.choice(["accepted", "pending", "canceled"])
        await self.call("list-bookings", arguments)

    async def op_list_schedules(self) -> None:
        await self.call("list-schedules", {})

    async def op_list_transactions(self) -> None:
        await self.call("list-transactions", {"limit": self.rng.choice([50, 50, 10])})

    async def op_get_usage(self) -> None:
        await self.call("get-usage", {})

    async def op_open_dispute(self) -> None:
        if not self.ended:
            return await self.op_list_bookings()
        booking_id = self.rng.choice(self.ended)
        arguments = {
            "booking_id": booking_id,
            "reason_code": self.rng.choice(["no_show", "ended_early", "not_as_described"]),
            "text": "soak: the session did not happen as booked",
        }
        record = await self.call("open-dispute", arguments)
        if record.outcome != "error":
            # An operator settles it out of this agent's sight: its wallet is in doubt now.
            self.doubt = True
        if record.outcome == "ok" or record.code == "BOOKING_CONFLICT":
            self.ended.remove(booking_id)
        return None


async def chaos(budget: Budget, victim: ServeProcess, down_seconds: float) -> int:
    """SIGKILL ``victim`` once the budget passes the kill point while calls are in flight to
    it, then start it again. How many calls were in flight when it died."""
    await budget.kill_due.wait()
    for _ in range(200):  # at most ~2 s more for calls to be under way
        if len(victim.in_flight) >= 2:
            break
        await asyncio.sleep(0.01)
    in_flight = len(victim.in_flight)
    try:
        victim.kill()
        await asyncio.sleep(down_seconds)
        await victim.start()
    finally:
        budget.restarted.set()  # even when the restart failed: nobody waits forever
    return in_flight


# --- the run ------------------------------------------------------------------------------------


async def wait_for_deliveries(db: Database, seconds: float) -> None:
    """Until no event waits for its first delivery attempt (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with db.engine.connect() as conn:
            waiting = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM outbox_events WHERE status = 'pending' "
                        "AND (claimed_until IS NULL OR claimed_until < now())"
                    )
                )
            ).scalar_one()
        if waiting == 0:
            return
        await asyncio.sleep(0.5)


async def run_soak(
    config: SoakConfig, progress: Callable[[str], None] = lambda _m: None
) -> SoakResult:
    """One whole soak: set-up, load with faults, audit. The database is dropped afterwards
    unless ``config.keep_database``."""
    started = time.monotonic()
    rng = random.Random(config.seed)
    logs = config.workdir or Path(tempfile.mkdtemp(prefix="agent-server-soak-"))
    logs.mkdir(parents=True, exist_ok=True)
    name, url = await fresh_database(config.pg_admin_url)
    progress(f"database {name}; logs in {logs}")
    db = Database(make_engine(url))
    servers: list[ServeProcess] = []
    try:
        await load_demo_data(db, config.specialists, seed=config.seed)
        hot = await hot_slots(db, max(12, config.agents), rng)
        env = server_env(url)
        clock_plan = plan_clock(config.agents)
        env.update(clock_plan.env())
        servers = [ServeProcess("serve-a", env, logs), ServeProcess("serve-b", env, logs)]
        await asyncio.gather(*(s.start() for s in servers))
        with Receiver() as receiver:
            setups = []
            for index in range(config.agents):
                setups.append(await sign_up(db, servers[index % 2], index, receiver.url))
            seeded = await seed(url, setups, clock_plan)
            setups = seeded.setups
            await wait_for_status(db, seeded.pending, "canceled", 20)  # expired by now
            progress(f"{len(setups)} agents signed up and funded; calling")
            budget = Budget(config.calls, max(1, int(config.calls * config.kill_at)))
            calls: list[Call] = []
            actors = [
                Actor(
                    setup=setup,
                    servers=servers,
                    budget=budget,
                    calls=calls,
                    hot=hot,
                    rng=random.Random(rng.getrandbits(64)),
                    disconnect_rate=config.disconnect_rate,
                    specialists=config.specialists,
                )
                for setup in setups
            ]
            for actor in actors:
                agent_id = actor.setup.agent_id
                actor.expected = dict(seeded.opening.get(agent_id, actor.setup.funding))
                actor.ended = list(seeded.ended.get(agent_id, []))
            kill = asyncio.create_task(chaos(budget, servers[1], config.down_seconds))
            operator_stop = asyncio.Event()
            decisions: dict[str, Any] = {}
            operator = asyncio.create_task(
                resolve_disputes(db, operator_stop, random.Random(rng.getrandbits(64)), decisions)
            )
            await asyncio.gather(*(actor.run() for actor in actors))
            killed_in_flight = await kill  # the budget always passes the kill point
            operator_stop.set()
            await operator
            progress("waiting for the booking clocks to catch up")
            await settle_clock(db, clock_plan)
            progress(f"{len(calls)} calls made; waiting for webhook deliveries")
            await wait_for_deliveries(db, 30)
            for server in servers:
                server.stop()
            received = list(receiver.requests)
            cut_deliveries = receiver.cut
        progress("servers stopped; auditing")
        report = await audit(
            db, setups, calls, received, pepper=PEPPER, deadlines=clock_plan.deadlines()
        )
        report.figures.update(await clock_figures(db), dispute_decisions=decisions)
        for actor in actors:
            report.problems.extend(actor.problems)
        progress("withdrawals and payouts: two senders on the database, one killed -9")
        money_out = await run_withdrawal_soak(db, url, logs, random.Random(rng.getrandbits(64)))
        report.problems.extend(money_out.problems)
        report.figures["withdrawals"] = money_out.figures
        report.figures.update(
            server_kills=1,
            server_restarts=servers[1].starts - 1,
            calls_in_flight_at_kill=killed_in_flight,
            webhook_requests_cut_by_the_kill=cut_deliveries,
            calls_served_after_restart=sum(
                1 for c in calls if c.server == "serve-b" and c.started > servers[1].started_at
            ),
            wallet_checks_during_run=sum(a.wallet_checks for a in actors),
            booking_races=sum(a.races for a in actors),
        )
        return SoakResult(
            database_url=url,
            database_name=name,
            pg_admin_url=config.pg_admin_url,
            setups=setups,
            calls=calls,
            received=received,
            report=report,
            seconds=time.monotonic() - started,
            logs=logs,
        )
    finally:
        for server in servers:
            server.stop()
        await db.dispose()
        if not config.keep_database:
            await drop_database(config.pg_admin_url, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--specialists", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--disconnect-rate", type=float, default=0.04)
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = parser.parse_args()
    config = SoakConfig(
        agents=args.agents,
        calls=args.calls,
        specialists=args.specialists,
        seed=args.seed,
        disconnect_rate=args.disconnect_rate,
        keep_database=args.keep_database,
        workdir=args.workdir,
    )

    def progress(message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"[{stamp}] {message}", file=sys.stderr, flush=True)

    result = asyncio.run(run_soak(config, progress))
    figures = result.summary()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    for problem in result.report.problems:
        print(f"AUDIT FAILED: {problem}", file=sys.stderr)
    print(
        "audit: " + ("PASSED" if not result.report.problems else "FAILED"),
        file=sys.stderr,
    )
    return 0 if not result.report.problems else 1


if __name__ == "__main__":
    raise SystemExit(main())
