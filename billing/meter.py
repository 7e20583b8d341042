"""The meter: every priced tool call goes through ``run_metered``.

The tool registry calls it after the gate, with the tool's operation as a callback. The
operation receives a ``MeteredCall`` (its unit of work, call id, and ``escrow``) and returns
the tool's structured result as a JSON-ready dict; it must not commit.

Read tools (no hold in the price list)::

    one transaction: take a free call of the month's quota (one conditional upsert) or choose
    the paying wallet -> run the operation -> charge the paying wallet (wallet -> revenue)
    -> record usage -> store the idempotency result -> commit

A failing operation rolls the transaction back, free quota included: only a successful call
uses the quota or is charged.

Side-effecting tools (``hold = true``: book-slot, create-schedule), TigerBeetle's two-phase
transfer::

    transaction 1: hold the fee plus any extra (the slot price): wallet -> holds
    transaction 2: run the operation -> capture: holds -> revenue (the fee), holds -> escrow
                   (the slot price, when the operation calls ``call.escrow(booking)``; any
                   extra it did not escrow goes back to the wallet) -> usage -> commit
    on failure:    release the hold (holds -> wallet) in its own transaction

A hold left pending by a crashed process is released by ``release_stale_holds``. A call that
is refused or fails costs nothing and writes nothing but the (released) hold's two entries.

Which wallet pays: the agent's preferred currency first, then its other wallets in the
order they were opened; the first that covers the whole price at the current rate (rounded
up to the base unit) pays. If none does, ``InsufficientFunds`` (402) names the price, the
balance and the deposit address of the preferred wallet, and nothing is written.

Each paid call's result comes with a ``Receipt`` (call id, tool, USD price, currency, amount,
balance after); a free-quota call has a receipt with ``free: true`` and a zero amount.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio
from sqlalchemy import BindParameter, Table, bindparam, case, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from agent_server.accounts.models import Agent
from agent_server.booking.models import Booking
from agent_server.events.balance import emit_if_balance_low
from agent_server.kernel.errors import InsufficientFunds, RateLimited
from agent_server.kernel.logs import get_logger
from agent_server.kernel.money import amount_text, usd_text
from agent_server.kernel.store import (
    Database,
    Direct,
    UnitOfWork,
    direct_execute,
    direct_rows,
    skip_flush_wait,
)
from billing import idempotency
from billing.caps import Caps, add_spending, caps_columns, return_spending
from billing.config import BillingConfig
from billing.escrow import escrow_posting
from billing.ledger import (
    AccountRef,
    credit,
    debit,
    post,
    system_account,
)
from billing.models import (
    AccountKind,
    FreeQuotaUse,
    Hold,
    HoldStatus,
    LedgerAccount,
    TransactionKind,
    UsageRecord,
)
from billing.prices import ToolPrice
from billing.wallet_funds import paying_wallets
from wallets.currencies import currency_info
from wallets.rates import base_units_to_usd, usd_to_base_units

JSONDict = dict[str, Any]

log = get_logger(__name__)

_ACCOUNTS: Table = LedgerAccount.__table__  # type: ignore[assignment]
_HOLDS: Table = Hold.__table__  # type: ignore[assignment]
_QUOTA: Table = FreeQuotaUse.__table__  # type: ignore[assignment]
_USAGE: Table = UsageRecord.__table__  # type: ignore[assignment]
DEFAULT_CURRENCY = "USDC"


class _HoldLost(Exception):
    """The sweeper released the call's hold while its operation ran (stale_hold_after passed)."""


HOLD_ATTEMPTS = 2
"""Runs of a held call whose hold the sweeper keeps releasing before it gives up."""
HOLD_RETRY_AFTER = 60
"""Seconds an agent is told to wait when a call lost its payment reservation every time."""


@dataclass(frozen=True)
class ExtraPrice:
    """A price added to the tool's fee for one call and held in escrow (a slot price).

    ``currency`` is a wallet currency (base units) or ``"USD"`` (micro-dollars).
    """

    amount: int
    currency: str


@dataclass(frozen=True)
class Price:
    """A call's price in one wallet currency."""

    currency: str
    rate: int
    fee_usd_micros: int
    extra_usd_micros: int
    fee: int
    extra: int

    @property
    def total(self) -> int:
        return self.fee + self.extra

    @property
    def total_usd_micros(self) -> int:
        return self.fee_usd_micros + self.extra_usd_micros


@dataclass(frozen=True)
class Receipt:
    """What one call cost, attached to its structured result."""

    call_id: str
    tool: str
    price_usd_micros: int
    currency: str | None
    amount: int
    balance_after: int | None
    rate: int | None = None
    free: bool = False
    escrowed: int = 0

    def to_dict(self) -> JSONDict:
        return {
            "call_id": self.call_id,
            "tool": self.tool,
            "price_usd_micros": self.price_usd_micros,
            "currency": self.currency,
            "amount": self.amount,
            "balance_after": self.balance_after,
            "rate": self.rate,
            "free": self.free,
            "escrowed": self.escrowed,
        }


@dataclass(frozen=True)
class Metered:
    """A metered call's result and receipt; ``replayed`` when it came from an idempotency key."""

    result: JSONDict
    receipt: Receipt | None
    replayed: bool = False


@dataclass(frozen=True)
class Quote:
    """What a call would cost now, and the balance after (the free ``quote`` tool)."""

    tool: str
    price_usd_micros: int
    currency: str
    amount: int
    balance: int
    balance_after: int
    sufficient: bool
    free: bool
    free_remaining: int | None
    rate: int

    def to_dict(self) -> JSONDict:
        return asdict(self)


@dataclass
class MeteredCall:
    """What the operation of a metered call gets: its unit of work and call id."""

    uow: UnitOfWork
    agent_id: int
    tool: str
    call_id: str
    hold: Hold | None = None
    escrowed: int = field(default=0, init=False)

    async def escrow(self, booking: Booking) -> int | None:
        """Move the call's extra price (the slot price) from its hold into escrow for
        ``booking``; the ledger transaction id, or None when there is nothing to escrow."""
        if self.hold is None or self.hold.amount == self.hold.fee_amount:
            return None
        amount = self.hold.amount - self.hold.fee_amount
        posted = await escrow_posting(
            self.uow,
            booking,
            amount=amount,
            currency=self.hold.currency,
            price_usd_micros=self.hold.price_usd_micros - self.hold.fee_usd_micros,
            rate=self.hold.rate,
            hold=self.hold,
        )
        if posted is None:
            return None
        if posted.created:
            # A replayed booking already has its escrow: this call's hold goes back instead.
            self.escrowed = amount
        return posted.transaction_id


Operation = Callable[[MeteredCall], Awaitable[JSONDict]]
Admission = Callable[[UnitOfWork], Awaitable[None]]


def price_in(
    currency: str, fee_usd_micros: int, extra: ExtraPrice | None, config: BillingConfig
) -> Price:
    """The call's price in ``currency`` at the current rate, each part rounded up."""
    code = currency_info(currency).code
    rate = config.rates.usd_micros_per_coin(code)
    extra_usd = 0
    extra_amount = 0
    if extra is not None and extra.amount > 0:
        if extra.currency.upper() == "USD":
            extra_usd = extra.amount
            extra_amount = usd_to_base_units(extra_usd, code, rate)
        elif currency_info(extra.currency).code == code:
            extra_amount = extra.amount
            extra_usd = base_units_to_usd(extra.amount, code, rate)
        else:
            source = currency_info(extra.currency).code
            source_rate = config.rates.usd_micros_per_coin(source)
            unit = 10 ** currency_info(source).decimals
            extra_usd = -(-extra.amount * source_rate // unit)
            extra_amount = usd_to_base_units(extra_usd, code, rate)
    return Price(
        currency=code,
        rate=rate,
        fee_usd_micros=fee_usd_micros,
        extra_usd_micros=extra_usd,
        fee=usd_to_base_units(fee_usd_micros, code, rate),
        extra=extra_amount,
    )


def period_of(at: datetime) -> str:
    """The usage period (``YYYY-MM``, UTC) of a moment."""
    return f"{at.year}-{at.month:02d}"  # what strftime("%Y-%m") gives, at a third of its cost


@dataclass(frozen=True)
class Payer:
    """The wallet that pays a call, the price in its currency, and the agent's caps."""

    wallet: AccountRef
    price: Price
    caps: Caps | None


def _payers_query() -> Any:
    daily, monthly, capped = caps_columns()
    agent: BindParameter[int] = bindparam("agent_id")
    preferred = select(Agent.currency).where(Agent.id == agent).scalar_subquery()
    return (
        select(
            _ACCOUNTS.c.id,
            _ACCOUNTS.c.currency,
            _ACCOUNTS.c.balance,
            capped.label("capped"),
            daily.label("daily"),
            monthly.label("monthly"),
        )
        .where(_ACCOUNTS.c.agent_id == agent, _ACCOUNTS.c.kind == AccountKind.WALLET.value)
        .order_by(case((_ACCOUNTS.c.currency == preferred, 0), else_=1), _ACCOUNTS.c.id)
    )


_PAYERS = Direct(_payers_query())
# The free calls one agent has used of one tool's quota in one month (no row: none yet).
_QUOTA_USED_SELECT = select(_QUOTA.c.used).where(
    _QUOTA.c.agent_id == bindparam("agent_id"),
    _QUOTA.c.tool == bindparam("tool"),
    _QUOTA.c.period == bindparam("period"),
)
# The paying wallets, with this month's free calls used of one tool on every row (NULL: none).
_PAYERS_AND_QUOTA = Direct(
    _payers_query().add_columns(_QUOTA_USED_SELECT.scalar_subquery().label("quota_used"))
)
_USAGE_COLUMNS = (
    "call_id",
    "agent_id",
    "tool",
    "period",
    "free",
    "price_usd_micros",
    "currency",
    "amount",
    "transaction_id",
    "created_at",
)
_INSERT_USAGE = Direct(insert(_USAGE).values({name: bindparam(name) for name in _USAGE_COLUMNS}))


async def _free_or_payer(
    uow: UnitOfWork, agent_id: int, price: ToolPrice, config: BillingConfig
) -> tuple[bool, Payer | None]:
    """Before a paid read call's work, in one read: whether a free call of this month's
    quota is left (taken later by ``_take_free_call``) or else the wallet that will pay.
    ``InsufficientFunds`` when neither."""
    if price.free_per_month <= 0:
        return False, await _choose_payer(
            uow, agent_id, price.tool, price.price_usd_micros, None, config
        )
    rows = await direct_rows(
        uow,
        _PAYERS_AND_QUOTA,
        {"agent_id": agent_id, "tool": price.tool, "period": period_of(uow.clock.now())},
    )
    used = int(rows[0][6] or 0) if rows else await _quota_used(uow, agent_id, price)
    if used < price.free_per_month:
        return True, None
    return False, await _choose_payer(
        uow, agent_id, price.tool, price.price_usd_micros, None, config, rows
    )


def _wallets_from(
    rows: list[tuple[Any, ...]],
) -> tuple[list[tuple[AccountRef, int]], Caps | None]:
    """Wallets in paying order and the spending caps, from ``_PAYERS`` rows."""
    wallets = [
        (AccountRef(int(row[0]), AccountKind.WALLET, str(row[1])), int(row[2])) for row in rows
    ]
    # capped, daily, monthly: the same on every row; capped is 0 or 1 on SQLite
    caps = Caps(rows[0][4], rows[0][5]) if rows and rows[0][3] else None
    return wallets, caps


async def _choose_payer(
    uow: UnitOfWork,
    agent_id: int,
    tool: str,
    fee_usd_micros: int,
    extra: ExtraPrice | None,
    config: BillingConfig,
    rows: list[tuple[Any, ...]] | None = None,
) -> Payer:
    """The first wallet, in paying order, whose balance covers the price: from ``rows``
    (``_PAYERS`` columns first) when the caller already read them. ``InsufficientFunds``,
    decided on those same rows, when none does."""
    if rows is None:
        rows = await direct_rows(uow, _PAYERS, {"agent_id": agent_id})
    wallets, caps = _wallets_from(rows)
    for ref, held in wallets:
        priced = price_in(ref.currency, fee_usd_micros, extra, config)
        if held >= priced.total:
            return Payer(ref, priced, caps)
    raise await insufficient_funds(uow, agent_id, tool, fee_usd_micros, extra, config, wallets)


class _LostRace(Exception):
    """The chosen wallet was spent by a concurrent call between reading and debiting it."""


RACE_ATTEMPTS = 2
"""How often a call whose chosen wallet was emptied under it starts over (fresh balances)."""


async def insufficient_funds(
    uow: UnitOfWork,
    agent_id: int,
    tool: str,
    fee_usd_micros: int,
    extra: ExtraPrice | None,
    config: BillingConfig,
    wallets: list[tuple[AccountRef, int]] | None = None,
) -> InsufficientFunds:
    """The INSUFFICIENT_FUNDS error for this call: price, balance and where to deposit.

    ``wallets`` is the snapshot the refusal was decided on (read again when not given)."""
    if wallets is None:
        wallets = await paying_wallets(uow, agent_id)
    if wallets:
        currency, balance = wallets[0][0].currency, wallets[0][1]
    else:
        preferred = (
            await uow.session.execute(select(Agent.currency).where(Agent.id == agent_id))
        ).scalar_one_or_none()
        currency, balance = (preferred or DEFAULT_CURRENCY), 0
    price = price_in(currency, fee_usd_micros, extra, config)
    address = await config.deposit_address(uow, agent_id, currency)
    top_up = max(price.total - balance, 0)
    where = (
        f"Send at least {amount_text(top_up, currency)} to {address}"
        if address
        else (
            f"Choose {currency} with get-deposit-address and send at least "
            f"{amount_text(top_up, currency)}"
        )
    )
    return InsufficientFunds(
        f"{tool} costs {amount_text(price.total, currency)} "
        f"({usd_text(price.total_usd_micros)}) and your {currency} balance is "
        f"{amount_text(balance, currency)}. {where}, then retry.",
        {
            "tool": tool,
            "price_usd_micros": price.total_usd_micros,
            "currency": currency,
            "price": price.total,
            "balance": balance,
            "deposit_address": address,
            "balances": {ref.currency: held for ref, held in wallets},
        },
    )


def _take_free_call_statement(sqlite: bool) -> Any:
    """``INSERT ... ON CONFLICT DO UPDATE SET used = used + 1 WHERE used < :limit RETURNING
    used`` for the free quota: a row back is a free call taken, none means the month's quota
    is used up. The database settles concurrent calls: a conflicting insert waits for the
    other writer and then updates the committed row only if it is still under the limit."""
    dialect_insert = sqlite_insert if sqlite else pg_insert
    stmt = dialect_insert(_QUOTA).values(
        agent_id=bindparam("agent_id"),
        tool=bindparam("tool"),
        period=bindparam("period"),
        used=1,
    )
    return stmt.on_conflict_do_update(
        index_elements=[_QUOTA.c.agent_id, _QUOTA.c.tool, _QUOTA.c.period],
        set_={"used": _QUOTA.c.used + 1},
        where=_QUOTA.c.used < bindparam("limit"),
    ).returning(_QUOTA.c.used)


_TAKE_FREE_CALL = {sqlite: Direct(_take_free_call_statement(sqlite)) for sqlite in (True, False)}


async def _take_free_call(uow: UnitOfWork, agent_id: int, price: ToolPrice) -> bool:
    """Take one free call of this month's quota, if any is left, in ONE statement.

    Run just before the call commits, in its transaction: a call that fails rolls it back
    with everything else, so only a successful call uses the quota, and on PostgreSQL the
    quota row is locked only while the call commits. ``False`` when a concurrent call took
    the last free one meanwhile: this call is then charged."""
    if price.free_per_month <= 0:
        return False
    taken = await direct_rows(
        uow,
        _TAKE_FREE_CALL[uow.db.is_sqlite],
        {
            "agent_id": agent_id,
            "tool": price.tool,
            "period": period_of(uow.clock.now()),
            "limit": price.free_per_month,
        },
    )
    return bool(taken)


_QUOTA_USED = Direct(_QUOTA_USED_SELECT)


async def _quota_used(uow: UnitOfWork, agent_id: int, price: ToolPrice) -> int:
    """Free calls of ``price.tool`` the agent has used this month (a read; no lock)."""
    rows = await direct_rows(
        uow,
        _QUOTA_USED,
        {"agent_id": agent_id, "tool": price.tool, "period": period_of(uow.clock.now())},
    )
    return int(rows[0][0]) if rows else 0


async def free_quota_left(uow: UnitOfWork, agent_id: int, price: ToolPrice) -> int:
    """Free calls of ``price.tool`` the agent has left this month (a read; no lock)."""
    if price.free_per_month <= 0:
        return 0
    return max(price.free_per_month - await _quota_used(uow, agent_id, price), 0)


async def _record_usage(
    uow: UnitOfWork, call: MeteredCall, receipt: Receipt | None, txn: int | None
) -> None:
    now = uow.clock.now()
    await direct_execute(
        uow,
        _INSERT_USAGE,
        {
            "call_id": call.call_id,
            "agent_id": call.agent_id,
            "tool": call.tool,
            "period": period_of(now),
            "free": receipt is None or receipt.free or receipt.price_usd_micros == 0,
            "price_usd_micros": receipt.price_usd_micros if receipt else 0,
            "currency": receipt.currency if receipt else None,
            "amount": receipt.amount if receipt else 0,
            "transaction_id": txn,
            "created_at": now,
        },
    )


async def _charge(
    uow: UnitOfWork,
    call: MeteredCall,
    config: BillingConfig,
    payer: Payer,
) -> tuple[Receipt, int]:
    """Charge a read tool's successful call in the caller's transaction.

    ``payer`` is the wallet chosen before the operation ran; the conditional debit still
    decides, so a wallet emptied meanwhile by a concurrent call refuses the charge.
    """
    wallet, priced = payer.wallet, payer.price
    await add_spending(uow, call.agent_id, priced.total_usd_micros, uow.clock.now(), payer.caps)
    revenue = await system_account(uow, AccountKind.REVENUE, wallet.currency)
    try:
        posted = await post(
            uow,
            kind=TransactionKind.CHARGE,
            reference=f"charge:{call.call_id}",
            legs=[debit(wallet, priced.fee), credit(revenue, priced.fee)],
            currency=wallet.currency,
            amount=priced.fee,
            agent_id=call.agent_id,
            call_id=call.call_id,
            tool=call.tool,
            price_usd_micros=priced.fee_usd_micros,
            rate=priced.rate,
            memo=f"{call.tool} call",
        )
    except InsufficientFunds:
        raise _LostRace from None
    await _balance_low(uow, call.agent_id, wallet, posted.balances, priced.fee, priced.rate, config)
    receipt = Receipt(
        call_id=call.call_id,
        tool=call.tool,
        price_usd_micros=priced.fee_usd_micros,
        currency=wallet.currency,
        amount=priced.fee,
        balance_after=posted.balances[wallet.id],
        rate=priced.rate,
    )
    return receipt, posted.transaction_id


async def _balance_low(
    uow: UnitOfWork,
    agent_id: int,
    wallet: AccountRef,
    balances: dict[int, int],
    debited: int,
    rate: int,
    config: BillingConfig,
) -> None:
    """Emit ``balance.low`` if debiting ``debited`` took the wallet across the threshold."""
    if wallet.id in balances:
        await emit_if_balance_low(
            uow,
            agent_id=agent_id,
            currency=wallet.currency,
            balance_before=balances[wallet.id] + debited,
            balance_after=balances[wallet.id],
            rate=rate,
            threshold_usd_micros=config.balance_low_usd_micros,
        )


async def place_hold(
    db: Database,
    *,
    agent_id: int,
    tool: str,
    call_id: str,
    fee_usd_micros: int,
    extra: ExtraPrice | None,
    config: BillingConfig,
) -> Hold:
    """Reserve the call's whole price in its own committed transaction (wallet -> holds)."""
    for _ in range(RACE_ATTEMPTS):
        try:
            return await _place_hold_once(
                db, agent_id, tool, call_id, fee_usd_micros, extra, config
            )
        except _LostRace:
            continue
    async with db.uow() as uow:
        raise await insufficient_funds(uow, agent_id, tool, fee_usd_micros, extra, config)


async def _place_hold_once(
    db: Database,
    agent_id: int,
    tool: str,
    call_id: str,
    fee_usd_micros: int,
    extra: ExtraPrice | None,
    config: BillingConfig,
) -> Hold:
    async with db.uow() as uow:
        payer = await _choose_payer(uow, agent_id, tool, fee_usd_micros, extra, config)
        wallet, priced = payer.wallet, payer.price
        now = uow.clock.now()
        await add_spending(uow, agent_id, priced.total_usd_micros, now, payer.caps)
        holds = await system_account(uow, AccountKind.HOLDS, wallet.currency)
        try:
            posted = await post(
                uow,
                kind=TransactionKind.HOLD,
                reference=f"hold:{call_id}",
                legs=[debit(wallet, priced.total), credit(holds, priced.total)],
                currency=wallet.currency,
                amount=priced.total,
                agent_id=agent_id,
                call_id=call_id,
                tool=tool,
                price_usd_micros=priced.total_usd_micros,
                rate=priced.rate,
                memo=f"hold for a {tool} call",
            )
        except InsufficientFunds:
            raise _LostRace from None
        await _balance_low(
            uow, agent_id, wallet, posted.balances, priced.total, priced.rate, config
        )
        hold = Hold(
            call_id=call_id,
            agent_id=agent_id,
            tool=tool,
            wallet_account_id=wallet.id,
            currency=wallet.currency,
            amount=priced.total,
            fee_amount=priced.fee,
            price_usd_micros=priced.total_usd_micros,
            fee_usd_micros=priced.fee_usd_micros,
            rate=priced.rate,
            status=HoldStatus.PENDING.value,
            hold_transaction_id=posted.transaction_id,
            created_at=now,
        )
        uow.session.add(hold)
        await uow.flush()
        await uow.commit()
        return hold


async def _settle_hold(uow: UnitOfWork, hold: Hold, status: HoldStatus) -> bool:
    """Move a pending hold to ``status``; False if it already left ``pending``."""
    moved = await uow.session.execute(
        update(_HOLDS)
        .where(_HOLDS.c.id == hold.id, _HOLDS.c.status == HoldStatus.PENDING.value)
        .values(status=status.value, settled_at=uow.clock.now())
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


async def _wallet_balance(uow: UnitOfWork, account_id: int) -> int:
    held = (
        await uow.session.execute(select(_ACCOUNTS.c.balance).where(_ACCOUNTS.c.id == account_id))
    ).scalar_one()
    return int(held)


async def _return_to_wallet(uow: UnitOfWork, hold: Hold, amount: int, reference: str) -> None:
    holds = await system_account(uow, AccountKind.HOLDS, hold.currency)
    wallet = AccountRef(hold.wallet_account_id, AccountKind.WALLET, hold.currency)
    await post(
        uow,
        kind=TransactionKind.RELEASE,
        reference=reference,
        legs=[debit(holds, amount), credit(wallet, amount)],
        currency=hold.currency,
        amount=amount,
        agent_id=hold.agent_id,
        call_id=hold.call_id,
        tool=hold.tool,
        memo=f"release of the hold for a {hold.tool} call",
    )


async def _capture(uow: UnitOfWork, call: MeteredCall, hold: Hold) -> tuple[Receipt, int | None]:
    """Turn the hold into the charge (and escrow), in the operation's transaction.

    ``_HoldLost`` when the sweeper released the hold while the operation ran: the money is
    back in the wallet, and the operation's transaction must be rolled back."""
    if not await _settle_hold(uow, hold, HoldStatus.CAPTURED):
        raise _HoldLost
    txn: int | None = None
    if hold.fee_amount:
        holds = await system_account(uow, AccountKind.HOLDS, hold.currency)
        revenue = await system_account(uow, AccountKind.REVENUE, hold.currency)
        posted = await post(
            uow,
            kind=TransactionKind.CHARGE,
            reference=f"charge:{call.call_id}",
            legs=[debit(holds, hold.fee_amount), credit(revenue, hold.fee_amount)],
            currency=hold.currency,
            amount=hold.fee_amount,
            agent_id=hold.agent_id,
            call_id=call.call_id,
            tool=call.tool,
            price_usd_micros=hold.fee_usd_micros,
            rate=hold.rate,
            memo=f"{call.tool} call",
        )
        txn = posted.transaction_id
    unused = hold.amount - hold.fee_amount - call.escrowed
    if unused > 0:
        await _return_to_wallet(uow, hold, unused, f"release:{call.call_id}")
        if call.escrowed == 0:
            unused_usd = hold.price_usd_micros - hold.fee_usd_micros
            await return_spending(uow, hold.agent_id, unused_usd, hold.created_at)
    receipt = Receipt(
        call_id=call.call_id,
        tool=call.tool,
        price_usd_micros=hold.fee_usd_micros,
        currency=hold.currency,
        amount=hold.fee_amount,
        balance_after=await _wallet_balance(uow, hold.wallet_account_id),
        rate=hold.rate,
        escrowed=call.escrowed,
    )
    return receipt, txn


async def release_hold(db: Database, hold: Hold) -> bool:
    """Give a pending hold back to its wallet (own transaction); False if already settled.

    Shielded from cancellation: it cleans up after calls that were stopped, often by a
    cancel scope (a client that went away), which would otherwise cancel its every await."""
    with anyio.CancelScope(shield=True):
        async with db.uow() as uow:
            released = await _settle_hold(uow, hold, HoldStatus.RELEASED)
            if released:
                await _return_to_wallet(uow, hold, hold.amount, f"release:{hold.call_id}")
                await return_spending(uow, hold.agent_id, hold.price_usd_micros, hold.created_at)
                await uow.commit()
    return released


async def release_stale_holds(db: Database, older_than: timedelta) -> int:
    """Release holds pending for longer than ``older_than`` (calls that crashed); how many."""
    async with db.uow() as uow:
        cutoff = uow.clock.now() - older_than
        stale = list(
            (
                await uow.session.execute(
                    select(Hold).where(
                        Hold.status == HoldStatus.PENDING.value, Hold.created_at < cutoff
                    )
                )
            ).scalars()
        )
        uow.session.expunge_all()  # keep them loaded when this read-only transaction ends
    released = 0
    for hold in stale:
        if await release_hold(db, hold):
            released += 1
    return released


async def run_metered(
    db: Database,
    *,
    agent_id: int,
    tool: str,
    arguments: JSONDict,
    idempotency_key: str | None,
    operation: Operation,
    extra_price: ExtraPrice | None = None,
    config: BillingConfig,
    admission: Admission | None = None,
    settle: Admission | None = None,
    durable: bool = True,
) -> Metered:
    """Run one tool call and charge for it exactly once if, and only if, it succeeds.

    ``arguments`` identify the call for idempotency (same key + same arguments -> the stored
    result); while the call runs, its key's claim is renewed every ``key_renew_every``.
    ``extra_price`` is a slot price the operation moves into escrow with
    ``call.escrow(booking)``. ``admission`` and ``settle`` are the caller's last checks (the
    gate's: a read-ahead of the rate limit, then the count itself): in a read tool's call they
    run first and just before commit in its one transaction, so the count commits only with a
    successful call and its row is locked only while the call commits; otherwise both run in
    a committed transaction of their own before the call. Raises what they and the operation
    raise (after releasing any hold), ``InsufficientFunds``, ``SpendingCapReached``,
    ``IdempotencyMismatch``, and ``RateLimited`` for a held call whose hold the sweeper
    released twice while it ran (see ``_run_with_hold``).

    ``durable=False``, for a call whose operation changes nothing: a read tool's transaction
    (its charge, usage row and rate count) commits without waiting for the database to flush
    it to disk (``store.skip_flush_wait``). Held calls always wait.
    """
    price = config.prices.for_tool(tool)
    held = price.hold or (extra_price is not None and extra_price.amount > 0)
    if (admission is not None or settle is not None) and (held or idempotency_key is not None):
        async with db.uow() as uow:
            if admission is not None:
                await admission(uow)
            if settle is not None:
                await settle(uow)
            await uow.commit()
        admission = settle = None
    claim: idempotency.Claim | None = None
    if idempotency_key is not None:
        claimed = await idempotency.claim(
            db,
            agent_id=agent_id,
            key=idempotency_key,
            tool=tool,
            arguments=arguments,
            stale_after=config.stale_key_after,
        )
        if isinstance(claimed, idempotency.Replay):
            stored = claimed.receipt
            return Metered(
                result=claimed.result,
                receipt=Receipt(**stored) if stored else None,
                replayed=True,
            )
        claim = claimed
    call_id = uuid.uuid4().hex

    async def run() -> Metered:
        if held:
            return await _run_with_hold(
                db, agent_id, tool, call_id, operation, price, extra_price, config, claim
            )
        return await _run_and_charge(
            db, agent_id, tool, call_id, operation, price, config, claim, admission, settle, durable
        )

    if claim is None:
        return await run()
    try:
        async with idempotency.leased(db, claim, config.key_renew_every):
            return await run()
    except BaseException:
        await idempotency.abandon(db, claim)
        raise


async def _run_and_charge(
    db: Database,
    agent_id: int,
    tool: str,
    call_id: str,
    operation: Operation,
    price: ToolPrice,
    config: BillingConfig,
    claim: idempotency.Claim | None,
    admission: Admission | None,
    settle: Admission | None,
    durable: bool,
) -> Metered:
    """A read tool's call: the operation and its charge in one transaction. If a concurrent
    call empties the chosen wallet in between, the whole call starts over once with fresh
    balances (read tools change nothing, so running the operation again is harmless)."""
    for _ in range(RACE_ATTEMPTS):
        try:
            return await _run_and_charge_once(
                db,
                agent_id,
                tool,
                call_id,
                operation,
                price,
                config,
                claim,
                admission,
                settle,
                durable,
            )
        except _LostRace:
            continue
    async with db.uow() as uow:
        raise await insufficient_funds(uow, agent_id, tool, price.price_usd_micros, None, config)


async def _run_and_charge_once(
    db: Database,
    agent_id: int,
    tool: str,
    call_id: str,
    operation: Operation,
    price: ToolPrice,
    config: BillingConfig,
    claim: idempotency.Claim | None,
    admission: Admission | None,
    settle: Admission | None,
    durable: bool,
) -> Metered:
    async with db.uow() as uow:
        if not durable:
            await skip_flush_wait(uow)
        if admission is not None:
            await admission(uow)
        payer: Payer | None = None
        free_left = False
        if price.paid:
            # Refuse before doing the work; the conditional debit after it is the guarantee.
            free_left, payer = await _free_or_payer(uow, agent_id, price, config)
        call = MeteredCall(uow, agent_id, tool, call_id)
        result = await operation(call)
        receipt: Receipt | None = None
        txn: int | None = None
        if free_left and await _take_free_call(uow, agent_id, price):
            receipt = Receipt(call_id, tool, 0, None, 0, None, free=True)
        elif price.paid:
            if payer is None:  # the last free call went to a concurrent call meanwhile
                payer = await _choose_payer(
                    uow, agent_id, tool, price.price_usd_micros, None, config
                )
            receipt, txn = await _charge(uow, call, config, payer)
        await _record_usage(uow, call, receipt, txn)
        if claim is not None:
            await idempotency.complete(uow, claim, result, receipt.to_dict() if receipt else None)
        if settle is not None:
            await settle(uow)
        await uow.commit()
    return Metered(result=result, receipt=receipt)


async def _run_with_hold(
    db: Database,
    agent_id: int,
    tool: str,
    call_id: str,
    operation: Operation,
    price: ToolPrice,
    extra: ExtraPrice | None,
    config: BillingConfig,
    claim: idempotency.Claim | None,
) -> Metered:
    """A side-effecting call: its whole price held in a committed transaction, then the
    operation and the capture in another. A call that ran so long that the sweeper released
    its hold meanwhile is rolled back and starts over once with a new hold and call id (the
    operation's work was undone, so running it again is safe); if that happens again, the
    server is too busy to finish it and the agent is told to retry later."""
    for attempt in range(HOLD_ATTEMPTS):
        if attempt:
            call_id = uuid.uuid4().hex
        hold = await place_hold(
            db,
            agent_id=agent_id,
            tool=tool,
            call_id=call_id,
            fee_usd_micros=price.price_usd_micros,
            extra=extra,
            config=config,
        )
        try:
            async with db.uow() as uow:
                call = MeteredCall(uow, agent_id, tool, call_id, hold=hold)
                result = await operation(call)
                receipt, txn = await _capture(uow, call, hold)
                await _record_usage(uow, call, receipt, txn)
                if claim is not None:
                    await idempotency.complete(uow, claim, result, receipt.to_dict())
                await uow.commit()
        except _HoldLost:
            log.warning("billing.hold_lost", tool=tool, call_id=call_id, attempt=attempt + 1)
            continue
        except BaseException:
            await release_hold(db, hold)
            raise
        return Metered(result=result, receipt=receipt)
    raise RateLimited(
        f"The server is too busy to finish this {tool} call: it ran so long that its payment "
        f"reservation was released, twice. Nothing was charged or changed; retry in "
        f"{HOLD_RETRY_AFTER} seconds.",
        {"retry_after": HOLD_RETRY_AFTER, "tool": tool},
    )


async def quote(
    db: Database,
    *,
    agent_id: int,
    tool: str,
    extra_price: ExtraPrice | None = None,
    config: BillingConfig,
) -> Quote:
    """What a call of ``tool`` would cost now and the balance after; writes nothing.

    Priced in the wallet that would pay (the first, in paying order, that covers it), or in
    the preferred wallet when none does.
    """
    async with db.uow() as uow:
        return await quote_in(
            uow, agent_id=agent_id, tool=tool, extra_price=extra_price, config=config
        )


async def quote_in(
    uow: UnitOfWork,
    *,
    agent_id: int,
    tool: str,
    extra_price: ExtraPrice | None = None,
    config: BillingConfig,
) -> Quote:
    """``quote`` inside a unit of work the caller already holds (reads only)."""
    price = config.prices.for_tool(tool)
    left = await free_quota_left(uow, agent_id, price)
    free = price.free_per_month > 0 and left > 0
    fee = 0 if free else price.price_usd_micros
    wallets = await paying_wallets(uow, agent_id)
    chosen: tuple[AccountRef, int, Price] | None = None
    for ref, held in wallets:
        priced = price_in(ref.currency, fee, extra_price, config)
        if held >= priced.total:
            chosen = (ref, held, priced)
            break
    if chosen is None:
        if wallets:
            ref, held = wallets[0]
            currency = ref.currency
        else:
            preferred = (
                await uow.session.execute(select(Agent.currency).where(Agent.id == agent_id))
            ).scalar_one_or_none()
            currency, held = (preferred or DEFAULT_CURRENCY), 0
        priced = price_in(currency, fee, extra_price, config)
    else:
        _, held, priced = chosen
    return Quote(
        tool=tool,
        price_usd_micros=priced.total_usd_micros,
        currency=priced.currency,
        amount=priced.total,
        balance=held,
        balance_after=held - priced.total if held >= priced.total else held,
        sufficient=held >= priced.total,
        free=free,
        free_remaining=left if price.free_per_month > 0 else None,
        rate=priced.rate,
    )
