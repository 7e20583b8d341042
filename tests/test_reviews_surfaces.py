"""Reviews through the MCP tools (the SDK's client) and the REST route, with real bookings paid
from real wallets: review once after completion, the refusals, and the profile showing it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp_support import body, call_ok, error_code, make_agent
from test_bookings import MON_9, make_schedule, specialist_schedule

from agent_server.api import build_api
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import CancelledBy
from agent_server.booking.schedules import ScheduleOwner
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from agent_server.services import bookings as steps

USDC = 1_000_000


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield Runtime(settings=Settings(database_url=database_url), db=db)


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def complete(runtime: Runtime, booking_id: int) -> None:
    async with runtime.db.uow() as uow:
        await steps.complete_booking(
            uow, booking_id, CancelledBy.SYSTEM, None, policy=runtime.billing.prices.booking
        )
        await uow.commit()


async def test_leave_review_through_mcp(runtime: Runtime, clock: FakeClock) -> None:
    specialist, schedule = await specialist_schedule(runtime.db)
    _, key = await make_agent(runtime.db, runtime.settings, funds=500 * USDC)
    _, stranger = await make_agent(runtime.db, runtime.settings, funds=5 * USDC)
    async with client_for(runtime, key) as client:
        booked = []
        for hour in (0, 1):
            made = await call_ok(
                client,
                "book-slot",
                {
                    "slot_id": make_slot_id(schedule, MON_9 + timedelta(hours=hour)),
                    "idempotency_key": f"review-booking-{hour}",
                },
            )
            booked.append(made["booking"]["id"])
        early = await client.call_tool("leave-review", {"booking_id": booked[0], "rating": 5})
        assert error_code(early) == "BOOKING_CONFLICT"
        assert body(early)["error"]["details"]["reason"] == "invalid_status"

        clock.set(MON_9 + timedelta(hours=3))
        await complete(runtime, booked[0])
        done = await call_ok(
            client,
            "leave-review",
            {"booking_id": booked[0], "rating": 4, "text": "Patient and precise."},
        )
        assert done["review"]["rating"] == 4 and done["receipt"] is None  # free
        again = await client.call_tool("leave-review", {"booking_id": booked[0], "rating": 1})
        assert error_code(again) == "BOOKING_CONFLICT"
        assert body(again)["error"]["details"]["reason"] == "already_reviewed"
        bad = await client.call_tool("leave-review", {"booking_id": booked[0], "rating": 0})
        assert error_code(bad) == "VALIDATION_ERROR"
        assert "rating" in str(body(bad)["error"]["details"])
        missing = await client.call_tool("leave-review", {"booking_id": 10**12, "rating": 3})
        assert error_code(missing) == "NOT_FOUND"

        profile = await call_ok(client, "view-profile", {"specialist_id": specialist})
        shown = profile["profile"]
        assert (shown["rating"], shown["review_count"]) == (4.0, 1)
        assert [(r["rating"], r["text"]) for r in shown["reviews"]] == [(4, "Patient and precise.")]
        text = (await client.call_tool("view-profile", {"specialist_id": specialist})).content
        assert "Review 4/5" in text[0].text  # type: ignore[union-attr]
    async with client_for(runtime, stranger) as client:
        foreign = await client.call_tool("leave-review", {"booking_id": booked[1], "rating": 2})
        assert error_code(foreign) == "FORBIDDEN"


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_api(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_leave_review_over_rest(
    runtime: Runtime, api: httpx.AsyncClient, clock: FakeClock
) -> None:
    specialist, schedule = await specialist_schedule(runtime.db)
    _, key = await make_agent(runtime.db, runtime.settings, funds=500 * USDC)
    auth = {"Authorization": f"Bearer {key}"}
    async with client_for(runtime, key) as client:
        made = await call_ok(
            client,
            "book-slot",
            {"slot_id": make_slot_id(schedule, MON_9), "idempotency_key": "rest-review-1"},
        )
    booking_id = made["booking"]["id"]
    url = f"/agent/bookings/{booking_id}/review"

    async def post(payload: dict[str, Any], headers: dict[str, str] = auth) -> httpx.Response:
        return await api.post(url, json=payload, headers=headers)

    early = await post({"rating": 5})
    assert early.status_code == 409
    assert early.json()["error"]["details"]["reason"] == "invalid_status"
    clock.set(MON_9 + timedelta(hours=2))
    await complete(runtime, booking_id)
    assert (await post({"rating": 5}, {})).status_code == 401
    bad = await post({"rating": 9})
    assert bad.status_code == 422
    assert "rating" in str(bad.json()["error"]["details"])
    done = await post({"rating": 5, "text": "Great."})
    assert done.status_code == 201, done.text
    assert done.json()["rating"] == 5 and done.json()["created_at"].endswith("Z")
    again = await post({"rating": 3})
    assert again.status_code == 409
    assert again.json()["error"]["details"]["reason"] == "already_reviewed"
    async with client_for(runtime, key) as client:
        profile = await call_ok(client, "view-profile", {"specialist_id": specialist})
    assert (profile["profile"]["rating"], profile["profile"]["review_count"]) == (5.0, 1)


async def test_an_agent_providers_rating_is_on_its_public_profile(
    runtime: Runtime, api: httpx.AsyncClient, clock: FakeClock
) -> None:
    provider, _ = await make_agent(runtime.db, runtime.settings, funds=5 * USDC)
    _, key = await make_agent(runtime.db, runtime.settings, funds=500 * USDC)
    schedule = await make_schedule(
        runtime.db, ScheduleOwner.agent(provider), price_amount=2 * USDC, price_currency="USDC"
    )
    async with client_for(runtime, key) as client:
        made = await call_ok(
            client,
            "book-slot",
            {"slot_id": make_slot_id(schedule, MON_9), "idempotency_key": "agent-review-1"},
        )
    before = (await api.get(f"/agents/{provider}")).json()["agent"]
    assert (before["rating"], before["review_count"]) == (0.0, 0)
    clock.set(MON_9 + timedelta(hours=2))
    await complete(runtime, made["booking"]["id"])
    done = await api.post(
        f"/agent/bookings/{made['booking']['id']}/review",
        json={"rating": 3, "text": "Answered, slowly."},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert done.status_code == 201, done.text
    after = (await api.get(f"/agents/{provider}")).json()["agent"]
    assert (after["rating"], after["review_count"]) == (3.0, 1)
