"""Closing an agent's account without stranding money.

Before the agent's data is erased (``accounts.service.delete_agent``), in the same
transaction and under the agent's row lock, ``settle_before_closing`` looks at what the agent
still holds: its wallets, what its schedules earned (payable) and its withdrawals not yet
final. Anything left refuses the closing, naming the amounts and the ways out: withdraw it
(and wait for the withdrawals to end), or choose ``remaining="forfeit"``, which records the
owner's explicit choice: each balance moves to the forfeited account with that reason.
Withdrawals still open always refuse it: a failed one would return money to a closed account.
``close_account`` is the use case every surface calls: settle, withdraw the agent's schedules
(``booking.profiles.withdraw_schedules``), then erase.
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import func, select

from agent_server.accounts.service import delete_agent
from agent_server.booking.profiles import withdraw_schedules
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.money import decimal_text
from agent_server.kernel.store import UnitOfWork
from agent_server.services.withdrawals import payable_balance
from billing.ledger import AccountRef, credit, debit, post, system_account
from billing.models import AccountKind, LedgerAccount, TransactionKind
from billing.wallet_funds import paying_wallets
from wallets.withdrawal_models import FINAL_STATUSES, Withdrawal

Remaining = Literal["forfeit"] | None


async def _left(uow: UnitOfWork, agent_id: int) -> list[tuple[AccountRef, int]]:
    held = [(ref, amount) for ref, amount in await paying_wallets(uow, agent_id) if amount > 0]
    payables = await uow.session.execute(
        select(LedgerAccount.id, LedgerAccount.currency).where(
            LedgerAccount.agent_id == agent_id, LedgerAccount.kind == AccountKind.PAYABLE.value
        )
    )
    for account_id, currency in payables.all():
        ref = AccountRef(int(account_id), AccountKind.PAYABLE, str(currency))
        owed = await payable_balance(uow, ref, lock=True)
        if owed > 0:
            held.append((ref, owed))
    return held


async def settle_before_closing(uow: UnitOfWork, agent_id: int, remaining: Remaining) -> None:
    """Refuse the closing while money is left or in flight, unless the owner forfeits it."""
    in_flight = await uow.session.scalar(
        select(func.count()).where(
            Withdrawal.agent_id == agent_id,
            Withdrawal.status.not_in([s.value for s in FINAL_STATUSES]),
        )
    )
    if in_flight:
        raise ValidationFailed.field(
            "remaining",
            f"{in_flight} withdrawal(s) are not final yet; wait until they are confirmed, or "
            "cancel them, then close the account",
        )
    left = await _left(uow, agent_id)
    if not left:
        return
    if remaining != "forfeit":
        listed = ", ".join(
            f"{decimal_text(amount, ref.currency)} {ref.currency}"
            + (" earned" if ref.kind is AccountKind.PAYABLE else "")
            for ref, amount in left
        )
        raise ValidationFailed.field(
            "remaining",
            f"the account still holds {listed}; withdraw it first (request-withdrawal, "
            "POST /api/agent/withdrawals) or close with remaining=forfeit to give it up",
        )
    for ref, amount in left:
        forfeited = await system_account(uow, AccountKind.FORFEITED, ref.currency)
        await post(
            uow,
            kind=TransactionKind.ADJUSTMENT,
            reference=f"forfeit:agent:{agent_id}:{ref.kind.value}:{ref.currency}",
            legs=[debit(ref, amount), credit(forfeited, amount)],
            currency=ref.currency,
            amount=amount,
            agent_id=agent_id,
            memo=f"forfeited on closing the account, by the owner's choice ({ref.kind.value})",
        )


async def close_account(uow: UnitOfWork, agent_id: int, remaining: Remaining) -> None:
    """Close the agent's account in one transaction under its row lock: settle what it holds
    (or refuse, changing nothing), withdraw its schedules, erase its personal data."""

    async def settle(uow: UnitOfWork, agent_id: int) -> None:
        await settle_before_closing(uow, agent_id, remaining)
        await withdraw_schedules(uow, agent_id)

    await delete_agent(uow, agent_id, settle=settle)
