"""Which wallet pays a call, and the refusal when none can.

The agent's preferred currency first, then its other wallets in the order they were opened;
the first that covers the whole price at the current rate (rounded up to the base unit) pays.
If none does, ``InsufficientFunds`` (402) names the price, the balance and the deposit address
of the preferred wallet, and nothing is written. The meter and the ``quote`` tool decide on the
same read (``read_wallets``) with the same rule (``Wallets.payer``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Integer, String, bindparam, case, column, select, table

from agent_server.kernel.errors import InsufficientFunds
from agent_server.kernel.money import amount_text, usd_text
from agent_server.kernel.store import Direct, UnitOfWork, direct_rows
from agent_server.kernel.store.rows import NamedRow
from billing.caps import Caps, caps_columns
from billing.config import BillingConfig
from billing.ledger import AccountRef
from billing.meter.pricing import ExtraPrice, Price, price_in
from billing.meter.quota import QUOTA_USED_SELECT, period_of, quota_used
from billing.models import AccountKind, LedgerAccount
from billing.prices import ToolPrice

DEFAULT_CURRENCY = "USDC"
"""The currency an agent without a wallet or a preference is priced in."""

_ACCOUNTS: Any = LedgerAccount.__table__
# The one fact billing reads about an agent: its preferred currency (``agents.currency``).
_AGENTS = table("agents", column("id", Integer), column("currency", String))


def _payers_query() -> Any:
    """One row per wallet in paying order (``id``, ``currency``, ``balance``), with the
    agent's caps on every row (``capped``: 0 or 1 on SQLite, ``daily``, ``monthly``)."""
    daily, monthly, capped, low = caps_columns()
    agent: BindParameter[int] = bindparam("agent_id")
    preferred = select(_AGENTS.c.currency).where(_AGENTS.c.id == agent).scalar_subquery()
    return (
        select(
            _ACCOUNTS.c.id,
            _ACCOUNTS.c.currency,
            _ACCOUNTS.c.balance,
            capped.label("capped"),
            daily.label("daily"),
            monthly.label("monthly"),
            low.label("balance_low"),
        )
        .where(_ACCOUNTS.c.agent_id == agent, _ACCOUNTS.c.kind == AccountKind.WALLET.value)
        .order_by(case((_ACCOUNTS.c.currency == preferred, 0), else_=1), _ACCOUNTS.c.id)
    )


PAYERS = Direct(_payers_query())
# The paying wallets, with this month's free calls used of one tool on every row (NULL: none).
PAYERS_AND_QUOTA = Direct(
    _payers_query().add_columns(QUOTA_USED_SELECT.scalar_subquery().label("quota_used"))
)
_PREFERRED = Direct(select(_AGENTS.c.currency).where(_AGENTS.c.id == bindparam("agent_id")))


@dataclass(frozen=True, slots=True)
class Payer:
    """The wallet that pays a call, its balance, the price in its currency, the agent's caps."""

    wallet: AccountRef
    balance: int
    price: Price
    caps: Caps | None


@dataclass(frozen=True, slots=True)
class Wallets:
    """An agent's wallets in paying order with their balances and its spending caps, from one
    read; with ``quota_used`` when the read included one tool's free calls this month."""

    balances: list[tuple[AccountRef, int]]
    caps: Caps | None
    quota_used: int | None = None

    @classmethod
    def from_rows(cls, rows: Sequence[NamedRow], *, with_quota: bool = False) -> Wallets:
        """From ``PAYERS`` rows, or ``PAYERS_AND_QUOTA`` rows (``with_quota``)."""
        balances = [
            (AccountRef(int(row.id), AccountKind.WALLET, str(row.currency)), int(row.balance))
            for row in rows
        ]
        first = rows[0] if rows else None
        # capped, daily, monthly and quota_used are the same on every row.
        caps = (
            Caps(first.daily, first.monthly, first.balance_low)
            if first is not None and first.capped
            else None
        )
        used = int(first.quota_used or 0) if with_quota and first is not None else None
        return cls(balances, caps, used)

    def payer(
        self, fee_usd_micros: int, extra: ExtraPrice | None, config: BillingConfig
    ) -> Payer | None:
        """The first wallet, in paying order, whose balance covers the price; None if none."""
        for ref, held in self.balances:
            priced = price_in(ref.currency, fee_usd_micros, extra, config)
            if held >= priced.total:
                return Payer(ref, held, priced, self.caps)
        return None


async def read_wallets(
    uow: UnitOfWork, agent_id: int, quota_of: ToolPrice | None = None
) -> Wallets:
    """The agent's paying wallets in one statement; with the free calls used of
    ``quota_of``'s tool this month when given (read apart when the agent has no wallet)."""
    if quota_of is None:
        return Wallets.from_rows(await direct_rows(uow, PAYERS, {"agent_id": agent_id}))
    rows = await direct_rows(
        uow,
        PAYERS_AND_QUOTA,
        {"agent_id": agent_id, "tool": quota_of.tool, "period": period_of(uow.clock.now())},
    )
    wallets = Wallets.from_rows(rows, with_quota=True)
    if wallets.quota_used is None:
        return Wallets([], None, await quota_used(uow, agent_id, quota_of))
    return wallets


async def choose_payer(
    uow: UnitOfWork,
    agent_id: int,
    tool: str,
    fee_usd_micros: int,
    extra: ExtraPrice | None,
    config: BillingConfig,
    wallets: Wallets | None = None,
) -> Payer:
    """The wallet that pays, from ``wallets`` when the caller already read them;
    ``InsufficientFunds``, decided on those same balances, when none covers the price."""
    if wallets is None:
        wallets = await read_wallets(uow, agent_id)
    payer = wallets.payer(fee_usd_micros, extra, config)
    if payer is None:
        raise await insufficient_funds(uow, agent_id, tool, fee_usd_micros, extra, config, wallets)
    return payer


async def refusal_wallet(uow: UnitOfWork, agent_id: int, wallets: Wallets) -> tuple[str, int]:
    """The currency and balance a call none of the wallets can pay is priced in: the first
    wallet in paying order, else the agent's preferred currency (``DEFAULT_CURRENCY`` when
    it has none) with nothing in it."""
    if wallets.balances:
        ref, held = wallets.balances[0]
        return ref.currency, held
    preferred: str | None = None
    for row in await direct_rows(uow, _PREFERRED, {"agent_id": agent_id}):
        preferred = row.currency
    return (preferred or DEFAULT_CURRENCY), 0


async def insufficient_funds(
    uow: UnitOfWork,
    agent_id: int,
    tool: str,
    fee_usd_micros: int,
    extra: ExtraPrice | None,
    config: BillingConfig,
    wallets: Wallets | None = None,
) -> InsufficientFunds:
    """The INSUFFICIENT_FUNDS error for this call: price, balance and where to deposit.

    ``wallets`` is the snapshot the refusal was decided on (read again when not given)."""
    if wallets is None:
        wallets = await read_wallets(uow, agent_id)
    currency, balance = await refusal_wallet(uow, agent_id, wallets)
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
            "balances": {ref.currency: held for ref, held in wallets.balances},
        },
    )
