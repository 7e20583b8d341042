"""The admission: everything the meter is told about one call, in one object.

The transport's gate builds it after its own checks and hands it to ``run_metered`` with the
operation. Besides who calls which tool with what, it carries the caller's two hooks into the
meter's transactions, as small protocols billing owns (billing imports no transport, account
or event module):

* ``gate`` (``CallGate``): the gate's last checks, the rate limit. In a read tool's call
  ``before_work`` runs first and ``before_commit`` just before the commit, in the call's one
  transaction, so the count commits only with a successful call and its row is locked only
  while the call commits. In a held or idempotent call both run first, in a committed
  transaction of their own.
* ``on_balance_low`` (``BalanceLowHook``): called with the paying wallet's balance before
  and after each debit (charge or hold), in the debit's transaction; the caller publishes
  ``balance.low`` when it crossed the threshold.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.money import usd_text
from agent_server.kernel.store import UnitOfWork
from billing.config import BillingConfig
from billing.ledger import AccountRef
from billing.meter.pricing import ExtraPrice, is_held, price_in
from billing.prices import ToolPrice


class CallGate(Protocol):
    """The caller's checks that ride in the meter's transactions (see the module docstring)."""

    async def before_work(self, uow: UnitOfWork) -> None:
        """Refuse the call before any work (a read-ahead: count and lock nothing)."""

    async def before_commit(self, uow: UnitOfWork) -> None:
        """Count the call, or refuse it, just before its transaction commits."""


class PriceLookup(Protocol):
    """Reads a held call's extra price (a slot's) in the meter's first transaction."""

    def __call__(self, uow: UnitOfWork) -> Awaitable[ExtraPrice | None]: ...


class BalanceLowHook(Protocol):
    """Told each debit of a wallet, in its transaction: publishes ``balance.low`` when the
    balance crossed ``threshold_usd_micros`` (valued at ``rate``)."""

    def __call__(
        self,
        uow: UnitOfWork,
        *,
        agent_id: int,
        currency: str,
        balance_before: int,
        balance_after: int,
        rate: int,
        threshold_usd_micros: int,
    ) -> Awaitable[object]: ...


def max_price_refused(tool: str, price_usd_micros: int, limit: int) -> ValidationFailed:
    """VALIDATION_ERROR on ``max_price``: the call costs ``price_usd_micros``, more than the
    caller's ``limit``; nothing was charged."""
    return ValidationFailed(
        f"{tool} costs {usd_text(price_usd_micros)} ({price_usd_micros} USD micro-dollars), "
        f"more than max_price {usd_text(limit)}; nothing was charged. Raise max_price to at "
        "least the price to make this call.",
        [{"field": "max_price", "message": f"the price is {price_usd_micros} USD micro-dollars"}],
        {"price_usd_micros": price_usd_micros, "max_price": limit},
    )


@dataclass(frozen=True, slots=True)
class Admission:
    """One admitted call of ``tool`` by ``agent_id``, as the meter runs it.

    ``arguments`` identify the call for its ``idempotency_key`` (same key and arguments: the
    stored result). ``extra_price`` is a slot price, held and moved into escrow by the
    operation. ``durable=False``, for a call whose operation changes nothing, lets a read
    tool's transaction commit without waiting for the disk (``store.skipping_flush_wait``).
    ``max_price_usd_micros``: the caller's limit on the call's list price (fee plus extra);
    a dearer call is refused before any charge (``check_max_price``).

    ``price_lookup`` reads the extra price instead, given in its place, never with it. For a
    tool the price list holds (``hold = true``) the meter reads it in its first transaction:
    the one that claims the idempotency key and counts the call, so a retry whose key is
    already done gets its stored result without the lookup. For another tool it is read
    first, in a transaction of its own: whether the call is held depends on it."""

    agent_id: int
    tool: str
    arguments: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str | None = None
    extra_price: ExtraPrice | None = None
    durable: bool = True
    gate: CallGate | None = None
    on_balance_low: BalanceLowHook | None = None
    max_price_usd_micros: int | None = None
    price_lookup: PriceLookup | None = None

    async def priced(self, uow: UnitOfWork, price: ToolPrice, config: BillingConfig) -> Admission:
        """This admission with its ``price_lookup`` read in ``uow`` (itself when it has none),
        held to ``max_price``."""
        if self.price_lookup is None:
            return self
        found = replace(self, extra_price=await self.price_lookup(uow), price_lookup=None)
        found.check_max_price(price, config)
        return found

    def check_max_price(self, price: ToolPrice, config: BillingConfig) -> None:
        """``ValidationFailed`` on ``max_price`` when the call's list price (the tool's fee
        plus any extra price, in USD micro-dollars) is higher than the caller allowed."""
        limit = self.max_price_usd_micros
        if limit is None:
            return
        total = price.price_usd_micros
        extra = self.extra_price
        if extra is not None and extra.amount > 0:
            if extra.currency.upper() == "USD":
                total += extra.amount
            else:
                total += price_in(extra.currency, 0, extra, config).extra_usd_micros
        if total > limit:
            raise max_price_refused(self.tool, total, limit)

    def held(self, price: ToolPrice) -> bool:
        """Whether this call reserves its price first (see ``pricing.is_held``)."""
        return is_held(price, self.extra_price)

    async def debited(
        self,
        uow: UnitOfWork,
        wallet: AccountRef,
        balances: dict[int, int],
        amount: int,
        rate: int,
        config: BillingConfig,
        threshold_usd_micros: int | None = None,
    ) -> None:
        """Tell ``on_balance_low`` that ``amount`` left ``wallet`` (its balance after is in
        the posting's ``balances``); the owner's ``threshold_usd_micros`` when it set one,
        else the server's."""
        if self.on_balance_low is not None and wallet.id in balances:
            await self.on_balance_low(
                uow,
                agent_id=self.agent_id,
                currency=wallet.currency,
                balance_before=balances[wallet.id] + amount,
                balance_after=balances[wallet.id],
                rate=rate,
                threshold_usd_micros=(
                    config.balance_low_usd_micros
                    if threshold_usd_micros is None
                    else threshold_usd_micros
                ),
            )
