"""One metered call as its operation and its caller see it: the ``MeteredCall`` the operation
runs in, the ``Receipt`` of what it cost, the ``Metered`` outcome, and its usage row."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, bindparam, insert

from agent_server.kernel.store import (
    Direct,
    UnitOfWork,
    direct_execute,
    direct_rows,
    skipping_flush_wait,
)
from billing.escrow import escrow_posting
from billing.meter.quota import period_of
from billing.models import Hold, UsageRecord
from billing.terms import BookedSlot

JSONDict = dict[str, Any]

_USAGE: Table = UsageRecord.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one call cost, attached to its structured result."""

    call_id: str
    tool: str
    price_usd_micros: int
    currency: str | None
    amount: int
    balance_after: int | None
    rate: int | None = None
    free: bool = False
    escrowed: int = 0

    def to_dict(self) -> JSONDict:
        return {
            "call_id": self.call_id,
            "tool": self.tool,
            "price_usd_micros": self.price_usd_micros,
            "currency": self.currency,
            "amount": self.amount,
            "balance_after": self.balance_after,
            "rate": self.rate,
            "free": self.free,
            "escrowed": self.escrowed,
        }


@dataclass(frozen=True, slots=True)
class Metered:
    """A metered call's result and receipt; ``replayed`` when it came from an idempotency key."""

    result: JSONDict
    receipt: Receipt | None
    replayed: bool = False


@dataclass(slots=True)
class MeteredCall:
    """What the operation of a metered call gets: its unit of work and call id."""

    uow: UnitOfWork
    agent_id: int
    tool: str
    call_id: str
    hold: Hold | None = None
    escrowed: int = field(default=0, init=False)

    async def escrow(self, booking: BookedSlot) -> int | None:
        """Move the call's extra price (the slot price) from its hold into escrow for
        ``booking``; the ledger transaction id, or None when there is nothing to escrow."""
        if self.hold is None or self.hold.amount == self.hold.fee_amount:
            return None
        amount = self.hold.amount - self.hold.fee_amount
        posted = await escrow_posting(
            self.uow,
            booking,
            amount=amount,
            currency=self.hold.currency,
            price_usd_micros=self.hold.price_usd_micros - self.hold.fee_usd_micros,
            rate=self.hold.rate,
            hold=self.hold,
        )
        if posted is None:
            return None
        if posted.created:
            # A replayed booking already has its escrow: this call's hold goes back instead.
            self.escrowed = amount
        return posted.transaction_id


Operation = Callable[[MeteredCall], Awaitable[JSONDict]]
"""A tool's work inside a metered call: its JSON-ready result; it must not commit."""

_USAGE_COLUMNS = (
    "call_id",
    "agent_id",
    "tool",
    "period",
    "free",
    "price_usd_micros",
    "currency",
    "amount",
    "transaction_id",
    "created_at",
)
_INSERT_USAGE = insert(_USAGE).values({name: bindparam(name) for name in _USAGE_COLUMNS})
INSERT_USAGE = Direct(_INSERT_USAGE)
INSERT_USAGE_NO_FLUSH_WAIT = Direct(skipping_flush_wait(_INSERT_USAGE))
"""PostgreSQL: the usage row, and the call's commit answered without waiting for the disk."""


async def record_usage(
    uow: UnitOfWork,
    call: MeteredCall,
    receipt: Receipt | None,
    txn: int | None,
    *,
    flush_wait: bool = True,
) -> None:
    """The call's usage row (free or what it was charged), in its transaction.

    ``flush_wait=False``: the transaction's commit need not wait for the disk
    (``store.skipping_flush_wait``); on PostgreSQL the usage insert itself says so, which saves
    the call a round trip."""
    now = uow.clock.now()
    plain = flush_wait or uow.db.is_sqlite
    await (direct_execute if plain else direct_rows)(
        uow,
        INSERT_USAGE if plain else INSERT_USAGE_NO_FLUSH_WAIT,
        {
            "call_id": call.call_id,
            "agent_id": call.agent_id,
            "tool": call.tool,
            "period": period_of(now),
            "free": receipt is None or receipt.free or receipt.price_usd_micros == 0,
            "price_usd_micros": receipt.price_usd_micros if receipt else 0,
            "currency": receipt.currency if receipt else None,
            "amount": receipt.amount if receipt else 0,
            "transaction_id": txn,
            "created_at": now,
        },
    )
