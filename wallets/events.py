"""Deposit events: ``deposit.confirmed`` and ``deposit.reversed``.

Each is written to ``deposit_events`` in the same database transaction as the ledger posting
that causes it, so an event exists exactly when the money moved. Event delivery (webhooks)
can either read that table or register a hook here: every hook runs inside the same
transaction, right after the row is written::

    from wallets.events import on_deposit_event

    @on_deposit_event
    async def to_outbox(uow: UnitOfWork, event: DepositEventData) -> None:
        ...  # write the outbox row; do not commit
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from agent_server.kernel.store import UnitOfWork
from wallets.models import DepositEvent

DEPOSIT_CONFIRMED = "deposit.confirmed"
DEPOSIT_REVERSED = "deposit.reversed"


@dataclass(frozen=True)
class DepositEventData:
    """What a ``deposit.*`` event tells the agent; ``payload()`` is the webhook body."""

    kind: str
    deposit_id: int
    agent_id: int
    currency: str
    amount: str  # whole coins credited, decimal string
    amount_base_units: str  # credited, integer string (base units: gwei for ETH)
    amount_on_chain: str  # integer string of what arrived in the chain's unit (wei for ETH)
    usd_micros: int | None
    network: str
    tx_hash: str
    position: int
    block_number: int
    confirmations: int
    ledger_transaction_id: int | None
    activated: bool
    at: str

    def payload(self) -> dict[str, Any]:
        return asdict(self)


DepositHook = Callable[[UnitOfWork, DepositEventData], Awaitable[None]]
_hooks: list[DepositHook] = []


def on_deposit_event(hook: DepositHook) -> DepositHook:
    """Register ``hook`` to run inside the crediting transaction of every deposit event."""
    if hook not in _hooks:
        _hooks.append(hook)
    return hook


def remove_deposit_hook(hook: DepositHook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


async def record_deposit_event(uow: UnitOfWork, event: DepositEventData) -> None:
    """Write the event row and run the hooks, in the caller's transaction."""
    uow.session.add(
        DepositEvent(
            deposit_id=event.deposit_id,
            agent_id=event.agent_id,
            kind=event.kind,
            payload=event.payload(),
            created_at=uow.clock.now(),
        )
    )
    await uow.session.flush()
    for hook in list(_hooks):
        await hook(uow, event)
