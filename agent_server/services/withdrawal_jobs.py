"""The withdrawals' background jobs, run beside the booking clock (``serve`` with the worker
on, and ``agent-server worker``):

* every ``clock_interval`` seconds, withdrawals whose address was confirmed and has cooled
  off move on (``withdrawals.release_due``): to the operator's queue or to the sender;
* every ``payout_interval`` seconds (0: never), a payout is requested for each payable
  balance above ``payout_minimum_usd_micros`` to the owner's confirmed address
  (``withdrawals.schedule_payouts``).

A failing pass is logged and retried at the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from agent_server.kernel.config import Settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database
from agent_server.services import withdrawals
from billing.config import BillingConfig
from wallets.network_fees import FeeSource

log = get_logger(__name__)


class JobRuntime(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def billing(self) -> BillingConfig: ...

    @property
    def network_fees(self) -> FeeSource: ...


async def run_once(runtime: JobRuntime, *, payouts: bool) -> tuple[int, int]:
    """One pass: (withdrawals released, payouts requested)."""
    async with runtime.db.uow() as uow:
        released = await withdrawals.release_due(uow)
        await uow.commit()
    placed = 0
    if payouts:
        terms = withdrawals.Terms.of(runtime.settings, runtime.billing, runtime.network_fees)
        async with runtime.db.uow() as uow:
            placed = len(await withdrawals.schedule_payouts(uow, terms))
            await uow.commit()
    if released or placed:
        log.info("withdrawals.jobs", released=released, payouts=placed)
    return released, placed


async def _run(runtime: JobRuntime, stop: asyncio.Event) -> None:
    interval = runtime.settings.clock_interval
    payout_every = runtime.settings.payout_interval
    loop = asyncio.get_running_loop()
    next_payouts = loop.time() + payout_every
    while not stop.is_set():
        due = payout_every > 0 and loop.time() >= next_payouts
        try:
            await run_once(runtime, payouts=due)
        except Exception as exc:  # logged and retried: the jobs must never stop serving
            log.warning("withdrawals.jobs_failed", error_type=type(exc).__name__)
        if due:
            next_payouts = loop.time() + payout_every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@contextlib.asynccontextmanager
async def start_withdrawal_jobs(
    runtime: JobRuntime, *, standalone: bool = False
) -> AsyncIterator[None]:
    """Run the jobs for the lifetime of the block, as the booking clock runs (same switch)."""
    settings = runtime.settings
    if settings.clock_interval <= 0 or not (standalone or settings.start_worker):
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(_run(runtime, stop), name="withdrawal-jobs")
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)
