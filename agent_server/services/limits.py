"""An owner's limits on an agent's money: daily and monthly spending caps and the threshold
of ``balance.low``.

Who may change what:

* the agent (MCP ``set-spending-limits``, or REST without a code) may only make the caps
  tighter: a lower cap, or a cap where there was none. A language model can be talked into
  anything by the text it reads, so loosening needs the owner;
* the owner loosens them on the dashboard (signed in), or over REST: the request stores the
  new caps and mails a code to the owner (``request_raise``); the code, sent back within
  ``withdrawal_code_ttl`` and ``CODE_TRIES`` tries, applies them (``confirm_raise``). The API
  key alone cannot loosen anything.

The threshold only decides when ``balance.low`` fires; any surface may set it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent_server.accounts.keys import hash_secret, new_code
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import Forbidden, ValidationFailed
from agent_server.kernel.money import usd_text
from agent_server.kernel.store import UnitOfWork
from agent_server.mail import OutgoingMail, queue_mail
from agent_server.services.withdrawals import Owner, owner_email
from billing.caps import Caps, caps_of, raises, set_spending_caps, spent_of
from billing.config import BillingConfig
from billing.models import SpendingCap

CODE_TRIES = 5
_CAPS: Table = SpendingCap.__table__  # type: ignore[assignment]
CAP_FIELDS = {"daily": "daily_cap_usd_micros", "monthly": "monthly_cap_usd_micros"}
OWNER_ROUTE = (
    "Ask your owner to raise it on the dashboard (Spending limits), or to confirm "
    "PUT /api/agent/spending-limits with the code it mails them "
    "(POST /api/agent/spending-limits/confirm)."
)


@dataclass(frozen=True)
class Limits:
    """An agent's limits and what it spent against them (USD micro-dollars)."""

    daily_cap: int | None
    monthly_cap: int | None
    spent_today: int
    spent_this_month: int
    day_resets_at: datetime
    month_resets_at: datetime
    balance_low: int
    balance_low_is_default: bool
    raise_pending: bool

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
        }


@dataclass(frozen=True)
class Change:
    """The limits to change; a field left out (``keep``) stays as it is, a cap of None is
    removed."""

    daily: int | None = None
    monthly: int | None = None
    balance_low: int | None = None
    given: frozenset[str] = frozenset()

    def caps_after(self, current: Caps | None) -> tuple[int | None, int | None]:
        daily = current.daily if current else None
        monthly = current.monthly if current else None
        if "daily" in self.given:
            daily = self.daily
        if "monthly" in self.given:
            monthly = self.monthly
        return daily, monthly


async def limits(uow: UnitOfWork, agent_id: int, config: BillingConfig) -> Limits:
    """The agent's caps, its spending this UTC day and month net of refunds, and its
    low-balance threshold."""
    caps = await caps_of(uow, agent_id)
    spent = await spent_of(uow, agent_id)
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
    )


def _check(change: Change) -> None:
    for name, value in (
        ("daily_cap_usd_micros", change.daily),
        ("monthly_cap_usd_micros", change.monthly),
        ("balance_low_usd_micros", change.balance_low),
    ):
        if value is not None and value < 0:
            raise ValidationFailed.field(name, "a USD micro-dollar amount >= 0")


async def _locked_caps(uow: UnitOfWork, agent_id: int) -> SpendingCap:
    """The agent's caps row, created empty if missing, locked for this transaction."""
    values = {"agent_id": agent_id, "updated_at": uow.clock.now(), "raise_code_tries": 0}
    insert = sqlite_insert(_CAPS) if uow.db.is_sqlite else pg_insert(_CAPS)
    await uow.session.execute(
        insert.values(values).on_conflict_do_nothing(index_elements=["agent_id"])
    )
    row = await uow.session.get(SpendingCap, agent_id, with_for_update=True, populate_existing=True)
    assert row is not None
    return row


async def _apply(uow: UnitOfWork, agent_id: int, row: SpendingCap, change: Change) -> None:
    current = Caps(row.daily_usd_micros, row.monthly_usd_micros)
    if change.given & {"daily", "monthly"}:
        daily, monthly = change.caps_after(current)
        await set_spending_caps(uow, agent_id, daily_usd_micros=daily, monthly_usd_micros=monthly)
    if "balance_low" in change.given:
        row.balance_low_usd_micros = change.balance_low
        row.updated_at = uow.clock.now()
    await uow.flush()


async def tighten(uow: UnitOfWork, agent_id: int, change: Change) -> None:
    """Apply ``change`` if it only tightens the caps (the agent's own surfaces); FORBIDDEN,
    naming the owner's route, if it would loosen one. Does not commit."""
    _check(change)
    row = await _locked_caps(uow, agent_id)
    current = Caps(row.daily_usd_micros, row.monthly_usd_micros)
    looser = raises(current, *change.caps_after(current))
    if looser:
        names = ", ".join(CAP_FIELDS[n] for n in looser)
        raise Forbidden(
            f"Only your owner can raise or remove a spending cap ({names}); you can only "
            "lower them.",
            {"fields": [CAP_FIELDS[n] for n in looser], "next_step": OWNER_ROUTE},
        )
    await _apply(uow, agent_id, row, change)


async def owner_set(uow: UnitOfWork, agent_id: int, change: Change) -> None:
    """The signed-in owner's change (the dashboard): any direction. Does not commit."""
    _check(change)
    row = await _locked_caps(uow, agent_id)
    row.raise_code_hash = None
    row.raise_code_expires_at = None
    await _apply(uow, agent_id, row, change)


def _code_hash(settings: Settings, agent_id: int, code: str) -> str:
    pepper = settings.secret_pepper.get_secret_value()
    return hash_secret(pepper, code, context=f"spending-limits:{agent_id}")


async def request_change(
    uow: UnitOfWork, settings: Settings, agent_id: int, change: Change
) -> bool:
    """REST: apply a tightening ``change`` now, or store a loosening one and mail its code to
    the owner (True: the code was sent and nothing changed yet but the threshold). Does not
    commit."""
    _check(change)
    row = await _locked_caps(uow, agent_id)
    current = Caps(row.daily_usd_micros, row.monthly_usd_micros)
    daily, monthly = change.caps_after(current)
    if not raises(current, daily, monthly):
        await _apply(uow, agent_id, row, change)
        return False
    if "balance_low" in change.given:
        await _apply(
            uow,
            agent_id,
            row,
            Change(balance_low=change.balance_low, given=frozenset({"balance_low"})),
        )
    code = new_code()
    row.raise_daily_usd_micros = daily
    row.raise_monthly_usd_micros = monthly
    row.raise_code_hash = _code_hash(settings, agent_id, code)
    row.raise_code_tries = 0
    row.raise_code_expires_at = uow.clock.now() + settings.withdrawal_code_ttl
    minutes = int(settings.withdrawal_code_ttl.total_seconds() // 60)

    def cap(value: int | None) -> str:
        return "no cap" if value is None else usd_text(value)

    body = (
        f"Your agent {agent_id} asked to change its spending caps to: daily {cap(daily)}, "
        f"monthly {cap(monthly)}.\n\nYour confirmation code is {code} (valid {minutes} "
        "minutes). Send it to POST /api/agent/spending-limits/confirm, or change the caps "
        "yourself on the dashboard.\n\nIf you did not ask for this, ignore this mail: nothing "
        "changes without the code; replace the agent's API key.\n"
    )
    await queue_mail(
        uow,
        OutgoingMail(
            to=await owner_email(uow, Owner(agent_id=agent_id)),
            subject="Confirm raising your agent's spending caps",
            body=body,
            kind="spending_limits_code",
        ),
    )
    await uow.flush()
    return True


async def confirm_raise(
    uow: UnitOfWork, settings: Settings, agent_id: int, code: str
) -> ValidationFailed | None:
    """Check the owner's code for the stored raise: a wrong code uses one of ``CODE_TRIES``
    tries (a conditional update, committed by the caller even when refused); the right one
    applies the stored caps. The error to raise after committing, or None."""
    now = uow.clock.now()
    counted = await uow.session.execute(
        update(_CAPS)
        .where(
            _CAPS.c.agent_id == agent_id,
            _CAPS.c.raise_code_hash.is_not(None),
            _CAPS.c.raise_code_tries < CODE_TRIES,
            _CAPS.c.raise_code_expires_at > now,
        )
        .values(raise_code_tries=_CAPS.c.raise_code_tries + 1)
        .returning(_CAPS.c.raise_code_hash, _CAPS.c.raise_code_tries)
    )
    stored = counted.one_or_none()
    if stored is None:
        return ValidationFailed.field(
            "code",
            "no raise is waiting, or its code expired or was tried too often; ask for the "
            "raise again (PUT /api/agent/spending-limits) to mail a new code",
        )
    if not secrets.compare_digest(stored[0], _code_hash(settings, agent_id, code.strip())):
        left = max(CODE_TRIES - int(stored[1]), 0)
        return ValidationFailed.field(
            "code", f"wrong code; {left} tries left (check the owner's latest mail)"
        )
    row = await uow.session.get(SpendingCap, agent_id, populate_existing=True)
    assert row is not None
    daily, monthly = row.raise_daily_usd_micros, row.raise_monthly_usd_micros
    row.raise_code_hash = None
    row.raise_code_expires_at = None
    row.raise_daily_usd_micros = None
    row.raise_monthly_usd_micros = None
    await set_spending_caps(uow, agent_id, daily_usd_micros=daily, monthly_usd_micros=monthly)
    return None
