"""``balance.low``: a charge took one of the agent's wallets below the threshold.

The meter calls ``emit_if_balance_low`` with the wallet's balance just before and just after
the debit (both from the same conditional UPDATE), valued at the charge's own rate. The event
fires only when the balance *crosses* the threshold (at or above it before, below it after),
so it fires once per crossing without any state: concurrent charges each see their own
before and after, and only one of them can cross. A deposit that lifts the wallet above the
threshold again arms the next crossing.
"""

from __future__ import annotations

from agent_server.events.outbox import BALANCE_LOW, emit
from agent_server.kernel.money import USD, Money
from agent_server.kernel.store import UnitOfWork
from wallets.currencies import currency_info
from wallets.rates import base_units_to_usd


async def emit_if_balance_low(
    uow: UnitOfWork,
    *,
    agent_id: int,
    currency: str,
    balance_before: int,
    balance_after: int,
    rate: int,
    threshold_usd_micros: int,
) -> str | None:
    """Emit ``balance.low`` if this debit crossed the threshold; the event id, or None.

    Balances are in base units of ``currency``; ``rate`` is USD micro-dollars per whole coin.
    The event shows the balance after the charge, its USD value and the threshold as money
    (``{amount, currency, text}``, the integer in base units) as wallets show them elsewhere.
    Does not commit.
    """
    if threshold_usd_micros <= 0 or rate <= 0 or balance_after >= balance_before:
        return None
    code = currency_info(currency).code
    before_usd = base_units_to_usd(balance_before, code, rate)
    after_usd = base_units_to_usd(balance_after, code, rate)
    if not before_usd >= threshold_usd_micros > after_usd:
        return None
    return await emit(
        uow,
        type=BALANCE_LOW,
        agent_id=agent_id,
        data={
            "currency": code,
            "balance": Money.of(balance_after, code).model_dump(),
            "balance_usd": Money.of(after_usd, USD).model_dump(),
            "threshold_usd": Money.of(threshold_usd_micros, USD).model_dump(),
            "rate_usd_micros": rate,
        },
    )
