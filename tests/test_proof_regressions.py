"""Bugs the proof suite (soak, fuzzing, security tests) found, each pinned by a test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from accounts_support import api_for, outbox_code
from billing_support import make_agent as make_billing_agent
from mcp import Client
from mcp_support import body, call_ok, error_code, make_agent
from mcp_types.version import LATEST_MODERN_VERSION
from sqlalchemy import event

from agent_server.app import create_app
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.logs import configure_logging
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from billing.idempotency import Claim, claim

USDC = 1_000_000


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield Runtime(settings=Settings(database_url=database_url), db=db)


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def test_list_bookings_refuses_a_time_without_offset_naming_the_field(
    runtime: Runtime,
) -> None:
    # Was an INTERNAL_ERROR: the naive time reached a UTC column.
    _, key = await make_agent(runtime.db, runtime.settings, funds=USDC)
    async with client_for(runtime, key) as client:
        for field in ("starts_after", "starts_before"):
            refused = await client.call_tool("list-bookings", {field: "2026-03-02T09:00:00"})
            assert error_code(refused) == "VALIDATION_ERROR"
            assert [f["field"] for f in body(refused)["error"]["details"]["fields"]] == [field]
        listed = await call_ok(
            client,
            "list-bookings",
            {"starts_after": "2026-03-02T09:00:00Z", "starts_before": "2026-04-01T00:00:00+02:00"},
        )
    assert listed["bookings"] == []


async def test_slot_ids_at_the_ends_of_the_calendar_are_refused_naming_the_field(
    runtime: Runtime,
) -> None:
    # Was an INTERNAL_ERROR (OverflowError): 9999-12-31 23:59 UTC has no local date east of
    # UTC, 0001-01-01 00:00 none west of it.
    from agent_server.booking.demo import load_demo_data

    await load_demo_data(runtime.db, 3, seed=3)
    _, key = await make_agent(runtime.db, runtime.settings, funds=100 * USDC)
    async with client_for(runtime, key) as client:
        for slot_id in ("1-99991231T2359Z", "1-00010101T0000Z", "2-19000101T0900Z"):
            for tool, arguments in (
                ("book-slot", {"slot_id": slot_id, "idempotency_key": "far-slot-0001"}),
                ("quote", {"tool": "book-slot", "slot_id": slot_id}),
            ):
                refused = await client.call_tool(tool, arguments)
                assert error_code(refused) == "VALIDATION_ERROR", (tool, slot_id)
                fields = body(refused)["error"]["details"]["fields"]
                assert fields[0]["field"] == "slot_id" and "years" in fields[0]["message"]


async def test_verifying_a_verified_email_with_a_wrong_code_reveals_nothing(
    database_url: str, clock: FakeClock
) -> None:
    # Was 200 with the agent's id and status for any code: anyone knowing an email learned
    # which agent it was and whether it was active, suspended or banned.
    async with api_for(database_url, clock, None) as api:
        registered = await api.register("verified@example.com")
        agent_id = registered.json()["agent_id"]
        code = await outbox_code(api.runtime.db, "verified@example.com")
        assert (await api.verify("verified@example.com", code)).status_code == 200
        again = await api.verify("verified@example.com", code)  # a client's retry
        assert again.status_code == 200 and again.json()["agent_id"] == agent_id
        for guess in ("000000", f"{(int(code) + 1) % 1_000_000:06d}"):
            guessed = await api.verify("verified@example.com", guess)
            unknown = await api.verify("nobody@example.com", guess)
            # The answer an email nobody registered gets, word for word: no id, no status.
            assert guessed.status_code == unknown.status_code == 422
            assert guessed.text == unknown.text.replace("nobody@", "verified@")
            assert guessed.json()["error"]["code"] == "VALIDATION_ERROR"
            assert "agent_id" not in guessed.text and "active" not in guessed.text


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_key_freed_by_its_failed_holder_mid_claim_is_taken_not_an_internal_error(
    backend: str, database_url: str, db: Database
) -> None:
    # Found by the soak: the same key sent to two servers at once, the first call failing.
    # The second call's insert met the first's key; the first then freed it (its call
    # failed); the second's read of the key found nothing and raised NoResultFound.
    # PostgreSQL only: SQLite's writers are serialised, so the read cannot miss the row.
    agent_id = await make_billing_agent(db)
    args: dict[str, Any] = {"slot_id": "1-20260302T0900Z"}
    first = await claim(
        db,
        agent_id=agent_id,
        key="race-key-0001",
        tool="book-slot",
        arguments=args,
        stale_after=timedelta(minutes=15),
    )
    assert isinstance(first, Claim)
    sync_url = database_url.replace("postgresql+asyncpg://", "postgresql://")
    freed: list[bool] = []

    def first_call_fails_now(
        conn: Any, cursor: Any, statement: str, *_: Any
    ) -> None:  # runs right before the second claim reads the key
        if not freed and statement.lstrip().startswith("SELECT") and "idempotency" in statement:
            freed.append(True)
            with psycopg.connect(sync_url, autocommit=True) as other:
                other.execute("DELETE FROM billing_idempotency_keys WHERE id = %s", (first.id,))

    event.listen(db.engine.sync_engine, "before_cursor_execute", first_call_fails_now)
    try:
        second = await claim(
            db,
            agent_id=agent_id,
            key="race-key-0001",
            tool="book-slot",
            arguments=args,
            stale_after=timedelta(minutes=15),
        )
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", first_call_fails_now)
    assert freed == [True]
    assert isinstance(second, Claim) and second.id != first.id


async def test_a_client_gone_before_its_request_is_read_is_not_logged_as_an_error(
    database_url: str, db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    # Was "Exception in ASGI application" with a ClientDisconnect traceback at error level,
    # once per client that hung up early (265 times in a full soak).
    settings = Settings(database_url=database_url, start_watchers=False, start_worker=False)
    runtime = Runtime(settings=settings, db=db)
    _, key = await make_agent(db, settings, funds=USDC)
    app = create_app(runtime, bind_host="127.0.0.1")
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    headers = {
        "host": "127.0.0.1:8000",
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "content-length": "120",
        "mcp-protocol-version": LATEST_MODERN_VERSION,  # what the SDK's client sends
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    configure_logging("INFO", "json")
    try:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)  # raised ClientDisconnect to the server before
    finally:
        configure_logging("INFO", "console")
    logged = capsys.readouterr()
    lines = (logged.out + logged.err).splitlines()
    assert any("request.client_disconnected" in line for line in lines)
    assert not [line for line in lines if '"level": "error"' in line]
