"""A wallet's usage and ledger history as every surface shows them: the ``get-usage`` and
``list-transactions`` tools and ``GET /api/agent/wallet/usage`` and ``/transactions``.

Every figure is a Money: the integer in its currency's base unit (satoshi, gwei, 10^-6 for USDT
and USDC; micro-dollars for USD), the currency and its text for people. Transactions page by
cursor (``agent_server.kernel.paging``): a page starts below the last id shown, so transactions
written meanwhile neither shift nor repeat it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from agent_server.kernel.money import USD, Money
from agent_server.kernel.paging import decode_cursor, page_of
from agent_server.kernel.store import UnitOfWork
from billing import usage


class ToolUsageOut(BaseModel):
    tool: str = Field(examples=["search-specialists"])
    calls: int = Field(description="Successful calls in the period.")
    free_calls: int = Field(description="Free quota or a free tool.")
    paid_calls: int
    price_usd: Money = Field(description="What its paid calls cost.")
    amounts: list[Money] = Field(description="Charged, per currency.")


class UsageOut(BaseModel):
    period: str = Field(examples=["2026-04"])
    usage: list[ToolUsageOut]
    total_usd: Money


class TransactionOut(BaseModel):
    id: int
    type: str = Field(
        description="deposit, charge, hold, release, escrow, refund, payout, adjustment or "
        "reversal",
        examples=["charge"],
    )
    created_at: datetime
    amount: Money = Field(description="What moved.")
    balance_change: Money = Field(description="Effect on your balance (negative: money left).")
    usd: Money | None = Field(description="The amount in USD, when converted.")
    rate: Money | None = Field(description="USD price of one coin, when converted.")
    tool: str | None
    call_id: str | None
    booking_id: int | None
    description: str


class TransactionsOut(BaseModel):
    transactions: list[TransactionOut]
    total: int = Field(description="All your transactions.")
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null at the end."
    )


def _money_or_none(amount: int | None, currency: str) -> Money | None:
    return None if amount is None else Money.of(amount, currency)


async def usage_of(uow: UnitOfWork, agent_id: int, period: str | None) -> UsageOut:
    """Calls and charges per tool for one calendar month (UTC), this month by default."""
    result = await usage.usage_for(uow, agent_id, period)
    return UsageOut(
        period=result.period,
        usage=[
            ToolUsageOut(
                tool=u.tool,
                calls=u.calls,
                free_calls=u.free_calls,
                paid_calls=u.paid_calls,
                price_usd=Money.of(u.price_usd_micros, USD),
                amounts=[Money.of(amount, c) for c, amount in sorted(u.amounts.items())],
            )
            for u in result.usage
        ],
        total_usd=Money.of(result.total_usd_micros, USD),
    )


async def transactions_of(
    uow: UnitOfWork, agent_id: int, *, cursor: str | None, limit: int
) -> TransactionsOut:
    """One page of the agent's ledger history, newest first, after ``cursor``."""
    history = await usage.transactions_for(
        uow, agent_id, per_page=limit + 1, before=decode_cursor(cursor)
    )
    shown, next_cursor = page_of(history.data, limit)
    return TransactionsOut(
        transactions=[
            TransactionOut(
                id=item.id,
                type=item.type,
                created_at=item.created_at,
                amount=Money.of(item.amount, item.currency),
                balance_change=Money.of(item.balance_change, item.currency),
                usd=_money_or_none(item.usd_micros, USD),
                rate=_money_or_none(item.rate, USD),
                tool=item.tool,
                call_id=item.call_id,
                booking_id=item.booking_id,
                description=item.description,
            )
            for item in shown
        ],
        total=history.total,
        next_cursor=next_cursor,
    )
