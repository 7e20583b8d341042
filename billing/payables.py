"""What the platform owes a provider: the balance of its payable accounts, per currency.

A payable account (``AccountKind.PAYABLE``) is credited when a booking's escrow is paid out
or a late cancellation leaves the provider its share; its balance is summed from its entries
(payable accounts keep no cached balance). The owner is a specialist or a schedule-owning
agent, as ``billing.terms.Payee`` says.
"""

from __future__ import annotations

from sqlalchemy import func, select

from agent_server.kernel.store import UnitOfWork
from billing.models import AccountKind, LedgerAccount, LedgerEntry


async def payable_balances(
    uow: UnitOfWork, *, agent_id: int | None = None, specialist_id: int | None = None
) -> dict[str, int]:
    """Base units owed per currency to exactly one of an agent or a specialist."""
    if (agent_id is None) == (specialist_id is None):
        raise ValueError("payable_balances needs exactly one of agent_id or specialist_id")
    owner = (
        LedgerAccount.agent_id == agent_id
        if agent_id is not None
        else LedgerAccount.specialist_id == specialist_id
    )
    rows = await uow.session.execute(
        select(
            LedgerAccount.currency,
            func.coalesce(func.sum(LedgerEntry.credit - LedgerEntry.debit), 0),
        )
        .join(LedgerEntry, LedgerEntry.account_id == LedgerAccount.id)
        .where(LedgerAccount.kind == AccountKind.PAYABLE.value, owner)
        .group_by(LedgerAccount.currency)
        .order_by(LedgerAccount.currency)
    )
    return {currency: int(total) for currency, total in rows.all()}
