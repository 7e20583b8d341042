"""Deposit events: ``deposit.confirmed`` and ``deposit.reversed``.

Each is written to ``deposit_events`` in the same database transaction as the ledger posting
that causes it, so an event exists exactly when the money moved. ``record_deposit_event``
then hands it to the ``publish`` function its caller passes (the crediting's
``DepositFollowUp.publish``, which writes the agent's outbox), in the same transaction: an
explicit call, never a hook registered by importing some module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from agent_server.kernel.money import Money
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
    amount: int  # credited, in base units (gwei for ETH); the body shows it as money
    # What arrived, in the chain's unit (wei for ETH), as an integer string: wei exceed what a
    # JSON number carries exactly in JavaScript (2^53), base units never do.
    amount_on_chain: str
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
        body = asdict(self)
        body["amount"] = Money.of(self.amount, self.currency).model_dump()
        return body


Publish = Callable[[UnitOfWork, DepositEventData], Awaitable[None]]


async def record_deposit_event(uow: UnitOfWork, event: DepositEventData, publish: Publish) -> None:
    """Write the event row and ``publish`` the event, in the caller's transaction."""
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
    await publish(uow, event)
