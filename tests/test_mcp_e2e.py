"""End to end: ``agent-server serve`` and ``agent-server stdio`` as real processes, driven by the
SDK's own client, from registration (code read from a real SMTP server) to refunds."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_support import CLI, SPEC_TOOLS, body, call_ok, error_code, start_serve
from smtp_sink import SmtpSink, free_port

from agent_server.mcp.auth import KNOWN_KEY_SECONDS


def _env(db: Path, smtp: SmtpSink, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        AGENT_SERVER_SMTP_URL=smtp.url,
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="false",
        AGENT_SERVER_LOG_FORMAT="json",
        **extra,
    )
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink) -> Iterator[dict[str, Any]]:
    """A migrated database with demo specialists, served by a real process on a free port."""
    db = tmp_path_factory.mktemp("e2e") / "agent_server.db"
    port = free_port()
    env = _env(db, smtp, AGENT_SERVER_PORT=str(port))
    _cli(env, "db", "upgrade")
    _cli(env, "demo-data", "--specialists", "30", "--seed", "5")
    proc = start_serve(env, port, db.parent / "serve.log")
    base = f"http://127.0.0.1:{port}"
    yield {"base": base, "env": env, "db": db, "log": db.parent / "serve.log"}
    proc.terminate()
    proc.wait(timeout=20)


def _register(base: str, smtp: SmtpSink, email: str, *, verify: bool = True) -> tuple[int, str]:
    reply = httpx.post(
        f"{base}/api/agent/register",
        json={"name": "Booking agent", "email": email, "currency": "USDC"},
        timeout=30,
    )
    assert reply.status_code in (200, 201), reply.text
    data = reply.json()
    assert data["status"] == "pending_deposit"
    assert data["wallet"]["deposit_address"]
    if verify:
        code = smtp.latest_code(email)
        verified = httpx.post(
            f"{base}/api/agent/verify-email", json={"email": email, "code": code}, timeout=30
        )
        assert verified.status_code == 200, verified.text
    return int(data["agent_id"]), str(data["api_key"])


def _funded(served: dict[str, Any], smtp: SmtpSink, email: str, usdc: int) -> tuple[int, str]:
    """A registered, verified agent credited ``usdc`` USDC by the operator: its id and key."""
    agent_id, key = _register(served["base"], smtp, email)
    credit = ["admin", "credit", str(agent_id), "USDC", str(usdc), "--reason", "test top-up"]
    _cli(served["env"], *credit)
    return agent_id, key


def _http_client(base: str, key: str | None) -> Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    return Client(streamable_http_client(f"{base}/mcp", http_client=http))


def _usdc(wallet: dict[str, Any]) -> int:
    return int(next(w for w in wallet["wallets"] if w["currency"] == "USDC")["balance"]["amount"])


def _base(money: dict[str, Any] | None) -> int:
    """A Money's base units; 0 for null (a free call, nothing escrowed or refunded)."""
    return int(money["amount"]) if money else 0


async def _journey(client: Client) -> None:
    """register → ... → cancel, checking that usage and history agree with every receipt."""
    receipts: list[dict[str, Any]] = []

    async def paid(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        data = await call_ok(client, tool, arguments)
        if data.get("receipt"):
            receipts.append(data["receipt"])
        return data

    names = {t.name for t in (await client.list_tools()).tools}
    assert names == SPEC_TOOLS
    start = _usdc(await paid("get-wallet", {}))
    assert start == 1_000_000_000

    found = await paid("search-specialists", {"limit": 10, "sort": "next_available"})
    assert found["receipt"]["amount"] == {"amount": 10_000, "currency": "USDC", "text": "0.01 USDC"}
    hit = next(i for i in found["items"] if any(s["slots"] for s in i["schedules"]))
    slots = next(s["slots"] for s in hit["schedules"] if s["slots"])
    slot_id = next(iter(slots))  # the soonest slot's id

    viewed = await paid("view-profile", {"specialist_id": hit["id"]})
    assert viewed["receipt"]["free"] is True and viewed["receipt"]["amount"] is None
    assert viewed["profile"]["email"]

    weekly = {d: [["09:00", "12:00"]] for d in ("mon", "wed", "fri")}
    made = await paid(
        "create-schedule",
        {"timezone": "Europe/Berlin", "weekly_hours": weekly, "idempotency_key": "schedule-0001"},
    )
    assert _base(made["receipt"]["amount"]) == 100_000

    booked = await paid("book-slot", {"slot_id": slot_id, "idempotency_key": "booking-0001"})
    assert booked["booking"]["status"] in ("accepted", "pending")
    escrowed = _base(booked["receipt"]["escrowed"])
    assert _base(booked["receipt"]["amount"]) == 50_000  # the fee; the slot price: escrow

    retried = await call_ok(
        client, "book-slot", {"slot_id": slot_id, "idempotency_key": "booking-0001"}
    )
    assert retried["booking"]["id"] == booked["booking"]["id"]
    assert retried["receipt"]["call_id"] == booked["receipt"]["call_id"]

    cancelled = await call_ok(
        client, "cancel-booking", {"booking_id": booked["booking"]["id"], "reason_code": "no_time"}
    )
    assert cancelled["booking"]["status"] == "canceled"
    refunded = _base(cancelled["refunded"])
    assert 0 < refunded <= escrowed or escrowed == 0

    end = _usdc(await call_ok(client, "get-wallet", {}))
    charged = sum(_base(r["amount"]) for r in receipts)
    assert end == start - charged - escrowed + refunded

    usage = await call_ok(client, "get-usage", {})
    by_tool = {u["tool"]: u for u in usage["usage"]}
    for tool in ("search-specialists", "create-schedule", "book-slot"):
        assert by_tool[tool]["paid_calls"] == 1, by_tool[tool]
    assert by_tool["view-profile"]["free_calls"] == 1
    fees = sum(m["amount"] for u in usage["usage"] for m in u["amounts"] if m["currency"] == "USDC")
    assert fees == charged

    history = await call_ok(client, "list-transactions", {})
    assert sum(t["balance_change"]["amount"] for t in history["transactions"]) == end


async def test_the_whole_journey_over_streamable_http(
    served: dict[str, Any], smtp: SmtpSink
) -> None:
    _agent_id, key = _funded(served, smtp, "http-journey@example.com", 1000)
    async with _http_client(served["base"], key) as client:
        await _journey(client)
    log = served["log"].read_text()
    # The server logs every call (its loggers are bound once, for the life of the process)...
    assert "tool.call" in log and "search-specialists" in log and "book-slot" in log
    # ...and never a secret.
    assert key not in log
    assert smtp.latest_code("http-journey@example.com") not in log


async def test_unauthenticated_requests_get_401_with_www_authenticate(
    served: dict[str, Any],
) -> None:
    base = served["base"]
    for headers in ({}, {"Authorization": "Bearer as_live_not-a-real-key"}):
        reply = httpx.post(
            f"{base}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", **headers},
            timeout=10,
        )
        assert reply.status_code == 401
        challenge = reply.headers["www-authenticate"]
        assert challenge.startswith("Bearer")
        assert "resource_metadata=" in challenge
    metadata = httpx.get(f"{base}/.well-known/oauth-protected-resource/mcp", timeout=10)
    assert metadata.status_code == 200
    assert metadata.json()["resource"].endswith("/mcp")


async def test_an_unverified_agent_gets_email_not_verified_on_every_tool(
    served: dict[str, Any], smtp: SmtpSink
) -> None:
    _, key = _register(served["base"], smtp, "unverified@example.com", verify=False)
    async with _http_client(served["base"], key) as client:
        for tool in (await client.list_tools()).tools:
            result = await client.call_tool(tool.name, {})
            assert error_code(result) == "EMAIL_NOT_VERIFIED", tool.name
            assert "verify-email" in body(result)["error"]["message"]


async def test_the_whole_journey_over_stdio(served: dict[str, Any], smtp: SmtpSink) -> None:
    _agent_id, key = _funded(served, smtp, "stdio-journey@example.com", 1000)
    env = dict(served["env"], AGENT_SERVER_API_KEY=key)
    params = StdioServerParameters(command=CLI, args=["stdio"], env=env)
    async with Client(params) as client:
        await _journey(client)


async def test_unknown_host_and_origin_headers_are_refused_on_a_loopback_bind(
    served: dict[str, Any], smtp: SmtpSink
) -> None:
    _, key = _register(served["base"], smtp, "hosts@example.com", verify=False)
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {key}",
    }
    evil_host = httpx.post(
        f"{served['base']}/mcp",
        json=request,
        headers={**headers, "Host": "attacker.example"},
        timeout=10,
    )
    assert evil_host.status_code == 421
    evil_origin = httpx.post(
        f"{served['base']}/mcp",
        json=request,
        headers={**headers, "Origin": "https://attacker.example"},
        timeout=10,
    )
    assert evil_origin.status_code == 403


_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_a_repeated_tools_list_gets_the_answer_the_first_got_and_refusals_still_apply(
    served: dict[str, Any], smtp: SmtpSink
) -> None:
    """The server answers a repeated tools/list from what it wrote the first time: the same
    bytes but for the id. A request it refuses stays refused, and a key regenerated since is
    refused once the HTTP layer's memory of it has run out (about a second)."""
    base = served["base"]
    _, key = _funded(served, smtp, "listing@example.com", 1)
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {key}"}

    def listing(request_id: Any, **extra: str) -> httpx.Response:
        request = {"jsonrpc": "2.0", "id": request_id, "method": "tools/list"}
        return httpx.post(f"{base}/mcp", json=request, headers={**headers, **extra}, timeout=10)

    first, second, named = listing(1), listing(22), listing("list-3")
    assert [r.status_code for r in (first, second, named)] == [200, 200, 200]
    assert {t["name"] for t in first.json()["result"]["tools"]} == SPEC_TOOLS
    assert second.content == first.content.replace(b'"id":1,', b'"id":22,', 1)
    assert named.json() == {**first.json(), "id": "list-3"}
    assert int(second.headers["content-length"]) == len(second.content)
    traced = listing(23, **{"X-Request-Id": "listing-23", "traceparent": _TRACE})
    assert traced.content == second.content.replace(b'"id":22,', b'"id":23,', 1)
    assert traced.headers["x-request-id"] == "listing-23"
    assert traced.headers["traceparent"] == _TRACE
    # Requests the transport refuses are refused after a listing was kept, as before.
    assert listing(4, Host="attacker.example").status_code == 421
    assert listing(5, Origin="https://attacker.example").status_code == 403
    assert b'"tools"' not in listing(True).content  # not an id: the SDK takes no request
    cursor = {"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"cursor": 7}}
    bad_cursor = httpx.post(f"{base}/mcp", json=cursor, headers=headers, timeout=10)
    assert "error" in bad_cursor.json()
    assert listing(7, Authorization="Bearer as_live_not-a-real-key").status_code == 401
    regenerated = httpx.post(
        f"{base}/api/agent/regenerate-key", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert regenerated.status_code == 200, regenerated.text
    await asyncio.sleep(KNOWN_KEY_SECONDS + 0.2)
    assert listing(8).status_code == 401
    new_headers = {"Authorization": f"Bearer {regenerated.json()['api_key']}"}
    assert listing(9, **new_headers).json() == {**first.json(), "id": 9}


def test_host_checks_follow_the_bind_address_and_the_allow_list() -> None:
    from agent_server.kernel.config import Settings
    from agent_server.mcp.http import transport_security
    from agent_server.runtime import Runtime

    def security(host: str, **settings: Any) -> Any:
        runtime = Runtime.create(Settings(database_url="sqlite+aiosqlite:///:memory:", **settings))
        return transport_security(runtime, host)

    loopback = security("127.0.0.1")
    assert loopback.enable_dns_rebinding_protection
    assert "127.0.0.1:*" in loopback.allowed_hosts
    behind_proxy = security("0.0.0.0", allowed_hosts=["api.example.com:*"])
    assert behind_proxy.enable_dns_rebinding_protection
    assert "api.example.com:*" in behind_proxy.allowed_hosts
    open_bind = security("0.0.0.0")
    assert not open_bind.enable_dns_rebinding_protection


def _raw_call(base: str, key: str, tool: str) -> httpx.Response:
    return httpx.post(
        f"{base}/mcp",
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {}},
        },
        headers={
            "Accept": "application/json, text/event-stream",
            "Authorization": f"Bearer {key}",
        },
        timeout=30,
    )


async def test_a_revoked_key_or_a_suspension_takes_effect_on_the_next_call(
    served: dict[str, Any], smtp: SmtpSink
) -> None:
    """The HTTP layer remembers keys it has read; the call itself reads the agent again."""
    base = served["base"]
    agent_id, old = _funded(served, smtp, "revoked@example.com", 50)
    for _ in range(2):  # the second request is admitted from memory
        reply = _raw_call(base, old, "get-wallet")
        assert reply.status_code == 200 and not reply.json()["result"]["isError"], reply.text

    regenerated = httpx.post(
        f"{base}/api/agent/regenerate-key", headers={"Authorization": f"Bearer {old}"}, timeout=30
    )
    assert regenerated.status_code == 200, regenerated.text
    new = regenerated.json()["api_key"]

    refused = _raw_call(base, old, "get-wallet")  # remembered, but the call reads again
    assert refused.status_code == 200
    assert refused.json()["result"]["structuredContent"]["error"]["code"] == "UNAUTHORIZED"
    assert _raw_call(base, old, "get-wallet").status_code == 401  # and it is forgotten

    for _ in range(2):
        reply = _raw_call(base, new, "get-wallet")
        assert reply.status_code == 200 and not reply.json()["result"]["isError"], reply.text
    _cli(served["env"], "admin", "suspend", str(agent_id), "--reason", "test")
    suspended = _raw_call(base, new, "get-wallet")
    assert suspended.json()["result"]["structuredContent"]["error"]["code"] == "ACCOUNT_INACTIVE"
    again = _raw_call(base, new, "search-specialists")
    assert again.json()["result"]["structuredContent"]["error"]["code"] == "ACCOUNT_INACTIVE"
