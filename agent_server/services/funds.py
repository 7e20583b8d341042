"""Operator credits and debits of an agent's wallet, and the activation a credit brings.

An adjustment posts to the ledger (``billing.wallet_funds.adjust_balance``, idempotent by
reference) and, for a credit worth at least the activation amount at the static rate, turns a
``pending_deposit`` agent active (``agent_server.accounts.status``), in one unit of work that
the caller commits.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_server.accounts.status import activate_if_pending, find_agent
from agent_server.kernel.store import UnitOfWork
from billing.wallet_funds import adjust_balance, balances
from wallets.currencies import currency_info
from wallets.rates import StaticRateSource, base_units_to_usd


@dataclass(frozen=True)
class Adjusted:
    """An adjustment done: the agent, the ledger transaction, the balance after, and
    whether the credit activated the agent."""

    agent_id: int
    transaction_id: int
    currency: str
    balance: int
    activated: bool


async def adjust_wallet(
    uow: UnitOfWork,
    *,
    agent: str,
    currency: str,
    amount: int,
    reason: str,
    operator: str,
    activation_usd_micros: int,
    reference: str | None = None,
) -> Adjusted:
    """Credit (``amount`` > 0) or debit (``amount`` < 0) the wallet of ``agent`` (an id or
    an email, as ``find_agent`` reads it) in base units, with the operator's reason."""
    found = await find_agent(uow, agent)
    code = currency_info(currency).code
    txn = await adjust_balance(
        uow,
        agent_id=found.id,
        currency=code,
        amount=amount,
        reason=f"{reason.strip()} (by {operator})",
        reference=reference,
    )
    activated = False
    if amount > 0:
        usd = base_units_to_usd(amount, code, StaticRateSource().usd_micros_per_coin(code))
        if usd >= activation_usd_micros:
            activated = await activate_if_pending(
                uow, found.id, f"operator credit: {reason.strip()}", actor=operator
            )
    held = (await balances(uow, found.id))[code]
    return Adjusted(found.id, txn, code, held, activated)
