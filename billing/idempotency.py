"""Idempotency keys with Stripe's semantics, per agent.

* First use of a key: the call runs; its result is stored with the key in the same database
  transaction that charges for it.
* Same key, same tool and arguments, call done: the stored result comes back; nothing runs and
  nothing is charged again.
* Same key, other tool or arguments: ``IdempotencyMismatch`` (409), ``retryable: false``.
* Same key while the first call is still running: ``IdempotencyMismatch`` (409),
  ``retryable: true``. A running call renews its claim (``leased``), so a key whose claim
  was not renewed for ``stale_after`` belongs to a process that stopped: a retry takes it
  over, and the stopped call can no longer complete (its token no longer matches).
* A call that fails or is refused stores nothing: the key is free again, so a corrected retry
  (after a top-up, say) runs.
* Keys live at least 24 hours; ``purge_idempotency_keys`` deletes older ones.

Who owns a key is settled by the unique constraint on (agent, key), never by a read-then-write.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
from sqlalchemy import ColumnElement, Table, and_, bindparam, delete, select, update

from agent_server.kernel.errors import IdempotencyMismatch, ValidationFailed
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, Direct, UnitOfWork, direct_execute
from billing.ledger import insert_or_none
from billing.models import IdempotencyKey, IdempotencyStatus

log = get_logger(__name__)

KEYS: Table = IdempotencyKey.__table__  # type: ignore[assignment]
MIN_KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
CLAIM_ATTEMPTS = 3


@dataclass(frozen=True)
class Claim:
    """This call owns the key until it completes or abandons it."""

    id: int
    token: str
    key: str


@dataclass(frozen=True)
class Replay:
    """The key's call already succeeded: its stored result and receipt."""

    result: dict[str, Any]
    receipt: dict[str, Any] | None


def request_hash(tool: str, arguments: dict[str, Any]) -> str:
    """A fingerprint of the tool and its arguments (canonical JSON, SHA-256)."""
    canonical = json.dumps(
        {"tool": tool, "arguments": arguments},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str) -> str:
    """The key as given, or ``ValidationFailed`` if empty, too long or not printable."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable() or key != key.strip():
        raise ValidationFailed.field(
            "idempotency_key",
            f"use 1 to {MAX_KEY_LENGTH} printable characters without surrounding spaces, "
            "e.g. a UUID; reuse the same key when you retry the same call",
        )
    return key


async def claim(
    db: Database,
    *,
    agent_id: int,
    key: str,
    tool: str,
    arguments: dict[str, Any],
    stale_after: timedelta,
) -> Claim | Replay:
    """Take the key for this call (committed at once), or answer from its first use."""
    async with db.uow() as uow:
        claimed = await claim_in(
            uow, agent_id=agent_id, key=key, tool=tool, arguments=arguments, stale_after=stale_after
        )
        if isinstance(claimed, Claim):
            await uow.commit()
        return claimed


async def claim_in(
    uow: UnitOfWork,
    *,
    agent_id: int,
    key: str,
    tool: str,
    arguments: dict[str, Any],
    stale_after: timedelta,
) -> Claim | Replay:
    """``claim`` in the caller's entered unit of work, which must commit before the call's
    work begins for the key to be held (the meter commits it with the call's rate count)."""
    check_key(key)
    fingerprint = request_hash(tool, arguments)
    token = uuid.uuid4().hex
    now = uow.clock.now()
    row = None
    for _ in range(CLAIM_ATTEMPTS):
        new_id = await insert_or_none(
            uow,
            KEYS,
            {
                "agent_id": agent_id,
                "key": key,
                "tool": tool,
                "request_hash": fingerprint,
                "status": IdempotencyStatus.IN_FLIGHT.value,
                "lock_token": token,
                "locked_at": now,
                "created_at": now,
            },
            ["agent_id", "key"],
        )
        if new_id is not None:
            return Claim(new_id, token, key)
        row = (
            await uow.session.execute(
                select(KEYS).where(KEYS.c.agent_id == agent_id, KEYS.c.key == key)
            )
        ).one_or_none()
        if row is not None:
            break
        # Its holder failed and freed the key between our insert and this read (each
        # statement sees the latest commits on PostgreSQL): try to take it again.
    if row is None:
        raise _in_progress(key)
    if row.request_hash != fingerprint:
        raise IdempotencyMismatch(
            "This idempotency key was already used for a different call. Use a new key "
            "for new arguments; reuse a key only to retry the very same call.",
            {"idempotency_key": key, "retryable": False, "first_tool": row.tool},
        )
    if row.status == IdempotencyStatus.DONE.value:
        return Replay(result=dict(row.result or {}), receipt=row.receipt)
    if row.locked_at <= now - stale_after:
        taken = await uow.session.execute(
            update(KEYS)
            .where(
                KEYS.c.id == row.id,
                KEYS.c.status == IdempotencyStatus.IN_FLIGHT.value,
                KEYS.c.lock_token == row.lock_token,
            )
            .values(lock_token=token, locked_at=now)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return Claim(int(row.id), token, key)
    raise _in_progress(key)


def _still_held(held: Claim) -> ColumnElement[bool]:
    """The key's row while ``held`` still owns it: in flight under this call's token."""
    return and_(
        KEYS.c.id == held.id,
        KEYS.c.lock_token == held.token,
        KEYS.c.status == IdempotencyStatus.IN_FLIGHT.value,
    )


def _in_progress(key: str) -> IdempotencyMismatch:
    return IdempotencyMismatch(
        "A call with this idempotency key is still in progress. Retry in a few seconds "
        "with the same key to get its result.",
        {"idempotency_key": key, "retryable": True},
    )


_COMPLETE = Direct(
    update(KEYS)
    .where(
        KEYS.c.id == bindparam("key_id"),
        KEYS.c.lock_token == bindparam("token"),
        KEYS.c.status == IdempotencyStatus.IN_FLIGHT.value,
    )
    .values(
        status=IdempotencyStatus.DONE.value,
        result=bindparam("done_result", type_=KEYS.c.result.type),
        receipt=bindparam("done_receipt", type_=KEYS.c.receipt.type),
        completed_at=bindparam("done_at", type_=KEYS.c.completed_at.type),
    )
)
"""``_still_held``'s row marked done with the call's result (one statement to the driver)."""


async def complete(
    uow: UnitOfWork, held: Claim, result: dict[str, Any], receipt: dict[str, Any] | None
) -> None:
    """Store the result with the key, in the caller's transaction (the one that charges).

    If another call took the key over meanwhile, raises ``IdempotencyMismatch`` (retryable):
    the caller's transaction then rolls back, so only one of them ever takes effect.
    """
    values = {
        "key_id": held.id,
        "token": held.token,
        "done_result": result,
        "done_receipt": receipt,
        "done_at": uow.clock.now(),
    }
    if await direct_execute(uow, _COMPLETE, values) != 1:
        raise IdempotencyMismatch(
            "Another call with this idempotency key took over; retry with the same key.",
            {"idempotency_key": held.key, "retryable": True},
        )


async def renew(db: Database, held: Claim) -> bool:
    """Mark the claim as alive now (own transaction); False if it is no longer this call's."""
    async with db.uow() as uow:
        renewed = await uow.session.execute(
            update(KEYS).where(_still_held(held)).values(locked_at=uow.clock.now())
        )
        await uow.commit()
        return bool(renewed.rowcount == 1)  # type: ignore[attr-defined]


async def _keep_renewing(db: Database, held: Claim, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            if not await renew(db, held):
                return  # completed, abandoned or taken over: nothing left to keep
        except Exception as exc:  # the next turn tries again; the call itself goes on
            log.warning("idempotency.renew_failed", key_id=held.id, error=type(exc).__name__)


@asynccontextmanager
async def leased(db: Database, held: Claim, every: timedelta) -> AsyncIterator[None]:
    """Renew ``held`` every ``every`` while the block runs, so that a call running for longer
    than ``stale_after`` keeps its key, and a key whose process stopped frees up soon."""
    renewing = asyncio.create_task(_keep_renewing(db, held, every.total_seconds()))
    try:
        yield
    finally:
        renewing.cancel()
        # Waits for it to stop without raising its cancellation; shielded, so that a block
        # stopped by a cancel scope still waits (the scope would cancel the wait itself).
        with anyio.CancelScope(shield=True):
            await asyncio.wait([renewing])


async def abandon(db: Database, held: Claim) -> None:
    """Free the key after a failed, refused or stopped call (nothing of it was stored).

    Shielded from cancellation, as ``leased``'s wait: a call stopped by a cancel scope (its
    client went away) must still free its key, and the scope would cancel every await."""
    with anyio.CancelScope(shield=True):
        async with db.uow() as uow:
            await uow.session.execute(delete(KEYS).where(_still_held(held)))
            await uow.commit()


async def purge_idempotency_keys(db: Database, older_than: timedelta = MIN_KEY_LIFETIME) -> int:
    """Delete keys created more than ``older_than`` (at least 24 hours) ago; how many."""
    if older_than < MIN_KEY_LIFETIME:
        raise ValueError("idempotency keys live at least 24 hours")
    async with db.uow() as uow:
        cutoff = uow.clock.now() - older_than
        purged = await uow.session.execute(delete(KEYS).where(KEYS.c.created_at < cutoff))
        await uow.commit()
    return int(purged.rowcount)  # type: ignore[attr-defined]
