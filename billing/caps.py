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

from sqlalchemy import BindParameter, Exists, ScalarSelect, Table, bindparam, func, select, update

from agent_server.kernel.errors import SpendingCapReached, ValidationFailed
from agent_server.kernel.store import UnitOfWork
from billing.ledger import insert_or_none
from billing.models import LedgerTransaction, SpendingCap, SpendingTally, TransactionKind

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
        spent = (
            await uow.session.execute(
                select(func.coalesce(func.sum(_TXNS.c.price_usd_micros), 0)).where(
                    _TXNS.c.agent_id == agent_id,
                    _TXNS.c.kind.in_([TransactionKind.CHARGE.value, TransactionKind.ESCROW.value]),
                    _TXNS.c.created_at >= start,
                )
            )
        ).scalar_one()
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
    """An agent's caps in USD micro-dollars (None: no cap)."""

    daily: int | None
    monthly: int | None


def caps_columns() -> tuple[ScalarSelect[Any], ScalarSelect[Any], Exists]:
    """Scalar subqueries for the caps of the agent bound as ``:agent_id``, to fetch them with
    another query's rows."""
    agent: BindParameter[int] = bindparam("agent_id")
    daily = select(SpendingCap.daily_usd_micros).where(SpendingCap.agent_id == agent)
    monthly = select(SpendingCap.monthly_usd_micros).where(SpendingCap.agent_id == agent)
    exists = select(SpendingCap.agent_id).where(SpendingCap.agent_id == agent).exists()
    return daily.scalar_subquery(), monthly.scalar_subquery(), exists


async def caps_of(uow: UnitOfWork, agent_id: int) -> Caps | None:
    """The agent's caps, or None when it has none."""
    caps = await uow.session.get(SpendingCap, agent_id)
    return None if caps is None else Caps(caps.daily_usd_micros, caps.monthly_usd_micros)


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


async def return_spending(uow: UnitOfWork, agent_id: int, usd_micros: int, at: datetime) -> None:
    """Give back what ``add_spending`` counted at ``at`` (a released hold)."""
    if usd_micros <= 0:
        return
    for _name, key, _start, _reset in _periods(at):
        await uow.session.execute(
            update(_TALLY)
            .where(
                _TALLY.c.agent_id == agent_id,
                _TALLY.c.period == key,
                _TALLY.c.spent_usd_micros >= usd_micros,
            )
            .values(spent_usd_micros=_TALLY.c.spent_usd_micros - usd_micros)
        )
