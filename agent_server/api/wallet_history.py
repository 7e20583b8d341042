"""Wallet usage and history over REST: ``GET /api/agent/wallet/usage`` and
``GET /api/agent/wallet/transactions``, for the authenticated agent.

The shapes are the ``get-usage`` and ``list-transactions`` tools' own
(``agent_server.services.wallet_history``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agent_server.api.auth import CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.services.wallet_history import (
    TransactionsOut,
    UsageOut,
    transactions_of,
    usage_of,
)
from billing.usage import PAGE_SIZE

router = APIRouter(tags=["wallet"], responses=error_responses(401, 422))


@router.get("/agent/wallet/usage", response_model=UsageOut)
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
) -> UsageOut:
    """Calls and charges per tool for one calendar month."""
    async with runtime.db.uow() as uow:
        return await usage_of(uow, caller.agent_id, period)


@router.get("/agent/wallet/transactions", response_model=TransactionsOut)
async def wallet_transactions(
    caller: CurrentAgent,
    runtime: RuntimeDep,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The `next_cursor` of the previous page."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = PAGE_SIZE,
) -> TransactionsOut:
    """Your ledger history, newest first, `limit` a page (50 unless asked)."""
    async with runtime.db.uow() as uow:
        return await transactions_of(uow, caller.agent_id, cursor=cursor, limit=limit)
