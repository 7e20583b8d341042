"""The agent's ledger history for the dashboard: pages filtered by type, and CSV exports.

Rows are ``billing.usage.HistoryItem`` (what REST and MCP list), read by
``billing.usage.transactions_for`` with a transaction type filter and the dashboard's page
size. CSV amounts are integers in base units with a decimal column beside them,
so a spreadsheet and the ledger agree to the last satoshi.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.money import decimal_text, usd_decimal
from agent_server.kernel.store import UnitOfWork
from billing.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    TransactionKind,
)
from billing.usage import HistoryItem, Usage, transactions_for

PER_PAGE = 25
MAX_EXPORT_ROWS = 100_000
TYPES: tuple[str, ...] = tuple(kind.value for kind in TransactionKind)


def check_type(kind: str | None) -> str | None:
    """A transaction type from a filter form ('' or None: all types)."""
    if not kind:
        return None
    if kind not in TYPES:
        raise ValidationFailed.field("type", f"choose one of {', '.join(TYPES)}")
    return kind


@dataclass(frozen=True)
class HistoryView:
    items: list[HistoryItem]
    page: int
    per_page: int
    total: int
    kind: str | None

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


async def history_page(
    uow: UnitOfWork, agent_id: int, *, kind: str | None = None, page: int = 1
) -> HistoryView:
    """One page of the agent's transactions of type ``kind`` (all when None), newest first."""
    kind = check_type(kind)
    found = await transactions_for(uow, agent_id, page, kind=kind, per_page=PER_PAGE)
    return HistoryView(found.data, page, PER_PAGE, found.total, kind)


async def all_history(uow: UnitOfWork, agent_id: int, kind: str | None = None) -> list[HistoryItem]:
    """Every transaction of the agent of type ``kind`` (up to ``MAX_EXPORT_ROWS``), newest
    first, for the CSV export."""
    kind = check_type(kind)
    found = await transactions_for(uow, agent_id, 1, kind=kind, per_page=MAX_EXPORT_ROWS)
    return found.data


TRANSACTION_COLUMNS = (
    "id",
    "created_at",
    "type",
    "currency",
    "amount",
    "amount_display",
    "balance_change",
    "balance_change_display",
    "usd_micros",
    "rate",
    "tool",
    "call_id",
    "booking_id",
    "description",
)


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _safe_cell(v) for v in row])
    return out.getvalue()


def _safe_cell(value: Any) -> Any:
    # Spreadsheets run cells that start with these as formulas; a leading quote keeps text text.
    if isinstance(value, str) and value[:1] in ("=", "+", "@", "\t", "\r"):
        return "'" + value
    return value


def transactions_csv(items: Iterable[HistoryItem]) -> str:
    return _csv(
        TRANSACTION_COLUMNS,
        (
            (
                i.id,
                i.created_at.isoformat(),
                i.type,
                i.currency,
                i.amount,
                decimal_text(i.amount, i.currency),
                i.balance_change,
                decimal_text(i.balance_change, i.currency),
                i.usd_micros,
                i.rate,
                i.tool,
                i.call_id,
                i.booking_id,
                i.description,
            )
            for i in items
        ),
    )


USAGE_COLUMNS = ("period", "tool", "calls", "free_calls", "paid_calls", "usd_micros", "usd")


def usage_csv(usage: Usage) -> str:
    return _csv(
        USAGE_COLUMNS,
        (
            (
                usage.period,
                u.tool,
                u.calls,
                u.free_calls,
                u.paid_calls,
                u.price_usd_micros,
                usd_decimal(u.price_usd_micros),
            )
            for u in usage.usage
        ),
    )


async def daily_history(
    uow: UnitOfWork, agent_id: int, currency: str, days: int = 30
) -> tuple[list[str], dict[str, int], list[int]]:
    """The last ``days`` UTC days (oldest first), the tool fees charged on each, and the
    wallet's balance in ``currency`` at the end of each, from the ledger's own rows."""
    today = uow.clock.now().date()
    names = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    first = uow.clock.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days - 1
    )
    day = func.date(LedgerTransaction.created_at)
    spent_rows = await uow.session.execute(
        select(day, func.sum(LedgerTransaction.amount))
        .where(
            LedgerTransaction.agent_id == agent_id,
            LedgerTransaction.kind == TransactionKind.CHARGE.value,
            LedgerTransaction.currency == currency,
            LedgerTransaction.created_at >= first,
        )
        .group_by(day)
    )
    spent = {str(d): int(total or 0) for d, total in spent_rows}
    wallet = (
        select(LedgerAccount.id)
        .where(
            LedgerAccount.agent_id == agent_id,
            LedgerAccount.kind == AccountKind.WALLET.value,
            LedgerAccount.currency == currency,
        )
        .scalar_subquery()
    )
    moved = LedgerEntry.credit - LedgerEntry.debit
    before = await uow.session.scalar(
        select(func.coalesce(func.sum(moved), 0))
        .select_from(LedgerEntry)
        .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
        .where(LedgerEntry.account_id == wallet, LedgerTransaction.created_at < first)
    )
    changes = {
        str(d): int(total or 0)
        for d, total in await uow.session.execute(
            select(day, func.sum(moved))
            .select_from(LedgerEntry)
            .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
            .where(LedgerEntry.account_id == wallet, LedgerTransaction.created_at >= first)
            .group_by(day)
        )
    }
    running = int(before or 0)
    balances = []
    for name in names:
        running += changes.get(name, 0)
        balances.append(running)
    return names, spent, balances
