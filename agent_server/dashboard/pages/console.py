"""The operator console: an overview (revenue by day and tool, deposits waiting for
confirmations, failed webhook deliveries with a retry, the approval queues) and one agent's
detail (status history, balances, deposits, bookings, usage, its API key)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import func, select, update

from agent_server.accounts.models import Agent, AgentKey, AgentStatusChange
from agent_server.booking.models import Booking
from agent_server.dashboard.people import require_operator
from agent_server.dashboard.web import (
    DashboardRoute,
    posted_form,
    redirect,
    render,
    runtime_of,
    signed_in,
)
from agent_server.events.models import OutboxEvent, OutboxStatus
from agent_server.kernel.errors import NotFound
from agent_server.kernel.money import decimal_text
from billing.models import LedgerTransaction, TransactionKind, UsageRecord
from billing.wallet_funds import balances
from wallets.models import Deposit, DepositStatus
from wallets.withdrawal_models import Withdrawal, WithdrawalStatus

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

REVENUE_DAYS = 30
LISTED = 50  # rows per table of the overview and the detail


@router.get("/operator")
async def overview(request: Request) -> Response:
    viewer = await signed_in(request)
    require_operator(viewer.person)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        since = uow.clock.now() - timedelta(days=REVENUE_DAYS)
        day = func.date(LedgerTransaction.created_at)
        revenue = (
            await uow.session.execute(
                select(
                    day.label("day"),
                    LedgerTransaction.tool,
                    LedgerTransaction.currency,
                    func.count().label("calls"),
                    func.sum(LedgerTransaction.amount).label("amount"),
                )
                .where(
                    LedgerTransaction.kind == TransactionKind.CHARGE.value,
                    LedgerTransaction.created_at >= since,
                )
                .group_by(day, LedgerTransaction.tool, LedgerTransaction.currency)
                .order_by(day.desc(), LedgerTransaction.tool, LedgerTransaction.currency)
            )
        ).all()
        waiting = (
            await uow.session.scalars(
                select(Deposit)
                .where(Deposit.status == DepositStatus.PENDING.value)
                .order_by(Deposit.id)
                .limit(LISTED)
            )
        ).all()
        failed = (
            await uow.session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.status == OutboxStatus.FAILED.value)
                .order_by(OutboxEvent.id.desc())
                .limit(LISTED)
            )
        ).all()
        approvals = await uow.session.scalar(
            select(func.count())
            .select_from(Withdrawal)
            .where(Withdrawal.status == WithdrawalStatus.AWAITING_APPROVAL.value)
        )
        await uow.commit()
    return render(
        request,
        "operator_console.html",
        {
            "title": "Operator console",
            "section": "console",
            "revenue": [
                {
                    "day": str(row.day),
                    "tool": row.tool or "-",
                    "calls": row.calls,
                    "amount": decimal_text(int(row.amount or 0), row.currency),
                    "currency": row.currency,
                }
                for row in revenue
            ],
            "waiting": [
                {
                    "id": d.id,
                    "agent_id": d.agent_id,
                    "network": d.network,
                    "tx_hash": d.tx_hash,
                    "amount": decimal_text(d.amount, d.currency),
                    "currency": d.currency,
                    "block": d.block_number,
                    "seen_at": d.seen_at,
                }
                for d in waiting
            ],
            "failed": failed,
            "approvals": approvals or 0,
            "days": REVENUE_DAYS,
        },
        viewer=viewer,
    )


@router.post("/operator/webhooks/{event_id}/retry")
async def retry_webhook(
    request: Request, event_id: Annotated[str, Path(max_length=40)]
) -> Response:
    """A failed event back in the worker's queue with its attempts counted afresh; an event
    that is not failed (retried already, delivered) is left as it is."""
    viewer = await signed_in(request)
    require_operator(viewer.person)
    await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        now = uow.clock.now()
        moved = await uow.session.execute(
            update(OutboxEvent)
            .where(
                OutboxEvent.event_id == event_id,
                OutboxEvent.status == OutboxStatus.FAILED.value,
            )
            .values(
                status=OutboxStatus.PENDING.value,
                attempts=0,
                next_attempt_at=now,
                claim_token=None,
                claimed_until=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        await uow.commit()
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise NotFound(
            f"no failed webhook event {event_id}: it was retried or delivered already; "
            "reload the operator console"
        )
    return redirect("/operator", "webhook_retry")


@router.get("/operator/agents/{agent_id}")
async def agent_detail(
    request: Request, agent_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Response:
    viewer = await signed_in(request)
    require_operator(viewer.person)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        if agent is None:
            raise NotFound(f"no agent {agent_id}; search the agents list for it")
        history = (
            await uow.session.scalars(
                select(AgentStatusChange)
                .where(AgentStatusChange.agent_id == agent_id)
                .order_by(AgentStatusChange.id.desc())
                .limit(LISTED)
            )
        ).all()
        keys = (
            await uow.session.scalars(
                select(AgentKey)
                .where(AgentKey.agent_id == agent_id)
                .order_by(AgentKey.id.desc())
                .limit(LISTED)
            )
        ).all()
        held = await balances(uow, agent_id)
        deposits = (
            await uow.session.scalars(
                select(Deposit)
                .where(Deposit.agent_id == agent_id)
                .order_by(Deposit.id.desc())
                .limit(LISTED)
            )
        ).all()
        bookings = (
            await uow.session.scalars(
                select(Booking)
                .where(Booking.booker_agent_id == agent_id)
                .order_by(Booking.id.desc())
                .limit(LISTED)
            )
        ).all()
        usage = (
            await uow.session.execute(
                select(
                    UsageRecord.period,
                    UsageRecord.tool,
                    UsageRecord.currency,
                    func.count().label("calls"),
                    func.sum(UsageRecord.amount).label("amount"),
                )
                .where(UsageRecord.agent_id == agent_id)
                .group_by(UsageRecord.period, UsageRecord.tool, UsageRecord.currency)
                .order_by(UsageRecord.period.desc(), UsageRecord.tool)
                .limit(LISTED)
            )
        ).all()
        await uow.commit()
    return render(
        request,
        "operator_agent.html",
        {
            "title": f"Agent {agent.id}",
            "section": "operator",
            "subject": agent,
            "history": history,
            "keys": keys,
            "balances": [
                {"currency": c, "amount": decimal_text(v, c)} for c, v in sorted(held.items())
            ],
            "deposits": [_deposit(d) for d in deposits],
            "bookings": bookings,
            "usage": [
                {
                    "period": row.period,
                    "tool": row.tool,
                    "calls": row.calls,
                    "amount": (
                        decimal_text(int(row.amount or 0), row.currency) if row.currency else "0"
                    ),
                    "currency": row.currency or "",
                }
                for row in usage
            ],
        },
        viewer=viewer,
    )


def _deposit(d: Deposit) -> dict[str, Any]:
    return {
        "id": d.id,
        "network": d.network,
        "tx_hash": d.tx_hash,
        "amount": decimal_text(d.amount, d.currency),
        "currency": d.currency,
        "status": d.status,
        "seen_at": d.seen_at,
    }
