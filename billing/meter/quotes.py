"""The free ``quote`` tool: what a call would cost now, decided as the call itself would be.

The quote reads the wallets and the free quota as the meter does (``payers.read_wallets``),
applies the same rules (``quota.free_applies``, ``Wallets.payer``) and prices a refusal in
the same wallet (``payers.refusal_wallet``), so a quote and the call that follows it in the
same state name the same wallet, currency and amount.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from agent_server.kernel.store import Database, UnitOfWork
from billing.config import BillingConfig
from billing.meter.calls import JSONDict
from billing.meter.payers import read_wallets, refusal_wallet
from billing.meter.pricing import ExtraPrice, is_held, price_in
from billing.meter.quota import free_applies


@dataclass(frozen=True, slots=True)
class Quote:
    """What a call would cost now, and the balance after (the free ``quote`` tool)."""

    tool: str
    price_usd_micros: int
    currency: str
    amount: int
    balance: int
    balance_after: int
    sufficient: bool
    free: bool
    free_remaining: int | None
    rate: int

    def to_dict(self) -> JSONDict:
        return asdict(self)


async def quote(
    db: Database,
    *,
    agent_id: int,
    tool: str,
    extra_price: ExtraPrice | None = None,
    config: BillingConfig,
) -> Quote:
    """What a call of ``tool`` would cost now and the balance after; writes nothing.

    Priced in the wallet that would pay (the first, in paying order, that covers it), or in
    the wallet a refusal would name when none does.
    """
    async with db.uow() as uow:
        return await quote_in(
            uow, agent_id=agent_id, tool=tool, extra_price=extra_price, config=config
        )


async def quote_in(
    uow: UnitOfWork,
    *,
    agent_id: int,
    tool: str,
    extra_price: ExtraPrice | None = None,
    config: BillingConfig,
) -> Quote:
    """``quote`` inside a unit of work the caller already holds (reads only)."""
    price = config.prices.for_tool(tool)
    has_quota = price.free_per_month > 0
    wallets = await read_wallets(uow, agent_id, price if has_quota else None)
    left = max(price.free_per_month - (wallets.quota_used or 0), 0) if has_quota else 0
    free = free_applies(price, is_held(price, extra_price)) and left > 0
    fee = 0 if free else price.price_usd_micros
    payer = wallets.payer(fee, extra_price, config)
    if payer is None:
        currency, balance = await refusal_wallet(uow, agent_id, wallets)
        priced = price_in(currency, fee, extra_price, config)
    else:
        balance, priced = payer.balance, payer.price
    sufficient = balance >= priced.total
    return Quote(
        tool=tool,
        price_usd_micros=priced.total_usd_micros,
        currency=priced.currency,
        amount=priced.total,
        balance=balance,
        balance_after=balance - priced.total if sufficient else balance,
        sufficient=sufficient,
        free=free,
        free_remaining=left if has_quota else None,
        rate=priced.rate,
    )
