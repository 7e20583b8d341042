"""``deposit.confirmed`` and ``deposit.reversed``, from the wallets' crediting transaction.

The wallets hand each deposit event to their ``DepositFollowUp.publish`` inside the
transaction that credits (or reverses) the deposit; the service layer's follow-up
(``agent_server.services.deposits``) calls ``to_outbox``, so the event is written exactly when
the money moved.
"""

from __future__ import annotations

from agent_server.events.outbox import DEPOSIT_CONFIRMED, DEPOSIT_REVERSED, emit
from agent_server.kernel.store import UnitOfWork
from wallets.events import DepositEventData

_TYPES = {"deposit.confirmed": DEPOSIT_CONFIRMED, "deposit.reversed": DEPOSIT_REVERSED}


async def to_outbox(uow: UnitOfWork, event: DepositEventData) -> None:
    """Write the deposit event for its agent to the outbox."""
    kind = _TYPES.get(event.kind)
    if kind is None:
        return
    data = event.payload()
    data.pop("kind", None)
    await emit(uow, type=kind, agent_id=event.agent_id, data=data)
