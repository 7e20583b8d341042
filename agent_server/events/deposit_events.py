"""``deposit.confirmed`` and ``deposit.reversed``, from the wallets' crediting transaction.

``wallets.events`` runs registered hooks inside the transaction that credits (or reverses) a
deposit; ``to_outbox`` is such a hook, registered when ``agent_server.events`` is imported,
so the event is written exactly when the money moved.
"""

from __future__ import annotations

from agent_server.events.outbox import DEPOSIT_CONFIRMED, DEPOSIT_REVERSED, emit
from agent_server.kernel.store import UnitOfWork
from wallets.events import DepositEventData, on_deposit_event

_TYPES = {"deposit.confirmed": DEPOSIT_CONFIRMED, "deposit.reversed": DEPOSIT_REVERSED}


async def to_outbox(uow: UnitOfWork, event: DepositEventData) -> None:
    """Write the deposit event for its agent to the outbox (the wallets hook)."""
    kind = _TYPES.get(event.kind)
    if kind is None:
        return
    data = event.payload()
    data.pop("kind", None)
    await emit(uow, type=kind, agent_id=event.agent_id, data=data)


def install() -> None:
    """Register ``to_outbox`` with the wallets (idempotent)."""
    on_deposit_event(to_outbox)
