"""A database that cannot serve for a while: every surface answers SERVICE_UNAVAILABLE (503,
retry after a few seconds), never an internal error, and serves again once it is back.

On PostgreSQL, ``agent-server serve`` reaches the database through a TCP proxy on loopback
that the test cuts (live connections reset, new ones refused) and restores, as a database
restart or a network cut would. On SQLite, another connection holds the file's write lock
past the busy timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import httpx2
import pytest
from db_support import truncate_all
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support import body, call_ok, error_code, make_agent, start_serve
from smtp_sink import free_port
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from test_mcp_tools import client_for

from agent_server.booking.demo import load_demo_data
from agent_server.dashboard.sessions import SESSION_COOKIE
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from agent_server.kernel.store import engine as store_engine
from agent_server.kernel.store.outage import RETRY_AFTER_SECONDS, database_unavailable
from agent_server.mail import MailDeliveryFailed
from agent_server.runtime import Runtime

USDC = 1_000_000


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``, in a thread of its own, until
    cut: then live connections are reset and new ones refused, until restored."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._thread.start()
        self.restore()

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._open.difference_update((writer, up_writer))

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self._run(self._listen())

    def cut(self) -> None:
        self._run(self._cut())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
async def proxied(pg_url: str) -> AsyncIterator[tuple[str, str, TcpProxy]]:
    """An emptied PostgreSQL database: its URL, the same through a cuttable proxy, the proxy."""
    await truncate_all(pg_url)
    prefix, _, rest = pg_url.partition("@")
    host_port, _, name = rest.partition("/")
    proxy = TcpProxy(int(host_port.rpartition(":")[2] or 5432))
    try:
        yield pg_url, f"{prefix}@127.0.0.1:{proxy.port}/{name}", proxy
    finally:
        proxy.close()


def _serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = start_serve(dict(env, AGENT_SERVER_PORT=str(port)), port, log)
    return proc, f"http://127.0.0.1:{port}"


def _mcp(base: str, key: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Client(streamable_http_client(f"{base}/mcp", http_client=http))


def assert_unavailable(result: Any) -> None:
    assert error_code(result) == "SERVICE_UNAVAILABLE", result.content
    assert body(result)["error"]["details"] == {"retry_after": RETRY_AFTER_SECONDS}
    text = result.content[0].text
    assert f"Retry in {RETRY_AFTER_SECONDS} seconds" in text
    assert "idempotency_key" in text


def assert_unavailable_http(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert reply.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


@pytest.mark.postgres
async def test_a_cut_database_gets_503_everywhere_and_serving_resumes_when_it_is_back(
    proxied: tuple[str, str, TcpProxy], tmp_path: Path
) -> None:
    direct_url, through_proxy, proxy = proxied
    db = Database(make_engine(direct_url))
    settings = Settings(database_url=direct_url)
    try:
        await load_demo_data(db, 5, seed=5)
        _agent, key = await make_agent(db, settings, funds=50 * USDC)
        _other, unseen_key = await make_agent(db, settings, funds=50 * USDC)
    finally:
        await db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=through_proxy,
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="false",
        AGENT_SERVER_LOG_FORMAT="json",
    )
    proc, base = _serve(env, tmp_path / "serve.log")
    bearer = {"Authorization": f"Bearer {key}"}
    try:
        async with _mcp(base, key) as client:
            specialist = (await call_ok(client, "search-specialists", {}))["items"][0]["id"]
            before = await call_ok(client, "get-wallet", {})

            proxy.cut()
            for tool, arguments in [
                ("get-wallet", {}),
                ("search-specialists", {"skills": ["python"]}),
                ("view-profile", {"specialist_id": specialist}),
                ("book-slot", {"slot_id": "1-20260310T0900Z", "idempotency_key": "outage-retry-1"}),
                ("list-transactions", {}),
            ]:
                assert_unavailable(await client.call_tool(tool, arguments))
            async with httpx.AsyncClient(base_url=base, timeout=30) as rest:
                assert_unavailable_http(await rest.get("/api/agent/wallet", headers=bearer))
                # A key the MCP endpoint has not seen yet is checked against the database
                # before any tool runs: that answer is a 503 too, not a 401 or a 500.
                reply = await rest.post(
                    "/mcp",
                    headers={
                        "Authorization": f"Bearer {unseen_key}",
                        "Accept": "application/json, text/event-stream",
                    },
                    json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                )
                assert_unavailable_http(reply)
                assert_unavailable_http(await rest.get("/calendar/feed/some-token.ics"))
                page = await rest.get("/", headers={"Cookie": f"{SESSION_COOKIE}=a-session"})
                assert page.status_code == 503
                assert page.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
                assert "database cannot serve this right now" in page.text
                assert page.headers["content-type"].startswith("text/html")
                assert (await rest.get("/readyz")).status_code == 503

            proxy.restore()
            assert await call_ok(client, "get-wallet", {}) == before  # nothing charged
            await call_ok(client, "view-profile", {"specialist_id": specialist})
            async with httpx.AsyncClient(base_url=base, timeout=30) as rest:
                assert (await rest.get("/api/agent/wallet", headers=bearer)).status_code == 200
        async with _mcp(base, unseen_key) as other:
            await call_ok(other, "get-wallet", {})
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log and "tool.unexpected_error" not in log
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert not [e for e in lines if e["level"] in ("error", "critical")]
    unavailable_calls = [
        e for e in lines if e["event"] == "tool.call" and e.get("code") == "SERVICE_UNAVAILABLE"
    ]
    assert len(unavailable_calls) == 5 and all(e["error"] for e in unavailable_calls)
    warnings = [e for e in lines if e["level"] == "warning"]
    events = {e["event"] for e in warnings}
    assert {"tool.call", "api.database_unavailable", "dashboard.database_unavailable"} <= events
    # Each request that met the outage is logged once as a warning, and no other request is.
    met_outage = {e["request_id"] for e in unavailable_calls} | {
        e["request_id"] for e in lines if e["event"] == "http.request" and e["status"] == 503
    }
    assert Counter(e.get("request_id") for e in warnings) == dict.fromkeys(met_outage, 1)


async def test_a_sqlite_file_locked_past_the_busy_timeout_gets_service_unavailable(
    tmp_path: Path, sqlite_template: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "locked.db"
    path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite+aiosqlite:///{path}"
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_MS", 200)
    db = Database(make_engine(url), clock)
    runtime = Runtime(settings=Settings(database_url=url), db=db)
    try:
        _agent, key = await make_agent(db, runtime.settings, funds=50 * USDC)
        async with client_for(runtime, key) as client:
            before = await call_ok(client, "get-wallet", {})
            holder = sqlite3.connect(path, isolation_level=None)
            try:
                holder.execute("BEGIN EXCLUSIVE")
                assert_unavailable(await client.call_tool("get-wallet", {}))
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert await call_ok(client, "get-wallet", {}) == before
    finally:
        await runtime.close()


async def test_only_database_errors_count_as_the_database_being_unavailable(
    db: Database, backend: str
) -> None:
    try:
        raise MailDeliveryFailed("the mail server is down") from ConnectionRefusedError()
    except MailDeliveryFailed as mail:
        assert not database_unavailable(mail)
    assert not database_unavailable(ConnectionRefusedError(111, "a chain node refused"))
    async with db.uow() as uow:  # a statement's own fault is not an outage
        with pytest.raises(DBAPIError) as bad:
            await uow.session.execute(text("SELECT * FROM no_such_table"))
    assert not database_unavailable(bad.value)
    if backend != "postgres":
        return
    # A deadlock's victim may simply retry: two transactions take two rows in turn.
    async with db.uow() as setup:
        for key in ("first", "second"):
            await setup.session.execute(
                text("INSERT INTO rate_counters (key, window_start, hits) VALUES (:k, 0, 0)"),
                {"k": key},
            )
        await setup.commit()
    both_locked_one = asyncio.Event()
    locked: list[str] = []

    async def take(first: str, then: str) -> None:
        async with db.uow() as uow:
            bump = text("UPDATE rate_counters SET hits = hits + 1 WHERE key = :k")
            await uow.session.execute(bump, {"k": first})
            locked.append(first)
            if len(locked) == 2:
                both_locked_one.set()
            await both_locked_one.wait()
            await uow.session.execute(bump, {"k": then})
            await uow.commit()

    outcomes = await asyncio.gather(
        take("first", "second"), take("second", "first"), return_exceptions=True
    )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failures) == 1, outcomes
    assert database_unavailable(failures[0]), repr(failures[0])


@asynccontextmanager
async def wallets_locked(url: str) -> AsyncIterator[asyncpg.Connection]:
    """Another session's transaction holding every wallet row, rolled back on leaving."""
    locker = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await locker.execute("BEGIN")
        await locker.execute("SELECT id FROM ledger_accounts FOR UPDATE")
        yield locker
        await locker.execute("ROLLBACK")
    finally:
        await locker.close()


@pytest.mark.postgres
async def test_a_call_whose_connection_is_cut_mid_transaction_charges_nothing(
    proxied: tuple[str, str, TcpProxy],
) -> None:
    direct_url, through_proxy, proxy = proxied
    db = Database(make_engine(through_proxy))
    runtime = Runtime(settings=Settings(database_url=through_proxy), db=db)
    _agent, key = await make_agent(db, runtime.settings, funds=50 * USDC)
    await load_demo_data(db, 5, seed=5)
    try:
        async with client_for(runtime, key) as client:
            before = await call_ok(client, "get-wallet", {})
            # Another transaction holds the wallets, so the search stops at its charge...
            async with wallets_locked(direct_url) as locker:
                call = asyncio.create_task(client.call_tool("search-specialists", {"q": "tax"}))
                for _ in range(200):
                    waiting = await locker.fetchval(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                    if waiting:
                        break
                    await asyncio.sleep(0.05)
                assert waiting, "the search never waited for the wallet"
                proxy.cut()  # ...and loses its connection there.
                assert_unavailable(await asyncio.wait_for(call, 30))
            proxy.restore()
            assert await call_ok(client, "get-wallet", {}) == before
            usage = await call_ok(client, "get-usage", {})
            assert "search-specialists" not in {row["tool"] for row in usage["usage"]}
            assert usage["total_usd"]["amount"] == 0
            await call_ok(client, "search-specialists", {"q": "tax"})  # and it serves again
    finally:
        await runtime.close()


@pytest.mark.postgres
async def test_a_call_that_finds_every_connection_busy_past_the_pool_timeout_gets_503(
    pg_url: str,
) -> None:
    await truncate_all(pg_url)
    settings = Settings(database_url=pg_url, database_pool_size=1, database_pool_timeout=0.3)
    runtime = Runtime.create(settings)
    pool: Any = runtime.db.engine.sync_engine.pool
    assert (pool.size(), pool.timeout()) == (1, 0.3)
    try:
        _agent, key = await make_agent(runtime.db, settings, funds=50 * USDC)
        async with client_for(runtime, key) as client:
            before = await call_ok(client, "get-wallet", {})
            # Two connections: the pool's one and its one extra, both taken.
            async with runtime.db.engine.connect(), runtime.db.engine.connect():
                assert_unavailable(await client.call_tool("get-wallet", {}))
            assert await call_ok(client, "get-wallet", {}) == before
    finally:
        await runtime.close()


@pytest.mark.postgres
async def test_a_call_that_waits_past_the_lock_timeout_gets_503_and_the_next_one_is_served(
    pg_url: str,
) -> None:
    await truncate_all(pg_url)
    settings = Settings(database_url=pg_url, database_lock_timeout=0.3)
    runtime = Runtime.create(settings)
    try:
        await load_demo_data(runtime.db, 5, seed=5)
        _agent, key = await make_agent(runtime.db, settings, funds=50 * USDC)
        async with client_for(runtime, key) as client:
            before = await call_ok(client, "get-wallet", {})
            # A transaction that keeps the wallets locked (a stuck one, say)...
            async with wallets_locked(pg_url):
                # ...holds a paid search up only as long as the lock timeout: no hang.
                held = client.call_tool("search-specialists", {"q": "tax"})
                assert_unavailable(await asyncio.wait_for(held, 30))
            assert await call_ok(client, "get-wallet", {}) == before  # it charged nothing
            page = await call_ok(client, "search-specialists", {"q": "tax"})
            after = await call_ok(client, "get-wallet", {})
        charged = page["receipt"]["amount"]["amount"]
        assert charged > 0
        usdc = {w["currency"]: w["balance"]["amount"] for w in after["wallets"]}
        assert int(usdc["USDC"]) == 50 * USDC - charged
    finally:
        await runtime.close()
