"""No API key, verification or sign-in code, webhook secret, calendar token or session token
reaches a log line across a whole flow, in both log formats.

The flow runs the whole app in process (REST, MCP over streamable HTTP with a bearer key,
the dashboard, the calendar feed) and the webhook worker against a real receiver: sign up
with a wrong code first, verify, rotate the webhook secret, take a calendar token,
regenerate the key and try the old one, get funded, search and book over MCP (and try a
wrong key), deliver the booking's webhooks, read the feed, sign in to the dashboard (a wrong
code first). Everything written to stdout, stderr and the logging module is then searched
for every secret handed out on the way. (Sign-up alone: ``test_accounts_secrets_in_logs``.)
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import httpx2
import pytest
from accounts_support import outbox_code, settings_for, wrong_code
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from webhook_receiver import Receiver

from agent_server.accounts.status import activate_if_pending
from agent_server.app import create_app
from agent_server.booking.demo import load_demo_data
from agent_server.events.worker import DeliveryWorker, WorkerConfig
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.logs import configure_logging
from agent_server.kernel.store import Database, make_engine
from agent_server.runtime import Runtime
from billing.wallet_funds import adjust_balance

BASE = "http://127.0.0.1:8000"
EMAIL = "whole-flow@example.com"


pytestmark = pytest.mark.usefixtures("restore_logging")


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


async def _flow(runtime: Runtime, receiver: Receiver) -> list[str]:
    """The whole flow; every secret it was handed."""
    secrets: list[str] = []
    app = create_app(runtime, bind_host="127.0.0.1")
    transport = httpx.ASGITransport(app=app, client=("203.0.113.20", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE) as web,
    ):
        registered = await web.post(
            "/api/agent/register",
            json={"name": "Flow", "email": EMAIL, "callback_url": receiver.url},
        )
        assert registered.status_code == 201, registered.text
        key, agent_id = registered.json()["api_key"], registered.json()["agent_id"]
        code = await outbox_code(runtime.db, EMAIL)
        secrets += [key, code]
        await web.post("/api/agent/verify-email", json={"email": EMAIL, "code": wrong_code(code)})
        verified = await web.post("/api/agent/verify-email", json={"email": EMAIL, "code": code})
        assert verified.status_code == 200, verified.text

        bearer = {"Authorization": f"Bearer {key}"}
        secret = (await web.post("/api/agent/webhook-secret", headers=bearer)).json()
        secrets.append(secret["webhook_secret"])
        feed = (await web.post("/api/agent/calendar-token", headers=bearer)).json()["feed_url"]
        secrets.append(feed.rsplit("/", 1)[-1].removesuffix(".ics"))
        rotated = await web.post("/api/agent/regenerate-key", headers=bearer)
        old, key = key, rotated.json()["api_key"]
        secrets.append(key)
        assert (await web.get("/api/agent/me", headers=bearer)).status_code == 401  # the old one

        async with runtime.db.uow() as uow:
            await adjust_balance(
                uow, agent_id=agent_id, currency="USDC", amount=500 * 10**6, reason="top-up"
            )
            await activate_if_pending(uow, agent_id, "top-up")
            await uow.commit()
        await _mcp_calls(app, key)
        await _mcp_calls(app, old, refused=True)

        worker = DeliveryWorker(runtime.db, WorkerConfig.from_settings(runtime.settings))
        assert await worker.run_once() > 0
        receiver.wait_for(1)
        assert (await web.get(feed.removeprefix(BASE))).status_code == 200

        secrets += await _dashboard_sign_in(web, runtime)
    assert old in secrets
    return secrets


async def _mcp_calls(app: Any, key: str, *, refused: bool = False) -> None:
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        headers={"Authorization": f"Bearer {key}"},
        base_url=BASE,
        timeout=30,
    )
    client = Client(streamable_http_client(f"{BASE}/mcp", http_client=http))
    if refused:
        with pytest.raises(Exception):  # noqa: B017 (401 before any MCP message)
            async with client:
                pass
        await http.aclose()
        return
    async with http, client:
        found = await client.call_tool("search-specialists", {"sort": "next_available"})
        assert not found.is_error, found.structured_content
        data = found.structured_content or {}
        slot = next(
            slot_id for i in data["items"] for sc in i["schedules"] for slot_id in sc["slots"]
        )
        booked = await client.call_tool(
            "book-slot", {"slot_id": slot, "idempotency_key": "flow-booking-0001"}
        )
        assert not booked.is_error, booked.structured_content
        assert not (await client.call_tool("get-wallet", {})).is_error


async def _dashboard_sign_in(web: httpx.AsyncClient, runtime: Runtime) -> list[str]:
    page = await web.get("/sign-in")
    form = {"csrf_token": _csrf(page.text), "email": EMAIL, "next": "/"}
    asked = await web.post("/sign-in", data=form)
    assert asked.status_code == 200, asked.text[:500]
    code = await outbox_code(runtime.db, EMAIL)
    wrong = await web.post("/sign-in/code", data={**form, "code": wrong_code(code)})
    assert wrong.status_code == 422
    signed = await web.post("/sign-in/code", data={**form, "code": code})
    assert signed.status_code == 303, signed.text[:500]
    session = signed.cookies.get("as_session") or web.cookies.get("as_session")
    assert session
    return [code, session]


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_a_whole_flow_logs_no_secret(
    fmt: str,
    database_url: str,
    clock: FakeClock,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_logging("DEBUG", fmt)
    caplog.set_level(logging.DEBUG)
    settings = settings_for(database_url, webhook_allow_private=True)
    runtime = Runtime(settings=settings, db=Database(make_engine(database_url), clock))
    await load_demo_data(runtime.db, 5, seed=2)
    with Receiver() as receiver:
        secrets = await _flow(runtime, receiver)
    captured = capsys.readouterr()
    lines = (captured.out + captured.err + caplog.text).splitlines()
    # The test's own HTTP client logs the URLs it requests (the calendar feed's among them);
    # the server never requests its own address.
    logged = "\n".join(line for line in lines if not ("HTTP Request:" in line and BASE in line))
    for event in ("agent.registered", "agent.email_verified", "tool.call", "webhook."):
        assert event in logged, f"the flow did not log {event}"
    leaked = [s[:6] + "..." for s in secrets if s in logged]
    assert leaked == [], f"secrets in the log: {leaked}"
    # Key prefixes may be logged; the random part after them may not.
    assert not [s for s in secrets if s.startswith("as_") and s[12:24] in logged]
