"""Usage per tool and period, and the agent's ledger history, for REST, MCP and the dashboard."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, case, func, select

from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.store import UnitOfWork
from billing.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    TransactionKind,
    UsageRecord,
)

PAGE_SIZE = 50
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_USAGE: Table = UsageRecord.__table__  # type: ignore[assignment]
_TXNS: Table = LedgerTransaction.__table__  # type: ignore[assignment]
_ENTRIES: Table = LedgerEntry.__table__  # type: ignore[assignment]
_ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[assignment]


def check_period(period: str) -> str:
    """A ``YYYY-MM`` period, or ``ValidationFailed`` naming ``period``."""
    if not isinstance(period, str) or not _PERIOD.match(period):
        raise ValidationFailed.field("period", "use a month as YYYY-MM, e.g. 2026-03")
    return period


@dataclass(frozen=True)
class ToolUsage:
    """One tool's successful metered calls in a period."""

    tool: str
    calls: int
    free_calls: int
    paid_calls: int
    price_usd_micros: int
    # What was charged, by currency, in base units.
    amounts: dict[str, int]


@dataclass(frozen=True)
class Usage:
    period: str
    usage: list[ToolUsage]
    total_usd_micros: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def usage_for(uow: UnitOfWork, agent_id: int, period: str | None = None) -> Usage:
    """Calls and charges per tool for one month (default: the current one, UTC)."""
    period = check_period(period) if period is not None else uow.clock.now().strftime("%Y-%m")
    rows = await uow.session.execute(
        select(
            _USAGE.c.tool,
            _USAGE.c.currency,
            func.count().label("calls"),
            func.sum(case((_USAGE.c.free, 1), else_=0)).label("free_calls"),
            func.coalesce(func.sum(_USAGE.c.price_usd_micros), 0).label("usd"),
            func.coalesce(func.sum(_USAGE.c.amount), 0).label("amount"),
        )
        .where(_USAGE.c.agent_id == agent_id, _USAGE.c.period == period)
        .group_by(_USAGE.c.tool, _USAGE.c.currency)
    )
    tools: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"calls": 0, "free_calls": 0, "usd": 0, "amounts": {}}
    )
    for row in rows:
        entry = tools[str(row.tool)]
        entry["calls"] += int(row.calls)
        entry["free_calls"] += int(row.free_calls or 0)
        entry["usd"] += int(row.usd)
        if row.currency is not None and int(row.amount):
            entry["amounts"][str(row.currency)] = int(row.amount)
    usage = [
        ToolUsage(
            tool=tool,
            calls=entry["calls"],
            free_calls=entry["free_calls"],
            paid_calls=entry["calls"] - entry["free_calls"],
            price_usd_micros=entry["usd"],
            amounts=entry["amounts"],
        )
        for tool, entry in sorted(tools.items())
    ]
    return Usage(period, usage, sum(u.price_usd_micros for u in usage))


@dataclass(frozen=True)
class HistoryItem:
    """One ledger transaction as the agent sees it."""

    id: int
    type: str
    created_at: datetime
    currency: str
    amount: int
    # What the transaction did to the agent's wallet balance (negative: money left it).
    balance_change: int
    usd_micros: int | None
    rate: int | None
    tool: str | None
    call_id: str | None
    booking_id: int | None
    description: str


@dataclass(frozen=True)
class HistoryPage:
    current_page: int
    per_page: int
    total: int
    data: list[HistoryItem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        body = asdict(self)
        for item in body["data"]:
            item["created_at"] = item["created_at"].isoformat()
        return body


async def transactions_for(
    uow: UnitOfWork,
    agent_id: int,
    page: int = 1,
    *,
    kind: str | None = None,
    per_page: int = PAGE_SIZE,
    before: int | None = None,
) -> HistoryPage:
    """The agent's ledger transactions, newest first, ``per_page`` a page (pages from 1);
    only those of type ``kind`` when given, and only those with an id below ``before`` (a
    cursor's position: pass page 1 with it) when given. ``total`` counts them all."""
    if not isinstance(page, int) or page < 1:
        raise ValidationFailed.field("page", "pages are numbered from 1")
    if kind is not None and kind not in {k.value for k in TransactionKind}:
        kinds = ", ".join(k.value for k in TransactionKind)
        raise ValidationFailed.field("type", f"choose one of {kinds}")
    where = [_TXNS.c.agent_id == agent_id]
    if kind is not None:
        where.append(_TXNS.c.kind == kind)
    total = (
        await uow.session.execute(select(func.count()).select_from(_TXNS).where(*where))
    ).scalar_one()
    below = [_TXNS.c.id < before] if before is not None else []
    rows = list(
        await uow.session.execute(
            select(_TXNS)
            .where(*where, *below)
            .order_by(_TXNS.c.id.desc())
            .limit(per_page)
            .offset((page - 1) * per_page)
        )
    )
    changes: dict[int, int] = defaultdict(int)
    ids = [int(row.id) for row in rows]
    for start in range(0, len(ids), 1000):  # bounded IN lists for long exports
        for txn_id, change in await uow.session.execute(
            select(_ENTRIES.c.transaction_id, func.sum(_ENTRIES.c.credit - _ENTRIES.c.debit))
            .join(_ACCOUNTS, _ACCOUNTS.c.id == _ENTRIES.c.account_id)
            .where(
                _ENTRIES.c.transaction_id.in_(ids[start : start + 1000]),
                _ACCOUNTS.c.agent_id == agent_id,
                _ACCOUNTS.c.kind == AccountKind.WALLET.value,
            )
            .group_by(_ENTRIES.c.transaction_id)
        ):
            changes[int(txn_id)] = int(change)
    return HistoryPage(
        current_page=page,
        per_page=per_page,
        total=int(total),
        data=[
            HistoryItem(
                id=int(row.id),
                type=str(row.kind),
                created_at=row.created_at,
                currency=str(row.currency),
                amount=int(row.amount),
                balance_change=changes[int(row.id)],
                usd_micros=row.price_usd_micros,
                rate=row.rate,
                tool=row.tool,
                call_id=row.call_id,
                booking_id=row.booking_id,
                description=str(row.memo),
            )
            for row in rows
        ],
    )
