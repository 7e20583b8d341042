"""An owner's limits on an agent's money: daily and monthly spending caps, daily and monthly
withdrawal limits (enforced by ``services.withdrawal_limits``) and the threshold of
``balance.low``.

Who may change what:

* the agent (MCP ``set-spending-limits``, or REST without a code) may only make the caps and
  limits tighter: a lower one, or one where there was none. A language model can be talked
  into anything by the text it reads, so loosening needs the owner;
* the owner loosens them on the dashboard (signed in), or over REST: the request stores the
  new caps and mails a code to the owner (``request_raise``); the code, sent back within
  ``withdrawal_code_ttl`` and ``CODE_TRIES`` tries, applies them (``confirm_raise``). The API
  key alone cannot loosen anything.

The threshold only decides when ``balance.low`` fires; any surface may set it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent_server.kernel.config import Settings
from agent_server.kernel.errors import Forbidden, ValidationFailed
from agent_server.kernel.money import usd_text
from agent_server.kernel.store import UnitOfWork
from agent_server.services.owner_codes import Owner, code_minutes, issue_code, mail_code, try_code
from agent_server.services.withdrawal_limits import LIMIT_FIELDS, withdrawn_of
from billing.caps import caps_of, set_spending_caps, spent_of
from billing.config import BillingConfig
from billing.models import SpendingCap

_CAPS: Table = SpendingCap.__table__  # type: ignore[assignment]
CAP_FIELDS = {
    "daily": "daily_cap_usd_micros",
    "monthly": "monthly_cap_usd_micros",
    "withdraw_daily": LIMIT_FIELDS["daily"],
    "withdraw_monthly": LIMIT_FIELDS["monthly"],
}
LIMIT_NAMES = tuple(CAP_FIELDS)
OWNER_ROUTE = (
    "Ask your owner to raise it on the dashboard (Spending limits), or to confirm "
    "PUT /api/agent/spending-limits with the code it mails them "
    "(POST /api/agent/spending-limits/confirm)."
)


@dataclass(frozen=True)
class Limits:
    """An agent's limits and what it spent and withdrew against them (USD micro-dollars)."""

    daily_cap: int | None
    monthly_cap: int | None
    spent_today: int
    spent_this_month: int
    day_resets_at: datetime
    month_resets_at: datetime
    balance_low: int
    balance_low_is_default: bool
    raise_pending: bool
    daily_withdrawal_limit: int | None = None
    monthly_withdrawal_limit: int | None = None
    withdrawn_today: int = 0
    withdrawn_this_month: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "daily_cap_usd_micros": self.daily_cap,
            "monthly_cap_usd_micros": self.monthly_cap,
            "spent_today_usd_micros": self.spent_today,
            "spent_this_month_usd_micros": self.spent_this_month,
            "day_resets_at": self.day_resets_at.isoformat(),
            "month_resets_at": self.month_resets_at.isoformat(),
            "balance_low_usd_micros": self.balance_low,
            "raise_pending": self.raise_pending,
            "daily_withdrawal_limit_usd_micros": self.daily_withdrawal_limit,
            "monthly_withdrawal_limit_usd_micros": self.monthly_withdrawal_limit,
            "withdrawn_today_usd_micros": self.withdrawn_today,
            "withdrawn_this_month_usd_micros": self.withdrawn_this_month,
        }


@dataclass(frozen=True)
class Change:
    """The limits to change; a field left out (``keep``) stays as it is, a cap of None is
    removed."""

    daily: int | None = None
    monthly: int | None = None
    balance_low: int | None = None
    given: frozenset[str] = frozenset()
    withdraw_daily: int | None = None
    withdraw_monthly: int | None = None

    def after(self, row: SpendingCap) -> dict[str, int | None]:
        """Every cap and limit (``LIMIT_NAMES``) as it would be after the change."""
        out = _current(row)
        for name in LIMIT_NAMES:
            if name in self.given:
                out[name] = getattr(self, name)
        return out


def _current(row: SpendingCap) -> dict[str, int | None]:
    return {
        "daily": row.daily_usd_micros,
        "monthly": row.monthly_usd_micros,
        "withdraw_daily": row.withdraw_daily_usd_micros,
        "withdraw_monthly": row.withdraw_monthly_usd_micros,
    }


def looser(row: SpendingCap, after: dict[str, int | None]) -> list[str]:
    """The caps and limits ``after`` would loosen (removed, or higher): the owner's to change."""
    now = _current(row)
    return [
        name
        for name in LIMIT_NAMES
        if now[name] is not None and (after[name] is None or after[name] > now[name])  # type: ignore[operator]
    ]


async def limits(uow: UnitOfWork, agent_id: int, config: BillingConfig) -> Limits:
    """The agent's caps, its spending this UTC day and month net of refunds, and its
    low-balance threshold."""
    caps = await caps_of(uow, agent_id)
    spent = await spent_of(uow, agent_id)
    withdrawn = await withdrawn_of(uow, agent_id)
    row = await uow.session.get(SpendingCap, agent_id)
    low = caps.balance_low if caps else None
    return Limits(
        daily_cap=caps.daily if caps else None,
        monthly_cap=caps.monthly if caps else None,
        spent_today=spent.day,
        spent_this_month=spent.month,
        day_resets_at=spent.day_resets_at,
        month_resets_at=spent.month_resets_at,
        balance_low=config.balance_low_usd_micros if low is None else low,
        balance_low_is_default=low is None,
        raise_pending=row is not None and row.raise_code_hash is not None,
        daily_withdrawal_limit=row.withdraw_daily_usd_micros if row else None,
        monthly_withdrawal_limit=row.withdraw_monthly_usd_micros if row else None,
        withdrawn_today=withdrawn.day,
        withdrawn_this_month=withdrawn.month,
    )


def _check(change: Change) -> None:
    for name, value in (
        *((CAP_FIELDS[n], getattr(change, n)) for n in LIMIT_NAMES),
        ("balance_low_usd_micros", change.balance_low),
    ):
        if value is not None and value < 0:
            raise ValidationFailed.field(name, "a USD micro-dollar amount >= 0")


async def locked_caps(uow: UnitOfWork, agent_id: int) -> SpendingCap:
    """The agent's caps row, created empty if missing, locked for this transaction."""
    values = {"agent_id": agent_id, "updated_at": uow.clock.now(), "raise_code_tries": 0}
    insert = sqlite_insert(_CAPS) if uow.db.is_sqlite else pg_insert(_CAPS)
    await uow.session.execute(
        insert.values(values).on_conflict_do_nothing(index_elements=["agent_id"])
    )
    row = await uow.session.get(SpendingCap, agent_id, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


async def _set(uow: UnitOfWork, agent_id: int, row: SpendingCap, to: dict[str, int | None]) -> None:
    """Store caps and limits ``to`` (all of ``LIMIT_NAMES``) on the locked ``row``."""
    if (to["daily"], to["monthly"]) != (row.daily_usd_micros, row.monthly_usd_micros):
        await set_spending_caps(
            uow, agent_id, daily_usd_micros=to["daily"], monthly_usd_micros=to["monthly"]
        )
    row.withdraw_daily_usd_micros = to["withdraw_daily"]
    row.withdraw_monthly_usd_micros = to["withdraw_monthly"]
    row.updated_at = uow.clock.now()


async def _apply(uow: UnitOfWork, agent_id: int, row: SpendingCap, change: Change) -> None:
    if change.given & set(LIMIT_NAMES):
        await _set(uow, agent_id, row, change.after(row))
    if "balance_low" in change.given:
        row.balance_low_usd_micros = change.balance_low
        row.updated_at = uow.clock.now()
    await uow.flush()


async def tighten(uow: UnitOfWork, agent_id: int, change: Change) -> None:
    """Apply ``change`` if it only tightens the caps and limits (the agent's own surfaces);
    FORBIDDEN, naming the owner's route, if it would loosen one. Does not commit."""
    _check(change)
    row = await locked_caps(uow, agent_id)
    loosened = looser(row, change.after(row))
    if loosened:
        names = ", ".join(CAP_FIELDS[n] for n in loosened)
        raise Forbidden(
            f"Only your owner can raise or remove a spending cap or withdrawal limit ({names}); "
            "you can only lower them.",
            {"fields": [CAP_FIELDS[n] for n in loosened], "next_step": OWNER_ROUTE},
        )
    await _apply(uow, agent_id, row, change)


async def owner_set(uow: UnitOfWork, agent_id: int, change: Change) -> None:
    """The signed-in owner's change (the dashboard): any direction. Does not commit."""
    _check(change)
    row = await locked_caps(uow, agent_id)
    row.raise_code_hash = None
    row.raise_code_expires_at = None
    await _apply(uow, agent_id, row, change)


def _code_context(agent_id: int) -> str:
    return f"spending-limits:{agent_id}"


async def request_change(
    uow: UnitOfWork, settings: Settings, agent_id: int, change: Change
) -> bool:
    """REST: apply a tightening ``change`` now, or store a loosening one and mail its code to
    the owner (True: the code was sent and nothing changed yet but the threshold). Does not
    commit."""
    _check(change)
    row = await locked_caps(uow, agent_id)
    after = change.after(row)
    if not looser(row, after):
        await _apply(uow, agent_id, row, change)
        return False
    if "balance_low" in change.given:
        await _apply(
            uow,
            agent_id,
            row,
            Change(balance_low=change.balance_low, given=frozenset({"balance_low"})),
        )
    row.raise_daily_usd_micros = after["daily"]
    row.raise_monthly_usd_micros = after["monthly"]
    row.raise_withdraw_daily_usd_micros = after["withdraw_daily"]
    row.raise_withdraw_monthly_usd_micros = after["withdraw_monthly"]
    code = issue_code(
        row, settings, prefix="raise_", context=_code_context(agent_id), now=uow.clock.now()
    )
    minutes = code_minutes(settings)

    def cap(value: int | None) -> str:
        return "no cap" if value is None else usd_text(value)

    body = (
        f"Your agent {agent_id} asked to change its spending caps to: daily "
        f"{cap(after['daily'])}, monthly {cap(after['monthly'])}; and its withdrawal limits "
        f"to: daily {cap(after['withdraw_daily'])}, monthly {cap(after['withdraw_monthly'])}."
        f"\n\nYour confirmation code is {code} (valid {minutes} "
        "minutes). Send it to POST /api/agent/spending-limits/confirm, or change the caps "
        "yourself on the dashboard.\n\nIf you did not ask for this, ignore this mail: nothing "
        "changes without the code; replace the agent's API key.\n"
    )
    await mail_code(
        uow,
        Owner(agent_id=agent_id),
        subject="Confirm raising your agent's spending caps or withdrawal limits",
        body=body,
        kind="spending_limits_code",
    )
    await uow.flush()
    return True


async def confirm_raise(
    uow: UnitOfWork, settings: Settings, agent_id: int, code: str
) -> ValidationFailed | None:
    """Check the owner's code for the stored raise: a wrong code uses one of ``CODE_TRIES``
    tries (a conditional update, committed by the caller even when refused); the right one
    applies the stored caps. The error to raise after committing, or None."""
    tried = await try_code(
        uow,
        settings,
        _CAPS,
        [_CAPS.c.agent_id == agent_id],
        prefix="raise_",
        context=_code_context(agent_id),
        code=code,
    )
    if tried is None:
        return ValidationFailed.field(
            "code",
            "no raise is waiting, or its code expired or was tried too often; ask for the "
            "raise again (PUT /api/agent/spending-limits) to mail a new code",
        )
    if not tried.right:
        return tried.wrong()
    row = await uow.session.get(SpendingCap, agent_id, with_for_update=True, populate_existing=True)
    assert row is not None
    to = {
        "daily": row.raise_daily_usd_micros,
        "monthly": row.raise_monthly_usd_micros,
        "withdraw_daily": row.raise_withdraw_daily_usd_micros,
        "withdraw_monthly": row.raise_withdraw_monthly_usd_micros,
    }
    row.raise_code_hash = None
    row.raise_code_expires_at = None
    row.raise_daily_usd_micros = None
    row.raise_monthly_usd_micros = None
    row.raise_withdraw_daily_usd_micros = None
    row.raise_withdraw_monthly_usd_micros = None
    await _set(uow, agent_id, row, to)
    await uow.flush()
    return None
