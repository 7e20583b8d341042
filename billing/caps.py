"""Spending caps: an owner's optional daily and monthly USD limits per agent (UTC).

What a paid call takes from the wallet (fee plus any escrowed slot price) is added to the
agent's day and month tallies by a conditional ``UPDATE ... WHERE spent + :x <= cap``, in the
same transaction as the charge or hold: a call that would pass a cap is refused with
SPENDING_CAP and writes nothing. A released hold gives its amount back to the tallies.
Tallies are kept only while the agent has a cap; setting a cap seeds them with what the agent
already spent this day and month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    Exists,
    ScalarSelect,
    Table,
    bindparam,
    case,
    func,
    select,
    update,
)

from agent_server.kernel.errors import SpendingCapReached, ValidationFailed
from agent_server.kernel.store import UnitOfWork
from billing.ledger import insert_or_none
from billing.models import (
    Escrow,
    EscrowStatus,
    LedgerTransaction,
    SpendingCap,
    SpendingTally,
    TransactionKind,
)

_TALLY: Table = SpendingTally.__table__  # type: ignore[assignment]
_TXNS: Table = LedgerTransaction.__table__  # type: ignore[assignment]


def _periods(at: datetime) -> list[tuple[str, str, datetime, datetime]]:
    """(name, key, start, reset) of the UTC day and month containing ``at``."""
    at = at.astimezone(UTC)
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return [
        ("daily", day.strftime("%Y-%m-%d"), day, day + timedelta(days=1)),
        ("monthly", month.strftime("%Y-%m"), month, next_month),
    ]


async def set_spending_caps(
    uow: UnitOfWork,
    agent_id: int,
    *,
    daily_usd_micros: int | None,
    monthly_usd_micros: int | None,
) -> None:
    """Set (or clear, with None) the agent's caps in USD micro-dollars. Does not commit."""
    for name, value in (
        ("daily_usd_micros", daily_usd_micros),
        ("monthly_usd_micros", monthly_usd_micros),
    ):
        if value is not None and value < 0:
            raise ValidationFailed.field(name, "a cap is a USD amount >= 0, or none")
    now = uow.clock.now()
    caps = await uow.session.get(SpendingCap, agent_id, with_for_update=True)
    if caps is None:
        caps = SpendingCap(agent_id=agent_id, updated_at=now)
        uow.session.add(caps)
    caps.daily_usd_micros = daily_usd_micros
    caps.monthly_usd_micros = monthly_usd_micros
    caps.updated_at = now
    await uow.flush()
    for _name, key, start, _reset in _periods(now):
        spent = await _spent_since(uow, agent_id, start)
        if (
            await insert_or_none(
                uow,
                _TALLY,
                {"agent_id": agent_id, "period": key, "spent_usd_micros": int(spent)},
                ["agent_id", "period"],
            )
            is None
        ):
            await uow.session.execute(
                update(_TALLY)
                .where(_TALLY.c.agent_id == agent_id, _TALLY.c.period == key)
                .values(spent_usd_micros=int(spent))
            )


@dataclass(frozen=True)
class Caps:
    """An agent's caps in USD micro-dollars (None: no cap), and its owner's threshold for
    ``balance.low`` (None: the server's default)."""

    daily: int | None
    monthly: int | None
    balance_low: int | None = None


def caps_columns() -> tuple[ScalarSelect[Any], ScalarSelect[Any], Exists, ScalarSelect[Any]]:
    """Scalar subqueries for the caps and low-balance threshold of the agent bound as
    ``:agent_id``, to fetch them with another query's rows."""
    agent: BindParameter[int] = bindparam("agent_id")
    daily = select(SpendingCap.daily_usd_micros).where(SpendingCap.agent_id == agent)
    monthly = select(SpendingCap.monthly_usd_micros).where(SpendingCap.agent_id == agent)
    low = select(SpendingCap.balance_low_usd_micros).where(SpendingCap.agent_id == agent)
    exists = select(SpendingCap.agent_id).where(SpendingCap.agent_id == agent).exists()
    return daily.scalar_subquery(), monthly.scalar_subquery(), exists, low.scalar_subquery()


async def caps_of(uow: UnitOfWork, agent_id: int) -> Caps | None:
    """The agent's caps, or None when it has none."""
    caps = await uow.session.get(SpendingCap, agent_id)
    if caps is None:
        return None
    return Caps(caps.daily_usd_micros, caps.monthly_usd_micros, caps.balance_low_usd_micros)


@dataclass(frozen=True)
class Spent:
    """What an agent spent this UTC day and month (USD micro-dollars), net of refunds."""

    day: int
    month: int
    day_resets_at: datetime
    month_resets_at: datetime


async def spent_of(uow: UnitOfWork, agent_id: int) -> Spent:
    """The agent's spending this day and month: its tallies while it has a cap, else its
    charges and escrow of the period less the refunds of that escrow."""
    now = uow.clock.now()
    figures: list[int] = []
    resets: list[datetime] = []
    for _name, key, start, reset in _periods(now):
        tally = (
            await uow.session.execute(
                select(_TALLY.c.spent_usd_micros).where(
                    _TALLY.c.agent_id == agent_id, _TALLY.c.period == key
                )
            )
        ).scalar_one_or_none()
        figures.append(
            int(tally) if tally is not None else await _spent_since(uow, agent_id, start)
        )
        resets.append(reset)
    return Spent(figures[0], figures[1], resets[0], resets[1])


async def _spent_since(uow: UnitOfWork, agent_id: int, start: datetime) -> int:
    spent = (
        await uow.session.execute(
            select(func.coalesce(func.sum(_TXNS.c.price_usd_micros), 0)).where(
                _TXNS.c.agent_id == agent_id,
                _TXNS.c.kind.in_([TransactionKind.CHARGE.value, TransactionKind.ESCROW.value]),
                _TXNS.c.created_at >= start,
            )
        )
    ).scalar_one()
    refunds = await uow.session.execute(
        select(Escrow.refunded, Escrow.amount, Escrow.price_usd_micros).where(
            Escrow.agent_id == agent_id,
            Escrow.status == EscrowStatus.REFUNDED.value,
            Escrow.settled_at >= start,
        )
    )
    refunded = sum(refunded_usd(p, a, r or 0) for r, a, p in refunds)
    return max(int(spent) - int(refunded), 0)


def raises(current: Caps | None, daily: int | None, monthly: int | None) -> list[str]:
    """Which of the new caps would let the agent spend more than ``current`` does (a cap
    removed, or a higher one): the fields only the owner may change that way."""
    now_daily = current.daily if current else None
    now_monthly = current.monthly if current else None
    out = []
    for name, old, new in (("daily", now_daily, daily), ("monthly", now_monthly, monthly)):
        if old is not None and (new is None or new > old):
            out.append(name)
    return out


async def add_spending(
    uow: UnitOfWork, agent_id: int, usd_micros: int, at: datetime, caps: Caps | None
) -> None:
    """Count ``usd_micros`` against the agent's ``caps`` (from ``caps_of``), or raise
    ``SpendingCapReached``. Nothing to do without caps."""
    if caps is None or usd_micros <= 0:
        return
    limits = {"daily": caps.daily, "monthly": caps.monthly}
    for name, key, _start, reset in _periods(at):
        cap = limits[name]
        if cap is None:
            continue
        await insert_or_none(
            uow,
            _TALLY,
            {"agent_id": agent_id, "period": key, "spent_usd_micros": 0},
            ["agent_id", "period"],
        )
        counted = await uow.session.execute(
            update(_TALLY)
            .where(
                _TALLY.c.agent_id == agent_id,
                _TALLY.c.period == key,
                _TALLY.c.spent_usd_micros + usd_micros <= cap,
            )
            .values(spent_usd_micros=_TALLY.c.spent_usd_micros + usd_micros)
        )
        if counted.rowcount != 1:  # type: ignore[attr-defined]
            spent = (
                await uow.session.execute(
                    select(_TALLY.c.spent_usd_micros).where(
                        _TALLY.c.agent_id == agent_id, _TALLY.c.period == key
                    )
                )
            ).scalar_one()
            raise SpendingCapReached(
                f"This call would pass the owner's {name} spending cap; it resets at "
                f"{reset.isoformat()}. The owner can raise the cap on the dashboard.",
                {
                    "cap": name,
                    "cap_usd_micros": cap,
                    "spent_usd_micros": int(spent),
                    "price_usd_micros": usd_micros,
                    "resets_at": reset.isoformat(),
                },
            )


def refunded_usd(price_usd_micros: int, amount: int, refunded: int) -> int:
    """The USD share of an escrow's ``price_usd_micros`` that ``refunded`` of its ``amount``
    base units are (rounded down)."""
    if amount <= 0 or refunded <= 0:
        return 0
    return price_usd_micros * min(refunded, amount) // amount


async def return_spending(uow: UnitOfWork, agent_id: int, usd_micros: int, at: datetime) -> None:
    """Give back what ``add_spending`` counted at ``at`` (a released hold, a refunded escrow)
    to the day and month of ``at``, never below zero."""
    if usd_micros <= 0:
        return
    for _name, key, _start, _reset in _periods(at):
        await uow.session.execute(
            update(_TALLY)
            .where(_TALLY.c.agent_id == agent_id, _TALLY.c.period == key)
            .values(
                spent_usd_micros=case(
                    (
                        _TALLY.c.spent_usd_micros >= usd_micros,
                        _TALLY.c.spent_usd_micros - usd_micros,
                    ),
                    else_=0,
                )
            )
        )
