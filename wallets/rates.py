"""Exchange rates and exact conversion between USD micro-dollars and each coin's base units.

A rate is an integer: USD micro-dollars per ONE WHOLE coin (``60_000_000_000`` is 60,000 USD
per BTC). Conversions use integer arithmetic only:

* ``usd_to_base_units`` prices a USD amount in a coin and rounds UP, so the platform never
  charges less than the listed price (1 satoshi more at worst);
* ``base_units_to_usd`` values a coin amount in USD and rounds DOWN, so a deposit is never
  worth more than what arrived.

Currencies and their decimals come from ``wallets.currencies``. Rate sources implement the
``RateSource`` protocol. ``StaticRateSource`` (the default) reads a fixed table;
``FakeRateSource`` is the settable double shipped for tests and demos. A live source (an
exchange API) should refresh in the background and answer from memory: callers ask for a rate
on every paid call and expect an immediate answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from wallets.currencies import currency_info

USD_DECIMALS = 6
"""USD amounts are micro-dollars."""

DEFAULT_RATES: Mapping[str, int] = {
    "BTC": 60_000_000_000,  # 60,000 USD
    "ETH": 3_000_000_000,  # 3,000 USD
    "USDT": 1_000_000,  # 1 USD
    "USDC": 1_000_000,  # 1 USD
}
"""The static table used when no other source is configured (USD micro-dollars per coin)."""


def _unit(code: str) -> int:
    """Base units in one whole coin; ``ValidationFailed`` (field ``currency``) if unknown."""
    return int(10 ** currency_info(code).decimals)


class RateSource(Protocol):
    """Where USD rates come from."""

    def usd_micros_per_coin(self, currency: str) -> int:
        """USD micro-dollars for one whole coin of ``currency``; positive."""
        ...


class StaticRateSource:
    """Rates from a fixed table (the default: ``DEFAULT_RATES``)."""

    def __init__(self, rates: Mapping[str, int] | None = None) -> None:
        table = dict(DEFAULT_RATES if rates is None else rates)
        for code, rate in table.items():
            currency_info(code)
            if not isinstance(rate, int) or rate <= 0:
                raise ValueError(f"rate for {code} must be a positive integer, got {rate!r}")
        self._rates = {code.upper(): rate for code, rate in table.items()}

    def usd_micros_per_coin(self, currency: str) -> int:
        try:
            return self._rates[currency.upper()]
        except KeyError:
            currency_info(currency)  # an unknown code is a ValidationFailed
            raise LookupError(f"no rate for {currency!r}") from None


class FakeRateSource(StaticRateSource):
    """A rate source tests can move: ``fake.set("BTC", 50_000_000_000)``."""

    def set(self, code: str, usd_micros_per_coin: int) -> None:
        currency_info(code)
        if usd_micros_per_coin <= 0:
            raise ValueError("a rate must be positive")
        self._rates[code.upper()] = usd_micros_per_coin


def usd_to_base_units(usd_micros: int, code: str, rate: int) -> int:
    """The amount of ``code`` base units worth ``usd_micros`` at ``rate``, rounded UP."""
    if usd_micros < 0:
        raise ValueError("a price cannot be negative")
    if rate <= 0:
        raise ValueError("a rate must be positive")
    numerator = usd_micros * _unit(code)
    return -(-numerator // rate)


def base_units_to_usd(amount: int, code: str, rate: int) -> int:
    """What ``amount`` base units of ``code`` are worth at ``rate``: USD micros, rounded DOWN."""
    if amount < 0:
        raise ValueError("an amount cannot be negative")
    if rate <= 0:
        raise ValueError("a rate must be positive")
    return amount * rate // _unit(code)


class HasRates(Protocol):
    @property
    def rates(self) -> RateSource: ...


def rate_source(runtime: HasRates) -> RateSource:
    """The runtime's one rate source: the one billing charges with, shared by all."""
    return runtime.rates
