"""Deposits and the accounts they fund: the wallets' ``DepositFollowUp``, implemented here.

The wallets credit a confirmed deposit (or reverse a reorged one) through this follow-up, in
the same transaction: the ledger posting (``billing.wallet_funds``); a deposit worth the
activation amount activates a ``pending_deposit`` agent (``agent_server.accounts.status``), a
reversal that leaves nothing funding it returns the agent to ``pending_deposit``, and each
``deposit.*`` event goes to the agent's outbox (``agent_server.events.deposit_events``). Every
deposit watcher is built with ``DEPOSIT_FOLLOW_UP``.
"""

from __future__ import annotations

from agent_server.accounts.status import activate_if_pending, lock_agent, return_to_pending
from agent_server.events.deposit_events import to_outbox
from agent_server.kernel.store import UnitOfWork
from billing.wallet_funds import credit_deposit, reverse_deposit
from wallets.crediting import DepositFollowUp
from wallets.events import DepositEventData


class AccountFollowUp:
    """A deposit's ledger posting, account activation and outbox event
    (``wallets.crediting.DepositFollowUp``)."""

    async def credit(
        self,
        uow: UnitOfWork,
        *,
        agent_id: int,
        currency: str,
        amount: int,
        usd_micros: int,
        reference: str,
    ) -> int:
        return await credit_deposit(
            uow,
            agent_id=agent_id,
            currency=currency,
            amount=amount,
            usd_micros=usd_micros,
            reference=reference,
        )

    async def reverse(self, uow: UnitOfWork, *, reference: str, reason: str) -> int | None:
        return await reverse_deposit(uow, reference=reference, reason=reason)

    async def lock_holder(self, uow: UnitOfWork, agent_id: int) -> None:
        await lock_agent(uow, agent_id)

    async def funded(self, uow: UnitOfWork, agent_id: int, note: str) -> bool:
        return await activate_if_pending(uow, agent_id, note)

    async def unfunded(self, uow: UnitOfWork, agent_id: int, note: str) -> bool:
        return await return_to_pending(uow, agent_id, note)

    async def publish(self, uow: UnitOfWork, event: DepositEventData) -> None:
        await to_outbox(uow, event)


DEPOSIT_FOLLOW_UP: DepositFollowUp = AccountFollowUp()
