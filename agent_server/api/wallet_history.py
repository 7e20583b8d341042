"""Wallet usage and history over REST: ``GET /api/agent/wallet/usage`` and
``GET /api/agent/wallet/transactions``, for the authenticated agent.

Amounts are integers in each currency's base unit (satoshi, gwei, 10^-6 for USDT and USDC) and
USD amounts are micro-dollars; ``*_display`` fields repeat them as decimal strings for people.
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
from agent_server.kernel.money import decimal_text, usd_decimal
from agent_server.kernel.paging import decode_cursor, page_of
from billing.usage import PAGE_SIZE, transactions_for, usage_for

router = APIRouter(tags=["wallet"], responses=error_responses(401, 422))


class ToolUsageOut(BaseModel):
    tool: str = Field(examples=["search-specialists"])
    calls: int = Field(description="Successful calls in the period.")
    free_calls: int = Field(description="Calls that cost nothing (free quota or a free tool).")
    paid_calls: int
    price_usd_micros: int = Field(description="What the paid calls cost, in USD micro-dollars.")
    price_usd_display: str = Field(examples=["0.03"])
    amounts: dict[str, int] = Field(
        description="What was charged, by currency, in base units.", examples=[{"USDC": 30000}]
    )


class UsageResponse(BaseModel):
    period: str = Field(examples=["2026-04"])
    usage: list[ToolUsageOut]
    total_usd_micros: int
    total_usd_display: str


class TransactionOut(BaseModel):
    id: int
    type: str = Field(
        description="deposit, charge, hold, release, escrow, refund, payout, adjustment or "
        "reversal",
        examples=["charge"],
    )
    created_at: datetime
    currency: str = Field(examples=["USDC"])
    amount: int = Field(description="What moved, in base units of `currency`.")
    amount_display: str = Field(examples=["0.01"])
    balance_change: int = Field(
        description="What it did to your wallet balance, in base units (negative: money left)."
    )
    usd_micros: int | None = Field(description="The USD price or value, in micro-dollars.")
    rate: int | None = Field(description="USD micro-dollars per whole coin, when converted.")
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
                price_usd_micros=u.price_usd_micros,
                price_usd_display=usd_decimal(u.price_usd_micros),
                amounts=u.amounts,
            )
            for u in usage.usage
        ],
        total_usd_micros=usage.total_usd_micros,
        total_usd_display=usd_decimal(usage.total_usd_micros),
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
                currency=item.currency,
                amount=item.amount,
                amount_display=decimal_text(item.amount, item.currency),
                balance_change=item.balance_change,
                usd_micros=item.usd_micros,
                rate=item.rate,
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
