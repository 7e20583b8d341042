"""Housekeeping: a hold left by a crashed call goes back to the wallet; old keys are purged."""

from __future__ import annotations

from datetime import timedelta

from mcp_support import make_agent
from sqlalchemy import func, select

from agent_server.clock import FakeClock
from agent_server.config import Settings
from agent_server.maintenance import run_once
from agent_server.runtime import Runtime
from agent_server.store import Database
from billing.deposits import balances
from billing.idempotency import Replay, claim, complete
from billing.meter import place_hold
from billing.models import IdempotencyKey


async def test_a_crashed_calls_hold_and_old_keys_are_cleaned_up(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    runtime = Runtime(settings=Settings(database_url=database_url), db=db)
    agent_id, _ = await make_agent(db, runtime.settings, funds=1_000_000)
    # A call placed its hold and died before running.
    await place_hold(
        db,
        agent_id=agent_id,
        tool="create-schedule",
        call_id="crashed-call",
        fee_usd_micros=100_000,
        extra=None,
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
