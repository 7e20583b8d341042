"""The provider's side of a booking through MCP: an agent that publishes a schedule accepts,
rejects, completes and cancels the bookings made on it; get-booking shows the refund and its
deadline; the booker dismisses a finished booking. After each path the ledger audit holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from mcp_support import body, call_ok, error_code
from provider_support import PRICE, TUE_9, Market, audited, earned, runtime_for, usdc, wallet

from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from agent_server.services.clock import release_escrow


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield runtime_for(database_url, db)


async def test_book_accept_with_location_complete_and_note(
    runtime: Runtime, clock: FakeClock
) -> None:
    market = await Market(runtime).open()
    booking_id = await market.book()
    async with market.provider() as provider:
        incoming = await call_ok(provider, "list-bookings", {"role": "provider"})
        assert [b["id"] for b in incoming["bookings"]] == [booking_id]
        assert (await call_ok(provider, "list-bookings", {"role": "booker"}))["bookings"] == []
        early = await provider.call_tool("complete-booking", {"booking_id": booking_id})
        assert error_code(early) == "BOOKING_CONFLICT"
        accepted = await call_ok(
            provider, "accept-booking", {"booking_id": booking_id, "location": "Room 4"}
        )
        assert accepted["booking"]["status"] == "accepted"
        moved = await call_ok(
            provider,
            "accept-booking",
            {"booking_id": booking_id, "location": "https://meet.example.com/x"},
        )
        assert moved["booking"]["location"] == "https://meet.example.com/x"
        assert earned(await wallet(provider)) == (0, PRICE)
    async with market.booker() as booker:
        seen = await call_ok(booker, "get-booking", {"booking_id": booking_id})
        assert seen["role"] == "booker"
        assert seen["booking"]["location"] == "https://meet.example.com/x"
        assert [h["to_status"] for h in seen["history"]][:2] == ["pending", "accepted"]
        too_early = await booker.call_tool("complete-booking", {"booking_id": booking_id})
        assert body(too_early)["error"]["details"]["reason"] == "not_ended"
    clock.set(TUE_9 + timedelta(hours=1, minutes=5))
    async with market.provider() as provider:
        done = await call_ok(
            provider, "complete-booking", {"booking_id": booking_id, "note": "went well"}
        )
        assert done["booking"]["status"] == "completed"
        assert "went well" in done["booking"]["notes"]
        again = await call_ok(
            provider, "complete-booking", {"booking_id": booking_id, "note": "follow-up sent"}
        )
        assert "follow-up sent" in again["booking"]["notes"]
        detail = await call_ok(provider, "get-booking", {"booking_id": booking_id})
        assert detail["role"] == "provider" and detail["refund_now"] is None
        assert earned(await wallet(provider)) == (0, PRICE)  # held through the dispute window
    clock.advance(timedelta(hours=73))
    async with runtime.db.uow() as uow:
        window = timedelta(hours=72)
        assert await release_escrow(uow, booking_id, window=window) is not None
        await uow.commit()
    async with market.provider() as provider:
        assert earned(await wallet(provider)) == (PRICE - PRICE // 10, 0)
    await audited(runtime.db)


async def test_reject_refunds_the_slot_price_in_full(runtime: Runtime) -> None:
    market = await Market(runtime).open()
    booking_id = await market.book()
    async with market.booker() as booker:
        before = usdc(await wallet(booker))
        stranger = await booker.call_tool("reject-booking", {"booking_id": booking_id})
        assert error_code(stranger) == "FORBIDDEN"
    async with market.provider() as provider:
        rejected = await call_ok(
            provider, "reject-booking", {"booking_id": booking_id, "reason": "away"}
        )
        assert rejected["booking"]["status"] == "rejected"
        assert rejected["refunded"] == {"amount": PRICE, "currency": "USDC", "text": "10.00 USDC"}
        assert earned(await wallet(provider)) == (0, 0)
        twice = await provider.call_tool("reject-booking", {"booking_id": booking_id})
        assert error_code(twice) == "BOOKING_CONFLICT"
    async with market.booker() as booker:
        assert usdc(await wallet(booker)) == before + PRICE
    await audited(runtime.db)


@pytest.mark.parametrize(
    ("who", "hours_before", "refund"),
    [
        ("booker", 25, PRICE),  # at least 24 h before the start: all back
        ("booker", 2, PRICE // 2),  # later: half back
        ("provider", 25, PRICE),  # the schedule's owner cancels: always all back
        ("provider", 2, PRICE),
    ],
)
async def test_cancel_by_each_role_in_each_refund_band(
    runtime: Runtime, clock: FakeClock, who: str, hours_before: int, refund: int
) -> None:
    market = await Market(runtime).open()
    start = TUE_9 + timedelta(days=1)
    booking_id = await market.book(start)
    clock.set(start - timedelta(hours=hours_before))
    async with market.booker() as booker:
        seen = await call_ok(booker, "get-booking", {"booking_id": booking_id})
        quoted = PRICE if hours_before >= 24 else PRICE // 2
        assert seen["refund_now"]["amount"] == quoted
        assert seen["full_refund_until"] == "2026-03-03T09:00:00Z"
        before = usdc(await wallet(booker))
    async with market.provider() as provider:
        seen = await call_ok(provider, "get-booking", {"booking_id": booking_id})
        assert seen["refund_now"]["amount"] == PRICE and seen["full_refund_until"] is None
    client = market.booker() if who == "booker" else market.provider()
    async with client as canceller:
        done = await call_ok(
            canceller, "cancel-booking", {"booking_id": booking_id, "reason_code": "no_time"}
        )
        assert done["booking"]["status"] == "canceled"
        assert done["booking"]["canceled_by"] == ("agent" if who == "booker" else "specialist")
        assert done["refunded"]["amount"] == refund
    async with market.booker() as booker:
        assert usdc(await wallet(booker)) == before + refund
    kept = PRICE - refund
    async with market.provider() as provider:
        assert earned(await wallet(provider)) == (kept - kept // 10, 0)
    await audited(runtime.db)


async def test_dismissed_bookings_leave_the_default_list(runtime: Runtime) -> None:
    market = await Market(runtime).open()
    first = await market.book()
    second = await market.book(TUE_9 + timedelta(hours=1), key="book-000002")
    async with market.booker() as booker:
        active = await booker.call_tool("cancel-booking", {"booking_id": first, "dismiss": True})
        assert body(active)["error"]["details"]["reason"] == "invalid_status"
        await call_ok(booker, "cancel-booking", {"booking_id": first})
        dismissed = await call_ok(booker, "cancel-booking", {"booking_id": first, "dismiss": True})
        assert dismissed["refunded"] is None
        listed = await call_ok(booker, "list-bookings", {})
        assert [b["id"] for b in listed["bookings"]] == [second]
        found = await call_ok(booker, "get-booking", {"booking_id": first})
        assert found["booking"]["status"] == "canceled"
    async with market.provider() as provider:
        # The provider's list keeps it: dismissing is the booker's own view.
        incoming = await call_ok(provider, "list-bookings", {"role": "provider"})
        assert {b["id"] for b in incoming["bookings"]} == {first, second}
        refused = await provider.call_tool("cancel-booking", {"booking_id": first, "dismiss": True})
        assert error_code(refused) == "FORBIDDEN"
    await audited(runtime.db)


async def test_a_late_refund_of_an_odd_price_is_quoted_and_paid_to_the_base_unit(
    runtime: Runtime, clock: FakeClock
) -> None:
    odd = 10_000_001  # half of it is 5,000,000.5: the booker's half is rounded up
    market = await Market(runtime, price=odd).open()
    booking_id = await market.book()
    clock.set(TUE_9 - timedelta(hours=23, minutes=59, seconds=59))
    async with market.booker() as booker:
        seen = await call_ok(booker, "get-booking", {"booking_id": booking_id})
        assert seen["refund_now"]["amount"] == 5_000_001
        assert seen["full_refund_until"] == "2026-03-02T09:00:00Z"
        done = await call_ok(booker, "cancel-booking", {"booking_id": booking_id})
        assert done["refunded"] == {
            "amount": 5_000_001,
            "currency": "USDC",
            "text": "5.000001 USDC",
        }
    async with market.provider() as provider:
        assert earned(await wallet(provider)) == (4_500_000, 0)  # 5,000,000 less 10 %
    await audited(runtime.db)
