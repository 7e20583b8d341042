"""Schedule prices in USD: the currencies a schedule may be priced in, and ``usd_value``,
which search and the price facets compare prices by."""

from __future__ import annotations

from collections.abc import Mapping

from wallets.currencies import CURRENCIES as COINS

CURRENCIES: tuple[str, ...] = ("USD", "USDT", "USDC", "ETH", "BTC")
"""Currencies a schedule may be priced in. Amounts are integers in each one's base unit."""


# USD micro-dollars per whole coin, used when no live rate is given.
DEFAULT_USD_MICROS_PER_UNIT: Mapping[str, int] = {
    "BTC": 60_000_000_000,
    "ETH": 3_000_000_000,
}


def usd_value(
    amount: int, currency: str, usd_micros_per_unit: Mapping[str, int] | None = None
) -> int:
    """``amount`` (base units of ``currency``) in USD micro-dollars, rounded to the nearest.

    USD is already micro-dollars; USDT and USDC base units are 10^-6, so 1:1. BTC (satoshi)
    and ETH (gwei) use ``usd_micros_per_unit`` (micro-dollars per whole coin), or a static
    default table; their base units come from ``wallets.currencies``.
    """
    code = currency.upper()
    if code in ("USD", "USDT", "USDC"):
        return amount
    rates = usd_micros_per_unit or DEFAULT_USD_MICROS_PER_UNIT
    if code not in COINS or code not in rates:
        raise ValueError(f"no USD rate for {currency!r}")
    unit = int(10 ** COINS[code].decimals)
    return (amount * rates[code] + unit // 2) // unit
