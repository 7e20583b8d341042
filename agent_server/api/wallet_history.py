"""Wallet usage and history over REST: ``GET /api/agent/wallet/usage`` and
``GET /api/agent/wallet/transactions``, for the authenticated agent.

Every figure is a Money, the shape the ``get-usage`` and ``list-transactions`` tools answer:
the integer in its currency's base unit (satoshi, gwei, 10^-6 for USDT and USDC; micro-dollars
for USD), the currency and its text for people.
Transactions page by cursor, as every list does (``agent_server.kernel.paging``): a page
starts below the last id shown, so transactions written meanwhile neither shift nor repeat it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from agent_server.api.auth import CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.kernel.money import USD, Money
from agent_server.kernel.paging import decode_cursor, page_of
from billing.usage import PAGE_SIZE, transactions_for, usage_for

router = APIRouter(tags=["wallet"], responses=error_responses(401, 422))


class ToolUsageOut(BaseModel):
    tool: str = Field(examples=["search-specialists"])
    calls: int = Field(description="Successful calls in the period.")
    free_calls: int = Field(description="Calls that cost nothing (free quota or a free tool).")
    paid_calls: int
    price_usd: Money = Field(description="What the paid calls cost.")
    amounts: list[Money] = Field(description="What was charged, per currency.")


class UsageResponse(BaseModel):
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
    balance_change: Money = Field(
        description="What it did to your wallet balance (negative: money left)."
    )
    usd: Money | None = Field(description="The amount in USD, when converted.")
    rate: Money | None = Field(description="USD price of one coin, when converted.")
    tool: str | None
    call_id: str | None
    booking_id: int | None
    description: str


class TransactionsResponse(BaseModel):
    transactions: list[TransactionOut]
    total: int = Field(description="All your transactions.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


@router.get("/agent/wallet/usage", response_model=UsageResponse)
async def wallet_usage(
    caller: CurrentAgent,
    runtime: RuntimeDep,
    period: Annotated[
        str | None,
        Query(
            description="The month, YYYY-MM (UTC); the current month when left out.",
            examples=["2026-04"],
            max_length=7,
        ),
    ] = None,
) -> UsageResponse:
    """Calls and charges per tool for one calendar month."""
    async with runtime.db.uow() as uow:
        usage = await usage_for(uow, caller.agent_id, period)
    return UsageResponse(
        period=usage.period,
        usage=[
            ToolUsageOut(
                tool=u.tool,
                calls=u.calls,
                free_calls=u.free_calls,
                paid_calls=u.paid_calls,
                price_usd=Money.of(u.price_usd_micros, USD),
                amounts=[Money.of(amount, c) for c, amount in sorted(u.amounts.items())],
            )
            for u in usage.usage
        ],
        total_usd=Money.of(usage.total_usd_micros, USD),
    )


@router.get("/agent/wallet/transactions", response_model=TransactionsResponse)
async def wallet_transactions(
    caller: CurrentAgent,
    runtime: RuntimeDep,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The `next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = PAGE_SIZE,
) -> TransactionsResponse:
    """Your ledger history, newest first, `limit` a page (50 unless asked)."""
    before = decode_cursor(cursor)
    async with runtime.db.uow() as uow:
        history = await transactions_for(uow, caller.agent_id, per_page=limit + 1, before=before)
    shown, next_cursor = page_of(history.data, limit)
    return TransactionsResponse(
        transactions=[
            TransactionOut(
                id=item.id,
                type=item.type,
                created_at=item.created_at,
                amount=Money.of(item.amount, item.currency),
                balance_change=Money.of(item.balance_change, item.currency),
                usd=None if item.usd_micros is None else Money.of(item.usd_micros, USD),
                rate=None if item.rate is None else Money.of(item.rate, USD),
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
