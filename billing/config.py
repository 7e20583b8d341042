"""What the billing services are configured with: prices, rates, deposit addresses, timeouts.

Build one ``BillingConfig`` per process (``BillingConfig.from_settings``; the runtime keeps
it as ``Runtime.billing``) and hand it to the meter; tests build their own with a
``FakeRateSource`` and a price list of their choice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from agent_server.kernel.config import Settings
from agent_server.kernel.store import UnitOfWork
from billing.prices import PriceList, load_price_list
from wallets.rates import RateSource, StaticRateSource

DepositAddressLookup = Callable[[UnitOfWork, int, str], Awaitable[str | None]]
"""``(uow, agent_id, currency) -> address or None``; must not allocate (it runs in
transactions that are rolled back, such as an INSUFFICIENT_FUNDS answer)."""


async def existing_deposit_address(uow: UnitOfWork, agent_id: int, currency: str) -> str | None:
    """The agent's already-allocated deposit address for ``currency``, if any."""
    from wallets.addresses import existing_deposit_address as lookup

    found = await lookup(uow, agent_id, currency)
    return None if found is None else found.address


@dataclass(frozen=True)
class BillingConfig:
    """Prices, the rate source and the knobs of metering."""

    prices: PriceList = field(default_factory=load_price_list)
    rates: RateSource = field(default_factory=StaticRateSource)
    deposit_address: DepositAddressLookup = existing_deposit_address
    # A hold still pending after this long belongs to a crashed call; the sweeper releases it.
    stale_hold_after: timedelta = timedelta(minutes=15)
    # A running call renews its idempotency key's claim this often; a claim not renewed for
    # stale_key_after belongs to a process that stopped, and a retry takes the key over.
    key_renew_every: timedelta = timedelta(seconds=10)
    stale_key_after: timedelta = timedelta(seconds=60)
    # A charge or hold taking a wallet below this (USD micro-dollars) emits balance.low.
    balance_low_usd_micros: int = 1_000_000

    @classmethod
    def from_settings(cls, settings: Settings, rates: RateSource | None = None) -> BillingConfig:
        return cls(
            prices=load_price_list(settings.price_list),
            rates=rates or StaticRateSource(),
            balance_low_usd_micros=settings.balance_low_usd_micros,
        )
