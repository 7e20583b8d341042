"""A provider's earnings per currency: what it was paid (its payable balance, after the
commission) and what is still held in escrow for its bookings (before the commission).

The provider is a specialist, or an agent that publishes schedules; the paid part comes from
billing's payable accounts, the pending part from the escrows held for its bookings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select

from agent_server.booking.models import Booking, Schedule
from agent_server.kernel.store import UnitOfWork
from billing.models import Escrow, EscrowStatus
from billing.payables import payable_balances


@dataclass(frozen=True)
class Earnings:
    """One currency's earnings, in its base unit."""

    currency: str
    paid: int
    pending: int


async def earnings(
    uow: UnitOfWork, *, agent_id: int | None = None, specialist_id: int | None = None
) -> list[Earnings]:
    """Earnings of exactly one of an agent or a specialist, per currency (sorted)."""
    paid = await payable_balances(uow, agent_id=agent_id, specialist_id=specialist_id)
    own = select(Schedule.id).where(Schedule.agent_id == agent_id)
    mine: ColumnElement[bool] = (
        Booking.schedule_id.in_(own)
        if agent_id is not None
        else Booking.specialist_id == specialist_id
    )
    rows = await uow.session.execute(
        select(Escrow.currency, func.sum(Escrow.amount))
        .join(Booking, Booking.id == Escrow.booking_id)
        .where(Escrow.status == EscrowStatus.HELD.value, mine)
        .group_by(Escrow.currency)
    )
    pending = {currency: int(total) for currency, total in rows.all()}
    return [
        Earnings(currency, paid.get(currency, 0), pending.get(currency, 0))
        for currency in sorted(set(paid) | set(pending))
    ]
