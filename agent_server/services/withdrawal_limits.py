"""An owner's daily and monthly limits on what an agent withdraws (USD micro-dollars, UTC).

What counts: the amount (not the fee) of every withdrawal and payout the agent requested in
the UTC day or month, at the rate it was quoted at, unless it ended without reaching the chain
(rejected, cancelled, failed): so pending, sending, sent and confirmed ones all count.

``check`` runs inside the request's transaction, before the withdrawal row is written: it
locks the agent's caps row (``SELECT ... FOR UPDATE``; SQLite's writers are serial anyway),
then sums the period's withdrawals. A second request of the same agent waits for the lock
and, once the first commits, counts it, so two concurrent requests cannot both pass a limit.
The limits themselves are set and loosened by ``services.limits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from agent_server.kernel.errors import SpendingCapReached
from agent_server.kernel.money import usd_text
from agent_server.kernel.store import UnitOfWork
from billing.models import SpendingCap
from wallets.rates import base_units_to_usd
from wallets.withdrawal_models import Withdrawal, WithdrawalStatus

LIMIT_FIELDS = {
    "daily": "daily_withdrawal_limit_usd_micros",
    "monthly": "monthly_withdrawal_limit_usd_micros",
}
_ENDED_UNSENT = [
    s.value
    for s in (WithdrawalStatus.REJECTED, WithdrawalStatus.CANCELLED, WithdrawalStatus.FAILED)
]


@dataclass(frozen=True)
class Withdrawn:
    """What an agent withdrew (or has pending) this UTC day and month, USD micro-dollars."""

    day: int
    month: int
    day_resets_at: datetime
    month_resets_at: datetime


def _starts(now: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return day, month, day + timedelta(days=1), next_month


async def withdrawn_of(uow: UnitOfWork, agent_id: int) -> Withdrawn:
    """The agent's withdrawals and payouts of this UTC day and month that count (see module)."""
    day, month, day_reset, month_reset = _starts(uow.clock.now())
    rows = await uow.session.execute(
        select(
            Withdrawal.amount,
            Withdrawal.currency,
            Withdrawal.rate_usd_micros,
            Withdrawal.requested_at,
        ).where(
            Withdrawal.agent_id == agent_id,
            Withdrawal.requested_at >= month,
            Withdrawal.status.not_in(_ENDED_UNSENT),
        )
    )
    today = this_month = 0
    for amount, currency, rate, requested_at in rows.all():
        # Every request records its rate; a row without one (none today) counts as unpriced.
        usd = base_units_to_usd(int(amount), str(currency), int(rate)) if rate else 0
        this_month += usd
        if requested_at >= day:
            today += usd
    return Withdrawn(today, this_month, day_reset, month_reset)


async def check(uow: UnitOfWork, agent_id: int, amount_usd_micros: int) -> None:
    """Refuse (``SPENDING_CAP``, naming the limit, what was withdrawn and when it resets) a
    withdrawal worth ``amount_usd_micros`` that would pass the agent's daily or monthly
    withdrawal limit; the caps row stays locked until the caller's transaction ends."""
    caps = await uow.session.get(
        SpendingCap, agent_id, with_for_update=True, populate_existing=True
    )
    if caps is None:
        return
    limits = {"daily": caps.withdraw_daily_usd_micros, "monthly": caps.withdraw_monthly_usd_micros}
    if limits["daily"] is None and limits["monthly"] is None:
        return
    withdrawn = await withdrawn_of(uow, agent_id)
    figures = {
        "daily": (withdrawn.day, withdrawn.day_resets_at),
        "monthly": (withdrawn.month, withdrawn.month_resets_at),
    }
    for name in ("daily", "monthly"):
        limit = limits[name]
        if limit is None:
            continue
        so_far, resets_at = figures[name]
        if so_far + amount_usd_micros <= limit:
            continue
        left = max(limit - so_far, 0)
        raise SpendingCapReached(
            f"This withdrawal ({usd_text(amount_usd_micros)}) would pass the owner's "
            f"{name} withdrawal limit of {usd_text(limit)} ({usd_text(so_far)} withdrawn or "
            f"pending this {'day' if name == 'daily' else 'month'}); at most "
            f"{usd_text(left)} more until {resets_at.isoformat()}.",
            {
                "field": "amount",
                "limit": LIMIT_FIELDS[name],
                "limit_usd_micros": limit,
                "withdrawn_usd_micros": so_far,
                "amount_usd_micros": amount_usd_micros,
                "remaining_usd_micros": left,
                "resets_at": resets_at.isoformat(),
                "next_step": "Request a smaller amount, wait until the limit resets, or ask "
                "your owner to raise it on the dashboard (Spending limits) or to confirm "
                "PUT /api/agent/spending-limits with the code it mails them.",
            },
        )


async def would_pass(uow: UnitOfWork, agent_id: int, amount_usd_micros: int) -> bool:
    """Whether ``check`` would refuse it (for scheduled payouts, which skip rather than fail)."""
    try:
        await check(uow, agent_id, amount_usd_micros)
    except SpendingCapReached:
        return True
    return False
