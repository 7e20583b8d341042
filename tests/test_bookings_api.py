"""An agent's bookings over REST, as booker and as provider: list by role, get with the refund
and its deadline, accept with a location, reject, cancel in each role, complete, note, dismiss;
failures carry SPEC's error body. After each path the ledger audit holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from events_support import outbox
from mcp_support import call_ok
from provider_support import PRICE, TUE_9, Market, audited, runtime_for

from agent_server.api import build_api
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from agent_server.services.clock import release_escrow


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield runtime_for(database_url, db)


@pytest.fixture
async def rest(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_api(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    found: dict[str, Any] = response.json()["error"]
    assert found["status"] == status and found["message"]
    return found


async def ok(response: Any) -> dict[str, Any]:
    done = await response
    assert done.status_code == 200, done.text
    data: dict[str, Any] = done.json()
    return data


async def test_provider_accepts_with_a_location_and_completes_after_the_end(
    runtime: Runtime, rest: httpx.AsyncClient, clock: FakeClock
) -> None:
    market = await Market(runtime).open()
    booking_id = await market.book()
    provider, booker = auth(market.provider_key), auth(market.booker_key)
    incoming = await ok(rest.get("/agent/bookings", params={"role": "provider"}, headers=provider))
    assert [b["id"] for b in incoming["bookings"]] == [booking_id]
    mine = await ok(rest.get("/agent/bookings", params={"role": "booker"}, headers=provider))
    assert mine["bookings"] == []
    assert error(await rest.post(f"/agent/bookings/{booking_id}/accept", headers=booker), 403)
    accepted = await ok(
        rest.post(
            f"/agent/bookings/{booking_id}/accept", json={"location": "Room 4"}, headers=provider
        )
    )
    assert accepted["status"] == "accepted" and accepted["location"] == "Room 4"
    moved = await ok(
        rest.post(
            f"/agent/bookings/{booking_id}/location",
            json={"location": "https://meet.example.com/abc"},
            headers=provider,
        )
    )
    assert moved["location"] == "https://meet.example.com/abc"
    early = error(await rest.post(f"/agent/bookings/{booking_id}/complete", headers=booker), 409)
    assert early["code"] == "BOOKING_CONFLICT" and early["details"]["reason"] == "not_ended"
    wallet = await ok(rest.get("/agent/wallet", headers=provider))
    assert wallet["earnings"][0]["pending"]["amount"] == PRICE
    clock.set(TUE_9 + timedelta(hours=2))
    done = await ok(rest.post(f"/agent/bookings/{booking_id}/complete", headers=booker))
    assert done["status"] == "completed"
    noted = await ok(
        rest.post(f"/agent/bookings/{booking_id}/note", json={"note": "thanks"}, headers=provider)
    )
    assert noted["notes"] == "thanks"
    seen = await ok(rest.get(f"/agent/bookings/{booking_id}", headers=booker))
    assert seen["role"] == "booker" and seen["refund_now"] is None
    assert [h["to_status"] for h in seen["history"]] == [
        "pending",
        "accepted",
        "accepted",
        "completed",
        "completed",
    ]
    clock.advance(timedelta(hours=73))  # past the dispute window: the clock pays out
    async with runtime.db.uow() as uow:
        assert await release_escrow(uow, booking_id, window=timedelta(hours=72)) is not None
        await uow.commit()
    wallet = await ok(rest.get("/agent/wallet", headers=provider))
    paid = wallet["earnings"][0]
    assert (paid["paid"]["amount"], paid["pending"]["amount"]) == (PRICE - PRICE // 10, 0)
    await audited(runtime.db)


async def test_reject_refunds_in_full_and_the_booker_dismisses_it(
    runtime: Runtime, rest: httpx.AsyncClient
) -> None:
    market = await Market(runtime).open()
    booking_id = await market.book()
    other = await market.book(TUE_9 + timedelta(hours=1), key="book-000002")
    provider, booker = auth(market.provider_key), auth(market.booker_key)
    before = await ok(rest.get("/agent/wallet", headers=booker))
    rejected = await ok(
        rest.post(f"/agent/bookings/{booking_id}/reject", json={"reason": "ill"}, headers=provider)
    )
    assert rejected["booking"]["status"] == "rejected"
    assert rejected["refunded"] == {"amount": PRICE, "currency": "USDC", "text": "10.00 USDC"}
    after = await ok(rest.get("/agent/wallet", headers=booker))
    gained = int(after["wallets"][0]["balance"]["amount"]) - int(
        before["wallets"][0]["balance"]["amount"]
    )
    assert gained == PRICE
    assert error(await rest.post(f"/agent/bookings/{other}/dismiss", headers=booker), 409)
    assert error(await rest.post(f"/agent/bookings/{booking_id}/dismiss", headers=provider), 403)
    dismissed = await ok(rest.post(f"/agent/bookings/{booking_id}/dismiss", headers=booker))
    assert dismissed["dismissed"] is True
    listed = await ok(rest.get("/agent/bookings", headers=booker))
    assert [b["id"] for b in listed["bookings"]] == [other]
    everything = await ok(
        rest.get("/agent/bookings", params={"include_dismissed": "true"}, headers=booker)
    )
    assert {b["id"] for b in everything["bookings"]} == {booking_id, other}
    await audited(runtime.db)


@pytest.mark.parametrize(
    ("who", "hours_before", "refund"),
    [("booker", 30, PRICE), ("booker", 3, PRICE // 2), ("provider", 3, PRICE)],
)
async def test_cancel_in_each_role_refunds_what_get_booking_quoted(
    runtime: Runtime,
    rest: httpx.AsyncClient,
    clock: FakeClock,
    who: str,
    hours_before: int,
    refund: int,
) -> None:
    market = await Market(runtime).open()
    start = TUE_9 + timedelta(days=2)
    booking_id = await market.book(start)
    clock.set(start - timedelta(hours=hours_before))
    key = market.booker_key if who == "booker" else market.provider_key
    seen = await ok(rest.get(f"/agent/bookings/{booking_id}", headers=auth(key)))
    assert seen["refund_now"]["amount"] == refund
    if who == "booker":
        assert seen["full_refund_until"] == "2026-03-04T09:00:00Z"
    cancelled = await ok(
        rest.post(
            f"/agent/bookings/{booking_id}/cancel",
            json={"reason_code": "no_time"},
            headers=auth(key),
        )
    )
    assert cancelled["refunded"]["amount"] == refund
    again = error(await rest.post(f"/agent/bookings/{booking_id}/cancel", headers=auth(key)), 409)
    assert again["details"]["reason"] == "invalid_status"
    await audited(runtime.db)


async def test_rest_mcp_and_the_webhook_show_a_booking_alike_with_canceled_by(
    runtime: Runtime, rest: httpx.AsyncClient
) -> None:
    market = await Market(runtime).open()
    booking_id = await market.book()
    provider = auth(market.provider_key)
    await ok(rest.post(f"/agent/bookings/{booking_id}/cancel", headers=provider))
    over_rest = (await ok(rest.get(f"/agent/bookings/{booking_id}", headers=provider)))["booking"]
    async with market.provider() as client:
        over_mcp = (await call_ok(client, "get-booking", {"booking_id": booking_id}))["booking"]
    # One model serves both surfaces: the same fields with the same values.
    assert over_rest == over_mcp
    assert over_rest["status"] == "canceled" and over_rest["canceled_by"] == "specialist"
    assert "cancelled_by" not in over_rest
    payloads = [
        e.payload["booking"]
        for e in await outbox(runtime.db)
        if e.type == "booking.cancelled" and e.payload["booking"]["id"] == booking_id
    ]
    assert payloads, "no booking.cancelled event"
    same = ("slot_id", "status", "canceled_by", "cancel_reason_code", "rescheduled_to_id")
    for payload in payloads:  # one per agent the booking concerns
        assert "cancelled_by" not in payload
        assert {k: payload[k] for k in same} == {k: over_rest[k] for k in same}


async def test_unknown_foreign_and_malformed_requests_get_the_error_body(
    runtime: Runtime, rest: httpx.AsyncClient
) -> None:
    market = await Market(runtime).open()
    booking_id = await market.book()
    provider = auth(market.provider_key)
    assert error(await rest.get("/agent/bookings/987654321", headers=provider), 404)
    assert error(await rest.get(f"/agent/bookings/{booking_id}"), 401)["code"] == "UNAUTHORIZED"
    bad = error(
        await rest.post(
            f"/agent/bookings/{booking_id}/accept", json={"location": 5, "x": 1}, headers=provider
        ),
        422,
    )
    assert bad["code"] == "VALIDATION_ERROR"
    odd = error(await rest.get("/agent/bookings", params={"role": "x"}, headers=provider), 422)
    assert odd["code"] == "VALIDATION_ERROR"
    seen = await ok(rest.get(f"/agent/bookings/{booking_id}", headers=provider))
    assert seen["booking"]["status"] == "pending"  # nothing changed
