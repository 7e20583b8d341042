"""The facts the wallets read about the agent that holds a wallet.

Read from the ``agents`` table by column name: the wallets import no accounts model, and the
service layer (``agent_server.services``) does whatever changes an account.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, DateTime, String, column, select, table

from agent_server.kernel.errors import NotFound
from agent_server.kernel.store import UnitOfWork

_AGENTS = table(
    "agents",
    column("id", BigInteger),
    column("status", String),
    column("deleted_at", DateTime),
)
AWAITING_DEPOSIT = "pending_deposit"
"""The status of an agent that a first deposit will activate."""


@dataclass(frozen=True)
class Holder:
    """An agent as its wallets see it."""

    id: int
    awaiting_activation: bool


async def holder(uow: UnitOfWork, agent_id: int) -> Holder:
    """The agent holding the wallets; ``NotFound`` if there is none or it was deleted."""
    row = (
        await uow.session.execute(
            select(_AGENTS.c.status).where(_AGENTS.c.id == agent_id, _AGENTS.c.deleted_at.is_(None))
        )
    ).first()
    if row is None:
        raise NotFound(f"no agent with id {agent_id}")
    return Holder(id=agent_id, awaiting_activation=row.status == AWAITING_DEPOSIT)
