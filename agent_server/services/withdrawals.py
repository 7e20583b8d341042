"""Money out: withdrawals from an agent's wallet and payouts of what a provider is owed.

One function per step, each in the caller's unit of work (never committing):

* ``quote``: the network fee estimated now, the fee the price list charges, the minimum.
* ``request``: checks the address for its chain and network, moves amount + fee from the
  source (the agent's wallet, or the owner's payable account for a payout) to the
  pending-withdrawal account, and records the withdrawal. A new address gets a code mailed
  to the owner (queued in the same transaction); the withdrawal waits
  (``awaiting_confirmation``) until the address is confirmed and its cooling-off time has
  passed, then for an operator when it is worth more than the approval limit.
* ``confirm_address``: the owner's code; tries are counted by a conditional update that
  stands even when the code is wrong (the caller commits before raising ``error``).
* ``release_due``: moves withdrawals whose address became usable on (approval or approved).
* ``cancel`` (owner), ``approve`` / ``reject`` (operator), ``fail`` and ``settle`` (sender):
  each a conditional status change, so concurrent calls change a withdrawal once; whatever
  ends it without sending returns the money to its source exactly once (unique reference).
* ``schedule_payouts``: a payout for every payable balance above the minimum, to the owner's
  confirmed address.

An agent's requests are refused past its owner's daily and monthly withdrawal limits
(``withdrawal_limits.check``, in the request's transaction under the caps row's lock).

A stolen API key alone cannot move money to a new address: the code goes to the owner's
mailbox, and even then the address is usable only after the cooling-off time.
"""

# Long by design: one withdrawal's life shares its locks, codes and money returns.

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, update

from agent_server.accounts.models import Agent
from agent_server.booking.models import Specialist
from agent_server.events import outbox
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import (
    IdempotencyMismatch,
    InsufficientFunds,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from agent_server.kernel.money import Money, decimal_text
from agent_server.kernel.store import UnitOfWork
from agent_server.services import withdrawal_limits
from agent_server.services.owner_codes import Owner as Owner  # whose withdrawals: part of this API
from agent_server.services.owner_codes import code_minutes, issue_code, mail_code, try_code
from agent_server.services.owner_codes import owner_email as owner_email
from billing.config import BillingConfig
from billing.ledger import (
    AccountRef,
    credit,
    debit,
    insert_or_none,
    open_account,
    open_wallet,
    post,
    system_account,
)
from billing.models import AccountKind, LedgerAccount, LedgerEntry, TransactionKind
from billing.prices import WithdrawalPolicy
from wallets.currencies import currency_info
from wallets.destinations import check_destination
from wallets.network_fees import FeeSource, estimate_network_fee
from wallets.rates import RateSource, base_units_to_usd, usd_to_base_units
from wallets.withdrawal_models import (
    OPEN_STATUSES,
    Withdrawal,
    WithdrawalAddress,
    WithdrawalKind,
    WithdrawalStatus,
)

LIVE_CODES = 3  # unconfirmed addresses with a live code, per owner
_ADDRESSES: Table = WithdrawalAddress.__table__  # type: ignore[assignment]
_WITHDRAWALS: Table = Withdrawal.__table__  # type: ignore[assignment]
_OPEN = [s.value for s in OPEN_STATUSES]
_S = WithdrawalStatus


@dataclass(frozen=True)
class Terms:
    """What prices, limits and fee levels a withdrawal is requested under."""

    settings: Settings
    policy: WithdrawalPolicy
    rates: RateSource
    fees: FeeSource

    @classmethod
    def of(cls, settings: Settings, billing: BillingConfig, fees: FeeSource) -> Terms:
        return cls(settings, billing.prices.withdrawals, billing.rates, fees)


@dataclass(frozen=True)
class Quote:
    currency: str
    amount: int
    network_fee: int  # estimated, base units
    fee: int  # charged on top of amount, base units
    total: int
    minimum: int
    rate_usd_micros: int
    amount_usd_micros: int
    needs_approval: bool


@dataclass(frozen=True)
class Placed:
    withdrawal: Withdrawal
    code_sent: bool  # a confirmation code was mailed to the owner for a new address
    replayed: bool = False


@dataclass(frozen=True)
class Confirmation:
    address: WithdrawalAddress | None
    error: ValidationFailed | None  # commit first (the try counts), then raise it


def new_public_id() -> str:
    return f"wd_{uuid.uuid4().hex}"


_PUBLIC_ID = re.compile(r"wd_[0-9a-f]{32}")


def check_public_id(public_id: str) -> str:
    """``public_id`` if it has the shape of a withdrawal id; otherwise ``NotFound`` at once,
    so no malformed or hostile text reaches a query."""
    if not _PUBLIC_ID.fullmatch(public_id):
        raise NotFound(f"no withdrawal {public_id[:40]!r}", {"withdrawal_id": public_id[:40]})
    return public_id


async def quote(terms: Terms, currency: str, amount: int) -> Quote:
    """The fee and total of sending ``amount`` base units of ``currency``; refuses an amount
    below the minimum, naming it."""
    code = currency_info(currency).code
    minimum = terms.policy.minimum.get(code, 1)
    if amount < minimum:
        raise ValidationFailed.field(
            "amount", f"at least {decimal_text(minimum, code)} {code} ({minimum} base units)"
        )
    network = await estimate_network_fee(terms.fees, code, terms.rates)
    rate = terms.rates.usd_micros_per_coin(code)
    fee = -(-network * terms.policy.network_fee_percent // 100)
    fee += usd_to_base_units(terms.policy.fee_usd_micros, code, rate)
    usd = base_units_to_usd(amount, code, rate)
    return Quote(
        currency=code,
        amount=amount,
        network_fee=network,
        fee=fee,
        total=amount + fee,
        minimum=minimum,
        rate_usd_micros=rate,
        amount_usd_micros=usd,
        needs_approval=usd > terms.settings.withdrawal_approval_usd_micros,
    )


def _code_context(address_id: int) -> str:
    return f"withdrawal-address:{address_id}"


async def _address_row(
    uow: UnitOfWork, owner: Owner, currency: str, address: str, network: str
) -> WithdrawalAddress:
    now = uow.clock.now()
    await insert_or_none(
        uow,
        _ADDRESSES,
        {
            "owner": owner.key,
            **owner.columns(),
            "currency": currency,
            "network": network,
            "address": address,
            "label": "",
            "code_tries": 0,
            "created_at": now,
        },
        ["owner", "currency", "address"],
    )
    row = (
        await uow.session.execute(
            select(WithdrawalAddress)
            .where(
                WithdrawalAddress.owner == owner.key,
                WithdrawalAddress.currency == currency,
                WithdrawalAddress.address == address,
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).scalar_one()
    return row


async def _issue_code(
    uow: UnitOfWork, settings: Settings, owner: Owner, row: WithdrawalAddress
) -> None:
    """A new code for ``row``, hashed, mailed to the owner in this transaction."""
    now = uow.clock.now()
    code = issue_code(row, settings, prefix="", context=_code_context(row.id), now=now)
    row.removed_at = None
    minutes = code_minutes(settings)
    hours = settings.withdrawal_cooling_off.total_seconds() / 3600
    body = (
        f"A withdrawal to a new {row.currency} address was requested:\n\n  {row.address}\n\n"
        f"Your confirmation code is {code} (valid {minutes} minutes). Confirm the address on "
        f"the dashboard (Withdrawals). It can be used {hours:g} hours after confirmation.\n\n"
        "If you did not ask for this, do not confirm: nothing is sent to an unconfirmed "
        "address; cancel the withdrawal on the dashboard and replace the agent's API key.\n"
    )
    await mail_code(
        uow,
        owner,
        subject=f"Confirm a new {row.currency} withdrawal address",
        body=body,
        kind="withdrawal_address_code",
    )


async def _limit_live_codes(uow: UnitOfWork, owner: Owner, now: datetime) -> None:
    """At most ``LIVE_CODES`` unconfirmed addresses with a live code per owner, counted under
    the owner's row lock, so guessing codes over many new addresses stays bounded too."""
    if owner.agent_id is not None:
        lock = select(Agent.id).where(Agent.id == owner.agent_id)
    else:
        lock = select(Specialist.id).where(Specialist.id == owner.specialist_id)
    await uow.session.execute(lock.with_for_update())
    live = await uow.session.scalar(
        select(func.count()).where(
            WithdrawalAddress.owner == owner.key,
            WithdrawalAddress.confirmed_at.is_(None),
            WithdrawalAddress.code_expires_at > now,
        )
    )
    if (live or 0) >= LIVE_CODES:
        raise RateLimited(
            f"{live} new addresses already wait for their mailed codes; confirm one or try "
            "again when their codes have expired",
            {"retry_after": 60},
        )


def _usable(row: WithdrawalAddress, now: datetime) -> bool:
    return (
        row.confirmed_at is not None
        and row.usable_after is not None
        and row.usable_after <= now
        and row.removed_at is None
    )


async def _source(uow: UnitOfWork, kind: WithdrawalKind, owner: Owner, currency: str) -> AccountRef:
    if kind is WithdrawalKind.WITHDRAWAL:
        if owner.agent_id is None:
            raise ValidationFailed.field("kind", "only an agent withdraws from a wallet")
        return await open_wallet(uow, owner.agent_id, currency)
    return await open_account(uow, AccountKind.PAYABLE, currency, **owner.columns())


async def payable_balance(uow: UnitOfWork, account: AccountRef, *, lock: bool) -> int:
    """A payable account's balance, summed from its entries; with ``lock`` its row is locked
    first (PostgreSQL), so two payouts of one account are settled by the database."""
    if lock:
        await uow.session.execute(
            select(LedgerAccount.id).where(LedgerAccount.id == account.id).with_for_update()
        )
    total = await uow.session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.credit - LedgerEntry.debit), 0)).where(
            LedgerEntry.account_id == account.id
        )
    )
    return int(total or 0)


async def request(
    uow: UnitOfWork,
    terms: Terms,
    owner: Owner,
    *,
    kind: WithdrawalKind,
    currency: str,
    amount: int,
    address: str,
    request_key: str | None = None,
    priced: Quote | None = None,
) -> Placed:
    """Request a withdrawal or payout; the money leaves its source now (see module doc)."""
    code = currency_info(currency).code
    dest = check_destination(code, address, btc_network=terms.settings.btc_network)
    if request_key is not None:
        earlier = await _by_key(uow, owner, request_key)
        if earlier is not None:
            return _replay(earlier, kind, code, amount, dest.address)
    q = priced or await quote(terms, code, amount)
    if owner.agent_id is not None:
        # The owner's withdrawal limits, under the caps row's lock until this commits.
        usd = base_units_to_usd(amount, code, q.rate_usd_micros)
        await withdrawal_limits.check(uow, owner.agent_id, usd)
    now = uow.clock.now()
    row = await _address_row(uow, owner, code, dest.address, dest.network)
    code_sent = False
    # A new code only once the last one expired: a used-up code is not replaced early, so
    # guesses stay limited to CODE_TRIES per address and code lifetime.
    if row.confirmed_at is None and (row.code_expires_at is None or row.code_expires_at <= now):
        await _limit_live_codes(uow, owner, now)
        await _issue_code(uow, terms.settings, owner, row)
        code_sent = True
    if not _usable(row, now):
        status = _S.AWAITING_CONFIRMATION
    elif q.needs_approval:
        status = _S.AWAITING_APPROVAL
    else:
        status = _S.APPROVED
    public_id = new_public_id()
    values: dict[str, Any] = {
        "public_id": public_id,
        "kind": kind.value,
        "owner": owner.key,
        **owner.columns(),
        "request_key": request_key,
        "currency": code,
        "network": dest.network,
        "address_id": row.id,
        "address": dest.address,
        "amount": amount,
        "fee": q.fee,
        "network_fee_estimate": q.network_fee,
        "rate_usd_micros": q.rate_usd_micros,
        "status": status.value,
        "needs_approval": q.needs_approval,
        "reason": "",
        "requested_at": now,
        "updated_at": now,
        "approved_at": now if status is _S.APPROVED else None,
        "confirmations": 0,
    }
    new_id = await insert_or_none(uow, _WITHDRAWALS, values, ["owner", "request_key"])
    if new_id is None:  # the same key committed first in another transaction
        earlier = await _by_key(uow, owner, request_key or "")
        assert earlier is not None
        return _replay(earlier, kind, code, amount, dest.address)
    source = await _source(uow, kind, owner, code)
    if kind is WithdrawalKind.PAYOUT:
        owed = await payable_balance(uow, source, lock=True)
        if owed < q.total:
            raise InsufficientFunds(
                f"you are owed {decimal_text(owed, code)} {code}; a payout of "
                f"{decimal_text(amount, code)} plus the fee {decimal_text(q.fee, code)} needs "
                f"{decimal_text(q.total, code)}. Request at most {max(owed - q.fee, 0)} base "
                "units.",
                {"currency": code, "available": owed, "needed": q.total},
            )
    pending = await system_account(uow, AccountKind.WITHDRAWING, code)
    posted = await post(
        uow,
        kind=TransactionKind.WITHDRAWAL,
        reference=f"withdrawal:{public_id}",
        legs=[debit(source, q.total), credit(pending, q.total)],
        currency=code,
        amount=q.total,
        agent_id=owner.agent_id,
        price_usd_micros=base_units_to_usd(q.total, code, q.rate_usd_micros),
        rate=q.rate_usd_micros,
        memo=f"{kind.value} {public_id}: {amount} + fee {q.fee} to {dest.address}",
    )
    await uow.session.execute(
        update(_WITHDRAWALS)
        .where(_WITHDRAWALS.c.id == new_id)
        .values(request_txn_id=posted.transaction_id)
    )
    withdrawal = await _load(uow, new_id)
    await _event(uow, outbox.WITHDRAWAL_REQUESTED, withdrawal)
    return Placed(withdrawal, code_sent)


async def _by_key(uow: UnitOfWork, owner: Owner, key: str) -> Withdrawal | None:
    return (
        await uow.session.execute(
            select(Withdrawal).where(Withdrawal.owner == owner.key, Withdrawal.request_key == key)
        )
    ).scalar_one_or_none()


def _replay(
    earlier: Withdrawal, kind: WithdrawalKind, code: str, amount: int, address: str
) -> Placed:
    same = (earlier.kind, earlier.currency, earlier.amount, earlier.address) == (
        kind.value,
        code,
        amount,
        address,
    )
    if not same:
        raise IdempotencyMismatch(
            "this idempotency_key was used for another withdrawal; use a new key",
            {"withdrawal_id": earlier.public_id},
        )
    return Placed(earlier, code_sent=False, replayed=True)


async def _load(uow: UnitOfWork, withdrawal_id: int) -> Withdrawal:
    return (
        await uow.session.execute(
            select(Withdrawal)
            .where(Withdrawal.id == withdrawal_id)
            .execution_options(populate_existing=True)
        )
    ).scalar_one()


def withdrawal_data(w: Withdrawal) -> dict[str, Any]:
    """The public view of a withdrawal (withdrawal.* events and the REST routes); amount
    and fee are Money (``{amount, currency, text}``) as everywhere else."""
    return {
        "id": w.public_id,
        "kind": w.kind,
        "status": w.status,
        "currency": w.currency,
        "amount": Money.of(w.amount, w.currency).model_dump(),
        "fee": Money.of(w.fee, w.currency).model_dump(),
        "address": w.address,
        "needs_approval": w.needs_approval,
        "reason": w.reason or None,
        "tx_hash": w.tx_hash,
        "confirmations": w.confirmations,
        "requested_at": outbox.iso(w.requested_at),
        "ended_at": outbox.iso(w.ended_at) if w.ended_at else None,
    }


async def _event(uow: UnitOfWork, type: str, w: Withdrawal) -> None:
    if w.agent_id is not None:
        await outbox.emit(uow, type=type, agent_id=w.agent_id, data=withdrawal_data(w))


# --- addresses ------------------------------------------------------------------------------


async def confirm_address(
    uow: UnitOfWork, settings: Settings, owner: Owner, address_id: int, code: str
) -> Confirmation:
    """Check the owner's code for a new address. A wrong code uses one of ``CODE_TRIES``
    tries (a conditional update); the right one confirms the address and starts its
    cooling-off time. The caller commits, then raises ``error`` if there is one."""
    tried = await try_code(
        uow,
        settings,
        _ADDRESSES,
        [
            _ADDRESSES.c.id == address_id,
            _ADDRESSES.c.owner == owner.key,
            _ADDRESSES.c.confirmed_at.is_(None),
        ],
        prefix="",
        context=_code_context(address_id),
        code=code,
    )
    row = (
        await uow.session.execute(
            select(WithdrawalAddress)
            .where(WithdrawalAddress.id == address_id, WithdrawalAddress.owner == owner.key)
            .execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no withdrawal address {address_id} of yours", {"address_id": address_id})
    if row.confirmed_at is not None:
        return Confirmation(row, None)
    if tried is None:
        return Confirmation(
            row,
            ValidationFailed.field(
                "code",
                "this code expired or was tried too often; once it has expired, request a "
                "withdrawal to this address again to get a new code",
            ),
        )
    if not tried.right:
        return Confirmation(row, tried.wrong("the latest mail"))
    now = uow.clock.now()
    row.confirmed_at = now
    row.usable_after = now + settings.withdrawal_cooling_off
    row.code_hash = None
    row.code_expires_at = None
    await uow.session.flush()
    return Confirmation(row, None)


async def addresses(uow: UnitOfWork, owner: Owner) -> list[WithdrawalAddress]:
    rows = await uow.session.execute(
        select(WithdrawalAddress)
        .where(WithdrawalAddress.owner == owner.key, WithdrawalAddress.removed_at.is_(None))
        .order_by(WithdrawalAddress.id.desc())
    )
    return list(rows.scalars())


async def release_due(uow: UnitOfWork) -> int:
    """Move withdrawals waiting for their address on, once it is confirmed and its cooling-off
    time passed: to the operator when they need approval, else approved. The count moved."""
    now = uow.clock.now()
    usable = select(_ADDRESSES.c.id).where(
        _ADDRESSES.c.confirmed_at.is_not(None),
        _ADDRESSES.c.usable_after <= now,
        _ADDRESSES.c.removed_at.is_(None),
    )
    waiting = and_(
        _WITHDRAWALS.c.status == _S.AWAITING_CONFIRMATION.value,
        _WITHDRAWALS.c.address_id.in_(usable),
    )
    moved = 0
    for needs, status in ((True, _S.AWAITING_APPROVAL), (False, _S.APPROVED)):
        result = await uow.session.execute(
            update(_WITHDRAWALS)
            .where(waiting, _WITHDRAWALS.c.needs_approval.is_(needs))
            .values(
                status=status.value,
                updated_at=now,
                approved_at=None if needs else now,
            )
            .execution_options(synchronize_session=False)
        )
        moved += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return moved


# --- state changes --------------------------------------------------------------------------


async def _change(
    uow: UnitOfWork,
    public_id: str,
    from_statuses: Sequence[str],
    to: WithdrawalStatus,
    *,
    owner: Owner | None = None,
    **values: Any,
) -> Withdrawal:
    """Move a withdrawal from one of ``from_statuses`` to ``to`` with one conditional update;
    ``NotFound`` or a ``ValidationFailed`` naming its current status when it cannot."""
    check_public_id(public_id)
    now = uow.clock.now()
    where = [_WITHDRAWALS.c.public_id == public_id, _WITHDRAWALS.c.status.in_(from_statuses)]
    if owner is not None:
        where.append(_WITHDRAWALS.c.owner == owner.key)
    changed = await uow.session.execute(
        update(_WITHDRAWALS)
        .where(*where)
        .values(status=to.value, updated_at=now, **values)
        .returning(_WITHDRAWALS.c.id)
    )
    found = changed.scalar_one_or_none()
    if found is not None:
        return await _load(uow, int(found))
    query = select(Withdrawal).where(Withdrawal.public_id == public_id)
    if owner is not None:
        query = query.where(Withdrawal.owner == owner.key)
    current = (await uow.session.execute(query)).scalar_one_or_none()
    if current is None:
        raise NotFound(f"no withdrawal {public_id!r}", {"withdrawal_id": public_id})
    raise ValidationFailed.field(
        "withdrawal_id", f"it is {current.status}, so it cannot become {to.value}"
    )


async def _return_money(uow: UnitOfWork, w: Withdrawal) -> None:
    """Give amount + fee back to where it came from; once (unique reference)."""
    owner = Owner(w.agent_id, w.specialist_id) if w.agent_id or w.specialist_id else None
    if owner is None:  # an agent row erased later keeps its id on the ledger account
        raise ValueError(f"withdrawal {w.public_id} has no owner")
    source = await _source(uow, WithdrawalKind(w.kind), owner, w.currency)
    pending = await system_account(uow, AccountKind.WITHDRAWING, w.currency)
    total = w.amount + w.fee
    posted = await post(
        uow,
        kind=TransactionKind.WITHDRAW_RETURN,
        reference=f"withdrawal:{w.public_id}:return",
        legs=[debit(pending, total), credit(source, total)],
        currency=w.currency,
        amount=total,
        agent_id=w.agent_id,
        memo=f"{w.kind} {w.public_id} {w.status}: returned",
    )
    w.return_txn_id = posted.transaction_id
    await uow.session.flush()
    await _event(uow, outbox.WITHDRAWAL_FAILED, w)


async def cancel(uow: UnitOfWork, owner: Owner, public_id: str) -> Withdrawal:
    """The owner cancels a withdrawal not yet handed to the sender; the money comes back."""
    w = await _change(uow, public_id, _OPEN, _S.CANCELLED, owner=owner, ended_at=uow.clock.now())
    await _return_money(uow, w)
    return w


async def approve(uow: UnitOfWork, public_id: str, *, operator: str, note: str) -> Withdrawal:
    """An operator approves a withdrawal above the limit (who, when, why recorded)."""
    if not note.strip():
        raise ValidationFailed.field("note", "say why it is approved")
    now = uow.clock.now()
    return await _change(
        uow,
        public_id,
        [_S.AWAITING_APPROVAL.value],
        _S.APPROVED,
        decided_by=operator,
        decided_at=now,
        decision_note=note.strip(),
        approved_at=now,
    )


async def reject(uow: UnitOfWork, public_id: str, *, operator: str, note: str) -> Withdrawal:
    """An operator rejects a withdrawal not yet sent; the money goes back."""
    if not note.strip():
        raise ValidationFailed.field("note", "say why it is rejected")
    now = uow.clock.now()
    w = await _change(
        uow,
        public_id,
        _OPEN,
        _S.REJECTED,
        decided_by=operator,
        decided_at=now,
        decision_note=note.strip(),
        reason=f"rejected: {note.strip()}",
        ended_at=now,
    )
    await _return_money(uow, w)
    return w


async def fail(uow: UnitOfWork, public_id: str, *, reason: str) -> Withdrawal:
    """The sender gives up on a withdrawal that never reached the chain; the money goes back."""
    w = await _change(
        uow,
        public_id,
        [_S.APPROVED.value, _S.SENDING.value, _S.SENT.value],
        _S.FAILED,
        reason=reason,
        ended_at=uow.clock.now(),
    )
    await _return_money(uow, w)
    return w


async def settle(uow: UnitOfWork, public_id: str) -> Withdrawal:
    """Confirmed on chain: the amount leaves to the chain, the fee pays the network fee."""
    now = uow.clock.now()
    w = await _change(
        uow,
        public_id,
        [_S.SENDING.value, _S.SENT.value],
        _S.CONFIRMED,
        confirmed_at=now,
        ended_at=now,
    )
    pending = await system_account(uow, AccountKind.WITHDRAWING, w.currency)
    out = await system_account(uow, AccountKind.WITHDRAWN, w.currency)
    legs = [debit(pending, w.amount + w.fee), credit(out, w.amount)]
    if w.fee:
        legs.append(credit(await system_account(uow, AccountKind.NETWORK_FEES, w.currency), w.fee))
    posted = await post(
        uow,
        kind=TransactionKind.WITHDRAWN,
        reference=f"withdrawal:{w.public_id}:settle",
        legs=legs,
        currency=w.currency,
        amount=w.amount + w.fee,
        agent_id=w.agent_id,
        memo=f"{w.kind} {w.public_id} confirmed on chain",
    )
    w.settle_txn_id = posted.transaction_id
    await uow.session.flush()
    await _event(uow, outbox.WITHDRAWAL_CONFIRMED, w)
    return w


# --- reading --------------------------------------------------------------------------------


async def list_for(
    uow: UnitOfWork, owner: Owner, *, before: int | None, limit: int, status: str | None = None
) -> list[Withdrawal]:
    query = select(Withdrawal).where(Withdrawal.owner == owner.key)
    if before is not None:
        query = query.where(Withdrawal.id < before)
    if status:
        query = query.where(Withdrawal.status == status)
    rows = await uow.session.execute(query.order_by(Withdrawal.id.desc()).limit(limit))
    return list(rows.scalars())


async def find(uow: UnitOfWork, public_id: str, owner: Owner | None = None) -> Withdrawal:
    check_public_id(public_id)
    query = select(Withdrawal).where(Withdrawal.public_id == public_id)
    if owner is not None:
        query = query.where(Withdrawal.owner == owner.key)
    w = (await uow.session.execute(query)).scalar_one_or_none()
    if w is None:
        raise NotFound(f"no withdrawal {public_id!r}", {"withdrawal_id": public_id})
    return w


async def approval_queue(uow: UnitOfWork, limit: int = 100) -> list[Withdrawal]:
    rows = await uow.session.execute(
        select(Withdrawal)
        .where(
            or_(
                Withdrawal.status == _S.AWAITING_APPROVAL.value,
                Withdrawal.decided_at.is_not(None),
            )
        )
        .order_by(Withdrawal.status != _S.AWAITING_APPROVAL.value, Withdrawal.id.desc())
        .limit(limit)
    )
    return list(rows.scalars())


# --- scheduled payouts ----------------------------------------------------------------------


async def schedule_payouts(uow: UnitOfWork, terms: Terms) -> list[Withdrawal]:
    """A payout of the whole payable balance (less its fee) for every owner owed at least
    ``payout_minimum_usd_micros`` in a currency, to its newest usable address for it, unless
    a payout in that currency is still open."""
    now = uow.clock.now()
    accounts = (
        await uow.session.execute(
            select(LedgerAccount).where(LedgerAccount.kind == AccountKind.PAYABLE.value)
        )
    ).scalars()
    placed: list[Withdrawal] = []
    for account in list(accounts):
        owner = Owner(account.agent_id, None) if account.agent_id else None
        if owner is None and account.specialist_id is not None:
            owner = Owner(None, account.specialist_id)
        if owner is None:
            continue
        code = account.currency
        ref = AccountRef(account.id, AccountKind.PAYABLE, code)
        owed = await payable_balance(uow, ref, lock=False)
        rate = terms.rates.usd_micros_per_coin(code)
        if (
            owed <= 0
            or base_units_to_usd(owed, code, rate) < terms.settings.payout_minimum_usd_micros
        ):
            continue
        open_payout = await uow.session.scalar(
            select(func.count()).where(
                Withdrawal.owner == owner.key,
                Withdrawal.currency == code,
                Withdrawal.kind == WithdrawalKind.PAYOUT.value,
                Withdrawal.status.in_([*_OPEN, _S.SENDING.value, _S.SENT.value]),
            )
        )
        if open_payout:
            continue
        usable = [a for a in await addresses(uow, owner) if a.currency == code and _usable(a, now)]
        if not usable:
            continue
        probe = await quote(terms, code, max(owed, 1))
        amount = owed - probe.fee
        if amount < probe.minimum:
            continue
        usd = base_units_to_usd(amount, code, probe.rate_usd_micros)
        if owner.agent_id is not None and await withdrawal_limits.would_pass(
            uow, owner.agent_id, usd
        ):
            continue  # over the owner's withdrawal limit: a later run pays it
        result = await request(
            uow,
            terms,
            owner,
            kind=WithdrawalKind.PAYOUT,
            currency=code,
            amount=amount,
            address=usable[0].address,
            priced=Quote(**{**probe.__dict__, "amount": amount, "total": amount + probe.fee}),
        )
        placed.append(result.withdrawal)
    return placed
