"""Housekeeping: a hold left by a crashed call goes back to the wallet; old idempotency keys,
rate counters of ended windows and long-settled webhook events are purged."""

from __future__ import annotations

from datetime import timedelta

import pytest
from mcp_support import make_agent
from sqlalchemy import func, select, update

from agent_server.accounts.models import RateCounter
from agent_server.accounts.ratelimit import hit, purge_rate_counters
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import Schedule
from agent_server.booking.next_free import refresh_passed
from agent_server.events.models import OutboxEvent, OutboxStatus, WebhookDelivery
from agent_server.events.outbox import BOOKING_CREATED, emit
from agent_server.events.retention import purge_settled_events
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.maintenance import run_once
from agent_server.runtime import Runtime
from billing.idempotency import Replay, claim, complete
from billing.meter import Admission, place_hold
from billing.models import IdempotencyKey
from billing.wallet_funds import balances


async def test_a_crashed_calls_hold_and_old_keys_are_cleaned_up(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    runtime = Runtime(settings=Settings(database_url=database_url), db=db)
    agent_id, _ = await make_agent(db, runtime.settings, funds=1_000_000)
    # A call placed its hold and died before running.
    await place_hold(
        db,
        Admission(agent_id, "create-schedule"),
        call_id="crashed-call",
        fee_usd_micros=100_000,
        config=runtime.billing,
    )
    held = await claim(
        db,
        agent_id=agent_id,
        key="key-000001",
        tool="quote",
        arguments={},
        stale_after=timedelta(minutes=15),
    )
    assert not isinstance(held, Replay)
    async with db.uow() as uow:
        await complete(uow, held, {"ok": True}, None)
        await uow.commit()
    async with db.uow() as uow:
        assert (await balances(uow, agent_id))["USDC"] == 900_000

    assert await run_once(runtime) == (0, 0)  # nothing is stale yet
    clock.advance(runtime.billing.stale_hold_after + timedelta(seconds=1))
    assert await run_once(runtime) == (1, 0)
    async with db.uow() as uow:
        assert (await balances(uow, agent_id))["USDC"] == 1_000_000
    clock.advance(timedelta(hours=24))
    assert await run_once(runtime) == (0, 1)
    async with db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(IdempotencyKey)) == 0


async def _hit(db: Database, key: str, window_seconds: int) -> None:
    async with db.uow() as uow:
        await hit(uow, key, limit=10, window_seconds=window_seconds)
        await uow.commit()


async def _counter_keys(db: Database) -> set[str]:
    async with db.uow() as uow:
        return set((await uow.session.scalars(select(RateCounter.key))).all())


async def test_rate_counters_of_ended_windows_are_purged(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    runtime = Runtime(settings=Settings(database_url=database_url), db=db)
    await _hit(db, "signup:ip:203.0.113.1", 3600)
    await _hit(db, "agent:1:search-specialists", 60)
    await _hit(db, "signup:ip:203.0.113.2", 3600)
    await run_once(runtime)
    assert len(await _counter_keys(db)) == 3  # every window is current

    clock.advance(timedelta(minutes=61))
    await _hit(db, "agent:2:book-slot", 60)  # a new key
    await _hit(db, "signup:ip:203.0.113.2", 3600)  # an old key's new window
    await run_once(runtime)
    assert await _counter_keys(db) == {"agent:2:book-slot", "signup:ip:203.0.113.2"}
    # Purging changed no decision: the key counts from one in its new window.
    async with db.uow() as uow:
        decision = await hit(uow, "signup:ip:203.0.113.1", limit=1, window_seconds=3600)
        await uow.rollback()
    assert decision.allowed and decision.hits == 1

    clock.advance(timedelta(hours=2))
    await run_once(runtime)
    assert await _counter_keys(db) == set()


async def test_rate_counters_are_purged_in_bounded_batches(db: Database, clock: FakeClock) -> None:
    for n in range(5):
        await _hit(db, f"agent:{n}:get-wallet", 60)
    clock.advance(timedelta(hours=1, minutes=2))
    await _hit(db, "agent:9:get-wallet", 60)
    assert await purge_rate_counters(db, batch_size=2, max_batches=1) == 2
    assert len(await _counter_keys(db)) == 4
    assert await purge_rate_counters(db, batch_size=2) == 3  # two full batches and a short one
    assert await _counter_keys(db) == {"agent:9:get-wallet"}
    with pytest.raises(ValueError):  # a window still running is never purged
        await purge_rate_counters(db, timedelta(minutes=10))


async def _emit(uow: UnitOfWork, agent_id: int, n: int) -> int:
    event_id = await emit(uow, type=BOOKING_CREATED, agent_id=agent_id, data={"n": n})
    await uow.flush()
    row = await uow.session.scalar(select(OutboxEvent.id).where(OutboxEvent.event_id == event_id))
    assert row is not None
    return row


async def _settle(db: Database, row: int, status: OutboxStatus, attempts: int) -> None:
    """As the worker leaves an event: its attempts logged, settled now."""
    async with db.uow() as uow:
        now = uow.clock.now()
        agent_id = await uow.session.scalar(
            select(OutboxEvent.agent_id).where(OutboxEvent.id == row)
        )
        for attempt in range(1, attempts + 1):
            uow.session.add(
                WebhookDelivery(
                    outbox_event_id=row,
                    agent_id=agent_id,
                    attempt=attempt,
                    url="https://agent.example.com/hook",
                    started_at=now,
                    status_code=200 if status == OutboxStatus.DELIVERED else 500,
                    error=None,
                    duration_ms=12,
                )
            )
        values: dict[str, object] = {
            "status": status.value,
            "attempts": attempts,
            "updated_at": now,
        }
        if status == OutboxStatus.DELIVERED:
            values["delivered_at"] = now
        await uow.session.execute(update(OutboxEvent).where(OutboxEvent.id == row).values(values))
        await uow.commit()


async def _outbox(db: Database) -> tuple[dict[int, str], int]:
    async with db.uow() as uow:
        events = dict((await uow.session.execute(select(OutboxEvent.id, OutboxEvent.status))).all())
        attempts = await uow.session.scalar(select(func.count()).select_from(WebhookDelivery))
    return {int(k): str(v) for k, v in events.items()}, int(attempts or 0)


async def test_settled_events_are_purged_after_thirty_days_and_pending_ones_kept(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    runtime = Runtime(settings=Settings(database_url=database_url), db=db)
    agent_id, _ = await make_agent(db, runtime.settings)
    async with db.uow() as uow:
        delivered, failed, skipped, retrying, late = [
            await _emit(uow, agent_id, n) for n in range(5)
        ]
        await uow.commit()
    clock.advance(timedelta(minutes=1))
    await _settle(db, delivered, OutboxStatus.DELIVERED, 2)
    await _settle(db, failed, OutboxStatus.FAILED, 3)
    await _settle(db, skipped, OutboxStatus.SKIPPED, 0)
    async with db.uow() as uow:  # a failed attempt; the next one is due much later
        await uow.session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == retrying)
            .values(attempts=1, next_attempt_at=uow.clock.now() + timedelta(days=90))
        )
        await uow.commit()
    clock.advance(timedelta(days=20))
    await _settle(db, late, OutboxStatus.DELIVERED, 1)

    clock.advance(timedelta(days=10) - timedelta(minutes=1))  # 30 days to the minute
    await run_once(runtime)
    everything = {
        delivered: "delivered",
        failed: "failed",
        skipped: "skipped",
        retrying: "pending",
        late: "delivered",
    }
    assert await _outbox(db) == (everything, 6)  # nothing has been settled for 30 days yet

    clock.advance(timedelta(minutes=1, seconds=1))
    await run_once(runtime)
    assert await _outbox(db) == ({retrying: "pending", late: "delivered"}, 1)

    clock.advance(timedelta(days=20))
    await run_once(runtime)
    assert await _outbox(db) == ({retrying: "pending"}, 0)
    clock.advance(timedelta(days=365))
    assert await purge_settled_events(db) == 0
    assert await _outbox(db) == ({retrying: "pending"}, 0)


async def test_settled_events_are_purged_in_bounded_batches(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    agent_id, _ = await make_agent(db, Settings(database_url=database_url))
    async with db.uow() as uow:
        rows = [await _emit(uow, agent_id, n) for n in range(5)]
        await uow.commit()
    for row in rows:
        await _settle(db, row, OutboxStatus.DELIVERED, 1)
    clock.advance(timedelta(days=31))
    assert await purge_settled_events(db, batch_size=2, max_batches=2) == 4
    assert await _outbox(db) == ({rows[-1]: "delivered"}, 1)
    assert await purge_settled_events(db, batch_size=2) == 1
    assert await _outbox(db) == ({}, 0)


async def test_a_pass_refreshes_every_passed_next_free_bound_in_batches(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    """A large catalogue's bounds pass by the thousand at each half hour: one pass refreshes
    all of them, a batch to a transaction, up to its most."""
    runtime = Runtime(settings=Settings(database_url=database_url), db=db)
    await load_demo_data(db, 12, seed=3)
    public = (Schedule.private.is_(False), Schedule.deleted_at.is_(None))
    async with db.uow() as uow:
        count = await uow.session.scalar(select(func.count()).where(*public))
        await uow.session.execute(update(Schedule).values(next_free_at=None))
        await uow.commit()
    assert count is not None and count > 7

    async def stale() -> int:
        now = clock.now()
        async with db.uow() as uow:
            due = (Schedule.next_free_at.is_(None)) | (Schedule.next_free_at < now)
            found = await uow.session.scalar(select(func.count()).where(*public, due))
        return int(found or 0)

    assert await refresh_passed(db, batch=3, most=7) == 7
    assert await stale() == count - 7
    assert await refresh_passed(db, batch=3) == count - 7
    assert await stale() == 0
    assert await refresh_passed(db, batch=3) == 0

    clock.advance(timedelta(days=40))  # past the horizon: every bound has passed
    assert await stale() == count
    await run_once(runtime)
    assert await stale() == 0
