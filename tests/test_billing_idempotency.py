"""Idempotency keys, Stripe's way: a retry gets the first result and pays nothing more."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

import anyio
import pytest
from billing_support import fund, make_agent, wallet_balance
from sqlalchemy import func, select

from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import BookingConflict, IdempotencyMismatch, ValidationFailed
from agent_server.kernel.store import Database
from billing import idempotency
from billing.config import BillingConfig
from billing.meter import Admission, MeteredCall, run_metered
from billing.models import IdempotencyKey, LedgerTransaction
from billing.prices import load_price_list
from wallets.rates import FakeRateSource


@pytest.fixture
def config() -> BillingConfig:
    return BillingConfig(
        prices=load_price_list(), rates=FakeRateSource(), stale_key_after=timedelta(minutes=5)
    )


class Counter:
    """An operation that counts its runs and can be told to fail."""

    def __init__(self) -> None:
        self.runs = 0
        self.fail = False

    async def __call__(self, call: MeteredCall) -> dict[str, Any]:
        self.runs += 1
        if self.fail:
            raise BookingConflict("slot taken", {"reason": "full"})
        return {"schedule_id": 100 + self.runs}


async def charge_count(db: Database) -> int:
    async with db.uow() as uow:
        return (
            await uow.session.execute(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.kind == "charge")
            )
        ).scalar_one()


async def call(
    db: Database, config: BillingConfig, agent: int, op: Counter, key: str | None, **args: Any
):  # type: ignore[no-untyped-def]
    return await run_metered(
        db,
        Admission(agent, "create-schedule", arguments=args, idempotency_key=key),
        op,
        config=config,
    )


async def claimed_elsewhere(
    db: Database, config: BillingConfig, agent: int, key: str = "key-1"
) -> idempotency.Claim:
    """A claim on ``key`` for create-schedule {"label": "Mornings"} taken by another
    process, whose call has not finished (and which does not renew it)."""
    claimed = await idempotency.claim(
        db,
        agent_id=agent,
        key=key,
        tool="create-schedule",
        arguments={"label": "Mornings"},
        stale_after=config.stale_key_after,
    )
    assert isinstance(claimed, idempotency.Claim)
    return claimed


async def test_same_key_same_arguments_returns_the_stored_result_without_a_second_charge(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    op = Counter()
    first = await call(db, config, agent, op, "key-1", label="Mornings")
    again = await call(db, config, agent, op, "key-1", label="Mornings")
    assert op.runs == 1
    assert again.replayed and not first.replayed
    assert again.result == first.result == {"schedule_id": 101}
    assert again.receipt == first.receipt
    assert await charge_count(db) == 1
    assert await wallet_balance(db, agent, "USDC") == 900_000
    # Keys are per agent: another agent's identical key is its own call.
    other = await make_agent(db)
    await fund(db, other, "USDC", 1_000_000)
    assert not (await call(db, config, other, op, "key-1", label="Mornings")).replayed


async def test_same_key_other_arguments_is_a_mismatch_that_must_not_be_retried(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    op = Counter()
    await call(db, config, agent, op, "key-1", label="Mornings")
    with pytest.raises(IdempotencyMismatch) as refused:
        await call(db, config, agent, op, "key-1", label="Evenings")
    assert refused.value.details["retryable"] is False
    assert refused.value.to_body()["error"]["status"] == 409
    assert op.runs == 1
    assert await charge_count(db) == 1


async def test_a_key_in_flight_is_a_retryable_mismatch_until_it_goes_stale(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    # Another process took the key and is still running its call.
    elsewhere = await claimed_elsewhere(db, config, agent)
    op = Counter()
    with pytest.raises(IdempotencyMismatch) as refused:
        await call(db, config, agent, op, "key-1", label="Mornings")
    assert refused.value.details["retryable"] is True
    assert op.runs == 0
    # That process crashed; once the key is stale a retry takes it over and runs.
    clock.advance(timedelta(minutes=6))
    taken = await call(db, config, agent, op, "key-1", label="Mornings")
    assert op.runs == 1 and not taken.replayed
    # The crashed call, should it wake up, can no longer complete under the key.
    with pytest.raises(IdempotencyMismatch):
        async with db.uow() as uow:
            await idempotency.complete(uow, elsewhere, {"schedule_id": 0}, None)
    assert (await call(db, config, agent, op, "key-1", label="Mornings")).result == taken.result
    assert await charge_count(db) == 1


async def claimed_at(db: Database, agent: int, key: str) -> datetime:
    async with db.uow() as uow:
        return (
            await uow.session.execute(
                select(IdempotencyKey.locked_at).where(
                    IdempotencyKey.agent_id == agent, IdempotencyKey.key == key
                )
            )
        ).scalar_one()


async def test_a_running_call_keeps_its_key_past_stale_after_by_renewing_its_claim(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    config = dataclasses.replace(config, key_renew_every=timedelta(milliseconds=20))
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    started, release = asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    async def slow(call: MeteredCall) -> dict[str, Any]:
        runs.append(1)
        started.set()
        await release.wait()
        return {"schedule_id": 7}

    first = asyncio.create_task(call(db, config, agent, slow, "key-1", label="Mornings"))
    await started.wait()
    clock.advance(config.stale_key_after + timedelta(minutes=1))  # only renewal keeps it
    for _ in range(300):
        if await claimed_at(db, agent, "key-1") == clock.now():
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the running call did not renew its claim")
    op = Counter()
    with pytest.raises(IdempotencyMismatch) as refused:
        await call(db, config, agent, op, "key-1", label="Mornings")
    assert refused.value.details["retryable"] is True
    assert op.runs == 0 and len(runs) == 1
    release.set()
    done = await first
    replay = await call(db, config, agent, op, "key-1", label="Mornings")
    assert replay.replayed and replay.result == done.result == {"schedule_id": 7}
    assert op.runs == 0 and len(runs) == 1
    assert await charge_count(db) == 1


async def hanging_call(
    db: Database, config: BillingConfig, agent: int, started: asyncio.Event
) -> None:
    """A call with key-1 whose operation never ends (``started`` is set once it runs)."""

    async def hangs(call: MeteredCall) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("never released")

    await call(db, config, agent, hangs, "key-1", label="Mornings")


async def assert_key_free(db: Database, config: BillingConfig, agent: int) -> None:
    """No renewal is left running, and a retry with key-1 runs and is charged."""
    renewals = [t for t in asyncio.all_tasks() if "_keep_renewing" in repr(t.get_coro())]
    assert renewals == []
    op = Counter()
    retried = await call(db, config, agent, op, "key-1", label="Mornings")
    assert op.runs == 1 and not retried.replayed
    assert await charge_count(db) == 1


async def test_a_keyed_call_cancelled_while_running_frees_its_key_and_stops_renewing(
    db: Database, config: BillingConfig
) -> None:
    config = dataclasses.replace(config, key_renew_every=timedelta(milliseconds=10))
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    started = asyncio.Event()
    running = asyncio.create_task(hanging_call(db, config, agent, started))
    await started.wait()
    await asyncio.sleep(0.05)  # a few renewals
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    await assert_key_free(db, config, agent)


async def test_a_keyed_call_stopped_by_a_cancel_scope_frees_its_key_at_once(
    db: Database, config: BillingConfig
) -> None:
    # The SDK runs a request in anyio task groups: when the client goes away, a cancel scope
    # cancels the call, and cancels again every await made inside that scope.
    config = dataclasses.replace(config, key_renew_every=timedelta(milliseconds=10))
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    with anyio.move_on_after(0.05) as scope:
        await hanging_call(db, config, agent, asyncio.Event())
    assert scope.cancelled_caught
    await assert_key_free(db, config, agent)


async def test_a_key_left_by_a_stopped_process_is_free_again_after_a_minute(
    db: Database, clock: FakeClock
) -> None:
    config = BillingConfig(prices=load_price_list(), rates=FakeRateSource())  # the defaults
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    # A process claimed the key, then stopped (killed, or its machine went down): nothing
    # renews the claim any more.
    await claimed_elsewhere(db, config, agent)
    op = Counter()
    clock.advance(timedelta(seconds=30))
    with pytest.raises(IdempotencyMismatch):
        await call(db, config, agent, op, "key-1", label="Mornings")
    clock.advance(timedelta(seconds=31))
    taken = await call(db, config, agent, op, "key-1", label="Mornings")
    assert op.runs == 1 and not taken.replayed
    assert await charge_count(db) == 1


async def test_a_failed_call_frees_its_key_for_the_retry(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    op = Counter()
    op.fail = True
    with pytest.raises(BookingConflict):
        await call(db, config, agent, op, "key-1", label="Mornings")
    op.fail = False
    retried = await call(db, config, agent, op, "key-1", label="Mornings")
    assert not retried.replayed and op.runs == 2
    assert await charge_count(db) == 1
    assert await wallet_balance(db, agent, "USDC") == 900_000


async def test_keys_live_at_least_a_day_then_are_purged(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    op = Counter()
    await call(db, config, agent, op, "old", label="a")
    clock.advance(timedelta(hours=23))
    await call(db, config, agent, op, "new", label="b")
    with pytest.raises(ValueError):
        await idempotency.purge_idempotency_keys(db, timedelta(hours=1))
    assert await idempotency.purge_idempotency_keys(db) == 0
    assert (await call(db, config, agent, op, "old", label="a")).replayed
    clock.advance(timedelta(hours=2))
    assert await idempotency.purge_idempotency_keys(db) == 1
    async with db.uow() as uow:
        keys = (await uow.session.execute(select(IdempotencyKey.key))).scalars().all()
    assert keys == ["new"]


async def test_a_malformed_key_is_refused_before_anything_runs(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    op = Counter()
    for bad in ("", " padded ", "x" * 256, "tab\there"):
        with pytest.raises(ValidationFailed) as refused:
            await call(db, config, agent, op, bad, label="a")
        assert refused.value.details["fields"][0]["field"] == "idempotency_key"
    assert op.runs == 0
