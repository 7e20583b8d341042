"""A rescheduled booking keeps its escrow: the money stays put, the claim moves."""

from __future__ import annotations

from sqlalchemy import update

from agent_server.kernel.store import UnitOfWork
from billing.models import Escrow, EscrowStatus
from billing.terms import BookedSlot


async def move_escrow(uow: UnitOfWork, old: BookedSlot, new: BookedSlot) -> bool:
    """Attach ``old``'s held escrow to ``new`` (same schedule, same payee), in the caller's
    transaction. The ledger does not move: escrow is one account per currency and the escrow
    row says which booking the held amount belongs to. False when nothing was held."""
    result = await uow.session.execute(
        update(Escrow)
        .where(Escrow.booking_id == old.id, Escrow.status == EscrowStatus.HELD.value)
        .values(booking_id=new.id)
    )
    return bool(getattr(result, "rowcount", 0))
