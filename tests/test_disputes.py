"""Disputes: the booker contests a session through MCP (or REST) within the window after its
end, the escrow stays held past the window, and an operator's refund, release or split settles
it exactly once, recording who, when and why. After each path the ledger audit holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from mcp_support import body, call_ok, error_code
from provider_support import PRICE, TUE_9, Market, audited, earned, runtime_for, usdc, wallet
from sqlalchemy import select

from agent_server.app import create_app
from agent_server.booking.models import Booking, BookingChange, Dispute
from agent_server.events.models import OutboxEvent
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import BookingConflict, ValidationFailed
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from agent_server.services.clock import BookingClock, ClockConfig
from agent_server.services.disputes import dispute_queue, resolve_dispute

END = TUE_9 + timedelta(hours=1)
WINDOW = timedelta(hours=72)
COMMISSION = 10  # percent


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield runtime_for(database_url, db)


async def ended_booking(market: Market, clock: FakeClock, *, complete: bool = True) -> int:
    """A booking accepted by its provider and, once its slot ended, completed."""
    booking_id = await market.book()
    async with market.provider() as provider:
        await call_ok(provider, "accept-booking", {"booking_id": booking_id})
    clock.set(END + timedelta(minutes=10))
    if complete:
        async with market.provider() as provider:
            await call_ok(provider, "complete-booking", {"booking_id": booking_id})
    return booking_id


async def dispute(market: Market, booking_id: int, **extra: Any) -> dict[str, Any]:
    arguments = {"booking_id": booking_id, "reason_code": "no_show", "text": "Nobody came."}
    async with market.booker() as booker:
        return await call_ok(booker, "open-dispute", {**arguments, **extra})


async def resolve(runtime: Runtime, booking_id: int, resolution: str, **extra: Any) -> Any:
    async with runtime.db.uow() as uow:
        done = await resolve_dispute(
            uow,
            booking_id,
            resolution=resolution,
            operator="dashboard:ops@example.com",
            note="Checked the call log.",
            **extra,
        )
        await uow.commit()
    return done


async def events_of(db: Database, booking_id: int) -> list[str]:
    async with db.uow() as uow:
        rows = (
            await uow.session.execute(
                select(OutboxEvent.type, OutboxEvent.payload).order_by(OutboxEvent.id)
            )
        ).all()
    return [t for t, p in rows if p.get("booking", {}).get("id") == booking_id]


async def balances(market: Market) -> tuple[int, int]:
    """(the booker's USDC, what the provider was paid)."""
    async with market.booker() as booker:
        paid_booker = usdc(await wallet(booker))
    async with market.provider() as provider:
        paid, _pending = earned(await wallet(provider))
    return paid_booker, paid


@pytest.mark.parametrize(
    ("resolution", "refund", "provider_gets"),
    [
        ("refund", PRICE, 0),
        ("release", 0, PRICE - PRICE * COMMISSION // 100),
        ("split", 4_000_000, 6_000_000 - 6_000_000 * COMMISSION // 100),
    ],
)
async def test_book_complete_dispute_and_each_resolution(
    runtime: Runtime, clock: FakeClock, resolution: str, refund: int, provider_gets: int
) -> None:
    market = await Market(runtime).open()
    booking_id = await ended_booking(market, clock)
    opened = await dispute(market, booking_id, reason_code="ended_early", text="Left at 9:20.")
    assert opened["booking"]["status"] == "in_dispute"
    assert opened["dispute"]["status"] == "open"
    assert opened["dispute"]["reason_code"] == "ended_early"
    before_booker, before_paid = await balances(market)
    assert before_paid == 0
    # The window passes: a disputed escrow stays held.
    clock.set(END + WINDOW + timedelta(hours=1))
    assert (await BookingClock(runtime.db, ClockConfig()).tick()).released == 0
    assert await balances(market) == (before_booker, 0)

    extra = {"refund_amount": refund} if resolution == "split" else {}
    done = await resolve(runtime, booking_id, resolution, **extra)
    assert done.booking.status == "dispute_done"
    assert done.settlement is not None and done.settlement.refunded == refund
    assert await balances(market) == (before_booker + refund, provider_gets)
    async with runtime.db.uow() as uow:
        row = (
            await uow.session.execute(select(Dispute).where(Dispute.booking_id == booking_id))
        ).scalar_one()
        assert (row.status, row.resolution, row.refund_amount) == ("resolved", resolution, refund)
        assert row.resolved_by == "dashboard:ops@example.com"
        assert row.resolution_note == "Checked the call log."
        assert row.resolved_at == clock.now()
        history = (
            await uow.session.execute(
                select(BookingChange.to_status)
                .where(BookingChange.booking_id == booking_id)
                .order_by(BookingChange.id)
            )
        ).scalars()
        assert list(history)[-2:] == ["in_dispute", "dispute_done"]
    # Settled once: a second resolution is refused and moves nothing.
    with pytest.raises(BookingConflict):
        await resolve(runtime, booking_id, "refund")
    assert await balances(market) == (before_booker + refund, provider_gets)
    assert (await BookingClock(runtime.db, ClockConfig()).tick()).total() == 0
    events = await events_of(runtime.db, booking_id)
    # One of each to the booker and one to the agent owning the schedule.
    assert events.count("booking.disputed") == 2 and events.count("dispute.resolved") == 2
    async with market.booker() as booker:
        seen = await call_ok(booker, "get-booking", {"booking_id": booking_id})
    assert seen["booking"]["status"] == "dispute_done"
    await audited(runtime.db)


async def test_an_accepted_session_can_be_disputed_before_the_clock_completes_it(
    runtime: Runtime, clock: FakeClock
) -> None:
    market = await Market(runtime).open()
    booking_id = await ended_booking(market, clock, complete=False)
    opened = await dispute(market, booking_id)
    assert opened["booking"]["status"] == "in_dispute"
    clock.set(END + timedelta(hours=3))
    assert (await BookingClock(runtime.db, ClockConfig()).tick()).completed == 0
    await audited(runtime.db)


async def test_disputes_outside_the_window_or_by_others_are_refused_and_change_nothing(
    runtime: Runtime, clock: FakeClock
) -> None:
    market = await Market(runtime).open()
    booking_id = await market.book()
    async with market.provider() as provider:
        await call_ok(provider, "accept-booking", {"booking_id": booking_id})
    arguments = {"booking_id": booking_id, "reason_code": "no_show", "text": "Nobody came."}
    async with market.booker() as booker:
        early = await booker.call_tool("open-dispute", arguments)
        assert body(early)["error"]["details"]["reason"] == "not_ended"
        # The next step is about the booking, not a slot to search for again.
        assert body(early)["error"]["next_step"].startswith("Call again after the session ends")
        bad = await booker.call_tool("open-dispute", {**arguments, "reason_code": "bored"})
        assert error_code(bad) == "VALIDATION_ERROR"
        empty = await booker.call_tool("open-dispute", {**arguments, "text": ""})
        assert error_code(empty) == "VALIDATION_ERROR"
    clock.set(END + timedelta(minutes=1))
    async with market.provider() as provider:
        stranger = await provider.call_tool("open-dispute", arguments)
        assert error_code(stranger) == "FORBIDDEN"
        await call_ok(provider, "complete-booking", {"booking_id": booking_id})
    clock.set(END + WINDOW)
    async with market.booker() as booker:
        late = await booker.call_tool("open-dispute", arguments)
        assert error_code(late) == "BOOKING_CONFLICT"
        assert body(late)["error"]["details"]["reason"] == "dispute_window_closed"
        assert "dispute window has closed" in body(late)["error"]["next_step"]
        assert "search again" not in late.content[0].text
        missing = await booker.call_tool("open-dispute", {**arguments, "booking_id": 10**9})
        assert error_code(missing) == "NOT_FOUND"
    async with runtime.db.uow() as uow:
        assert (await uow.session.execute(select(Dispute))).first() is None
        row = await uow.session.get(Booking, booking_id)
        assert row is not None and row.status == "completed"
    # The window closed without a dispute: the provider is paid.
    assert (await BookingClock(runtime.db, ClockConfig()).tick()).released == 1
    _, paid = await balances(market)
    assert paid == PRICE - PRICE * COMMISSION // 100
    await audited(runtime.db)


async def test_bad_resolutions_are_refused_before_anything_moves(
    runtime: Runtime, clock: FakeClock
) -> None:
    market = await Market(runtime).open()
    booking_id = await ended_booking(market, clock)
    await dispute(market, booking_id)
    before = await balances(market)
    for resolution, extra, field in (
        ("halve", {}, "resolution"),
        ("split", {}, "refund_amount"),
        ("split", {"refund_amount": PRICE}, "refund_amount"),
        ("refund", {"refund_amount": 5}, "refund_amount"),
    ):
        with pytest.raises(ValidationFailed) as refused:
            await resolve(runtime, booking_id, resolution, **extra)
        assert refused.value.details["fields"][0]["field"] == field
    async with runtime.db.uow() as uow:
        with pytest.raises(ValidationFailed):
            await resolve_dispute(uow, booking_id, resolution="refund", operator="ops", note="  ")
        queued, _page = await dispute_queue(uow)
        assert [(q.booking.id, q.held, q.currency) for q in queued] == [(booking_id, PRICE, "USDC")]
    assert await balances(market) == before
    await audited(runtime.db)


async def test_the_booker_disputes_over_rest(runtime: Runtime, clock: FakeClock) -> None:
    market = await Market(runtime).open()
    booking_id = await ended_booking(market, clock)
    app = create_app(runtime, bind_host="127.0.0.1")
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {market.booker_key}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        path = f"/api/agent/bookings/{booking_id}/dispute"
        bad = await api.post(path, json={"reason_code": "no_show"}, headers=headers)
        assert bad.status_code == 422
        other = {"Authorization": f"Bearer {market.provider_key}"}
        sent = {"reason_code": "no_show", "text": "Nobody came."}
        assert (await api.post(path, json=sent, headers=other)).status_code == 403
        made = await api.post(path, json=sent, headers=headers)
        assert made.status_code == 200, made.text
        assert made.json()["booking"]["status"] == "in_dispute"
        assert made.json()["dispute"]["status"] == "open"
        again = await api.post(path, json=sent, headers=headers)
        assert again.status_code == 409
        assert again.json()["error"]["details"]["reason"] == "invalid_status"
    await audited(runtime.db)
