"""Housekeeping that ``serve`` (and ``agent-server worker``) runs in the background.

Every ``interval`` seconds: release holds left pending by calls that crashed (their money goes
back to the wallet), delete idempotency keys older than their 24-hour lifetime, refresh
search's next-free-slot bounds that time has passed (so searches find them fresh), delete
rate counters whose window ended (started over an hour ago) and webhook events settled
(delivered, failed or skipped) over 30 days ago. Before its first pass it checks that the
schedules' week blocks were computed by the time zone rules this process reads, and computes
them again if not (``booking.schedules.zone_rules``). Each step runs in its own transactions (the
deletions in bounded batches); a failing pass is logged and retried at the next tick, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from agent_server.accounts.ratelimit import purge_rate_counters
from agent_server.booking.next_free import refresh_passed
from agent_server.booking.schedules.zone_rules import refresh_start_blocks
from agent_server.events.retention import purge_settled_events
from agent_server.kernel.logs import get_logger
from agent_server.runtime import Runtime
from billing.idempotency import purge_idempotency_keys
from billing.meter import release_stale_holds

log = get_logger(__name__)


async def run_once(runtime: Runtime) -> tuple[int, int]:
    """One pass; (holds released, keys purged)."""
    released = await release_stale_holds(runtime.db, runtime.billing.stale_hold_after)
    purged = await purge_idempotency_keys(runtime.db)
    refreshed = await refresh_passed(runtime.db)
    counters = await purge_rate_counters(runtime.db)
    events = await purge_settled_events(runtime.db)
    if released or purged or refreshed or counters or events:
        log.info(
            "maintenance.pass",
            holds_released=released,
            keys_purged=purged,
            next_free_refreshed=refreshed,
            rate_counters_purged=counters,
            events_purged=events,
        )
    return released, purged


async def check_zone_rules(runtime: Runtime) -> None:
    """``refresh_start_blocks``, logged when it changed anything; a failure is logged and
    left for the next start (the blocks only cost speed, or miss hours a zone moved to)."""
    try:
        refreshed = await refresh_start_blocks(runtime.db)
    except Exception as exc:
        log.warning("maintenance.zone_rules_failed", error_type=type(exc).__name__, error=str(exc))
        return
    if refreshed.checked:
        log.info(
            "maintenance.start_blocks_refreshed",
            schedules_checked=refreshed.checked,
            schedules_changed=refreshed.changed,
        )


async def run_forever(runtime: Runtime, interval: float) -> None:
    await check_zone_rules(runtime)
    while True:
        try:
            await run_once(runtime)
        except Exception as exc:  # logged and retried: housekeeping must never stop serving
            log.warning("maintenance.failed", error_type=type(exc).__name__, error=str(exc))
        await asyncio.sleep(interval)


@asynccontextmanager
async def start_maintenance(runtime: Runtime, interval: float = 60.0) -> AsyncIterator[None]:
    """Run the housekeeping loop for the lifetime of the block."""
    task = asyncio.create_task(run_forever(runtime, interval), name="maintenance")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
