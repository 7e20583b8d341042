"""Closing an agent's account without stranding money.

Before the agent's data is erased (``accounts.service.delete_agent``), in the same
transaction and under the agent's row lock, ``settle_before_closing`` looks at what the agent
still holds: its wallets, what its schedules earned (payable) and its withdrawals not yet
final. Anything left refuses the closing, naming the amounts and the ways out: withdraw it
(and wait for the withdrawals to end), or choose ``remaining="forfeit"``, which records the
owner's explicit choice: each balance moves to the forfeited account with that reason.
Withdrawals still open always refuse it: a failed one would return money to a closed account.
``close_account`` is the use case every surface calls: settle, withdraw the agent's schedules
(``booking.profiles.withdraw_schedules``), then erase.

Forfeiting a balance destroys money, so the API key alone cannot do it: over REST the first
``remaining=forfeit`` mails a code to the owner (``request_forfeit``) and the closing goes
ahead only with that code (``confirm_forfeit``: ``CODE_TRIES`` tries within
``withdrawal_code_ttl``, each counted even when wrong); on the dashboard the signed-in owner's
explicit choice is the confirmation. ``close_account`` forfeits only when told the owner
confirmed it (``owner_confirmed``).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Table, func, select, update

from agent_server.accounts.service import delete_agent
from agent_server.booking.profiles import withdraw_schedules
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.money import decimal_text
from agent_server.kernel.store import UnitOfWork
from agent_server.services.limits import locked_caps
from agent_server.services.owner_codes import Owner, code_minutes, issue_code, mail_code, try_code
from agent_server.services.withdrawals import payable_balance
from billing.ledger import AccountRef, credit, debit, post, system_account
from billing.models import AccountKind, LedgerAccount, SpendingCap, TransactionKind
from billing.wallet_funds import paying_wallets
from wallets.withdrawal_models import FINAL_STATUSES, Withdrawal

Remaining = Literal["forfeit"] | None
_CAPS: Table = SpendingCap.__table__  # type: ignore[assignment]


async def _left(uow: UnitOfWork, agent_id: int) -> list[tuple[AccountRef, int]]:
    held = [(ref, amount) for ref, amount in await paying_wallets(uow, agent_id) if amount > 0]
    payables = await uow.session.execute(
        select(LedgerAccount.id, LedgerAccount.currency).where(
            LedgerAccount.agent_id == agent_id, LedgerAccount.kind == AccountKind.PAYABLE.value
        )
    )
    for account_id, currency in payables.all():
        ref = AccountRef(int(account_id), AccountKind.PAYABLE, str(currency))
        owed = await payable_balance(uow, ref, lock=True)
        if owed > 0:
            held.append((ref, owed))
    return held


def _listed(left: list[tuple[AccountRef, int]]) -> str:
    return ", ".join(
        f"{decimal_text(amount, ref.currency)} {ref.currency}"
        + (" earned" if ref.kind is AccountKind.PAYABLE else "")
        for ref, amount in left
    )


async def _refuse_in_flight(uow: UnitOfWork, agent_id: int) -> None:
    in_flight = await uow.session.scalar(
        select(func.count()).where(
            Withdrawal.agent_id == agent_id,
            Withdrawal.status.not_in([s.value for s in FINAL_STATUSES]),
        )
    )
    if in_flight:
        raise ValidationFailed.field(
            "remaining",
            f"{in_flight} withdrawal(s) are not final yet; wait until they are confirmed, or "
            "cancel them, then close the account",
        )


async def settle_before_closing(
    uow: UnitOfWork, agent_id: int, remaining: Remaining, *, owner_confirmed: bool
) -> None:
    """Refuse the closing while money is left or in flight, unless the owner forfeits it
    (``owner_confirmed``: by the mailed code, or signed in on the dashboard)."""
    await _refuse_in_flight(uow, agent_id)
    left = await _left(uow, agent_id)
    if not left:
        return
    if remaining != "forfeit":
        raise ValidationFailed.field(
            "remaining",
            f"the account still holds {_listed(left)}; withdraw it first (request-withdrawal, "
            "POST /api/agent/withdrawals) or close with remaining=forfeit to give it up",
        )
    if not owner_confirmed:
        raise ValidationFailed.field(
            "code",
            f"giving up {_listed(left)} needs the owner's confirmation: close with "
            "remaining=forfeit and no code to mail one to the owner, then again with "
            "remaining=forfeit&code=...; or the owner closes the account on the dashboard",
        )
    for ref, amount in left:
        forfeited = await system_account(uow, AccountKind.FORFEITED, ref.currency)
        await post(
            uow,
            kind=TransactionKind.ADJUSTMENT,
            reference=f"forfeit:agent:{agent_id}:{ref.kind.value}:{ref.currency}",
            legs=[debit(ref, amount), credit(forfeited, amount)],
            currency=ref.currency,
            amount=amount,
            agent_id=agent_id,
            memo=f"forfeited on closing the account, by the owner's choice ({ref.kind.value})",
        )


async def close_account(
    uow: UnitOfWork, agent_id: int, remaining: Remaining, *, owner_confirmed: bool
) -> None:
    """Close the agent's account in one transaction under its row lock: settle what it holds
    (or refuse, changing nothing), withdraw its schedules, erase its personal data.
    ``owner_confirmed``: the owner confirmed giving up a balance (see the module doc)."""

    async def settle(uow: UnitOfWork, agent_id: int) -> None:
        await settle_before_closing(uow, agent_id, remaining, owner_confirmed=owner_confirmed)
        await withdraw_schedules(uow, agent_id)

    await delete_agent(uow, agent_id, settle=settle)


def _code_context(agent_id: int) -> str:
    return f"forfeit:{agent_id}"


async def request_forfeit(uow: UnitOfWork, settings: Settings, agent_id: int) -> bool:
    """Mail the owner a code that confirms giving up what the agent holds; False when it
    holds nothing (the closing needs no code). Refuses while withdrawals are open, as the
    closing would. While a code is live no new one is made (True), so guesses stay limited
    to ``CODE_TRIES`` per code lifetime. Does not commit."""
    row = await locked_caps(uow, agent_id)
    await _refuse_in_flight(uow, agent_id)
    left = await _left(uow, agent_id)
    if not left:
        return False
    now = uow.clock.now()
    expires = row.forfeit_code_expires_at
    if row.forfeit_code_hash is not None and expires is not None and expires > now:
        return True
    code = issue_code(row, settings, prefix="forfeit_", context=_code_context(agent_id), now=now)
    minutes = code_minutes(settings)
    body = (
        f"Your agent {agent_id} asked to close its account and give up what it holds: "
        f"{_listed(left)}. That money would be gone for good.\n\n"
        f"Your confirmation code is {code} (valid {minutes} minutes). Send it with "
        "DELETE /api/agent/me?remaining=forfeit&code=..., or close the account yourself on "
        "the dashboard.\n\nIf you did not ask for this, ignore this mail: nothing is given "
        "up without the code; withdraw the balance and replace the agent's API key.\n"
    )
    await mail_code(
        uow,
        Owner(agent_id=agent_id),
        subject="Confirm giving up your agent's balance",
        body=body,
        kind="forfeit_code",
    )
    await uow.flush()
    return True


async def confirm_forfeit(
    uow: UnitOfWork, settings: Settings, agent_id: int, code: str
) -> ValidationFailed | None:
    """Check the owner's forfeit code: each try is counted by a conditional update (committed
    by the caller even when refused); the right code is used up. The error to raise after
    committing, or None."""
    tried = await try_code(
        uow,
        settings,
        _CAPS,
        [_CAPS.c.agent_id == agent_id],
        prefix="forfeit_",
        context=_code_context(agent_id),
        code=code,
    )
    if tried is None:
        return ValidationFailed.field(
            "code",
            "no forfeit is waiting, or its code expired or was tried too often; close with "
            "remaining=forfeit and no code to mail a new one to the owner",
        )
    if not tried.right:
        return tried.wrong()
    await uow.session.execute(
        update(_CAPS)
        .where(_CAPS.c.agent_id == agent_id)
        .values(forfeit_code_hash=None, forfeit_code_expires_at=None)
    )
    return None
