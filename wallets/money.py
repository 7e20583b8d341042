"""Money as people read it: base-unit integers turned into ``25.00 USDC``.

Every amount in the product is an integer in its currency's base unit (micro-dollars for USD,
10^-6 for USDT and USDC, gwei for ETH, satoshi for BTC). These functions only display them;
nothing computes with their text.

    amount_text(25_000_000, "USDC")  -> "25.00 USDC"
    amount_text(1_250_000, "ETH")    -> "0.00125 ETH"
    usd_text(10_000)                 -> "0.01 USD"
    decimal_text(15_500_250, "USD")  -> "15.50025"
"""

from __future__ import annotations

from decimal import Decimal

from wallets.currencies import CURRENCIES

USD_DECIMALS = 6
DECIMALS: dict[str, int] = {"USD": USD_DECIMALS} | {c: i.decimals for c, i in CURRENCIES.items()}


def decimal_text(amount: int, currency: str) -> str:
    """Base units as a plain decimal with at least two decimals (cents) and no trailing
    zeros beyond them: ``25000000`` USD -> ``"25.00"``, ``1250000`` ETH -> ``"0.00125"``.
    An unknown currency shows the integer as it is."""
    places = DECIMALS.get(currency.upper())
    if places is None:
        return str(amount)
    text = format(Decimal(amount).scaleb(-places), "f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(2, "0")
    return f"{whole}.{frac}"


def amount_text(amount: int, currency: str | None) -> str:
    """``"25.00 USDC"``: an amount in base units with its currency, as a reader says it."""
    if currency is None:
        return str(amount)
    return f"{decimal_text(amount, currency)} {currency.upper()}"


def usd_text(micros: int) -> str:
    """Micro-dollars as ``"0.01 USD"``."""
    return amount_text(micros, "USD")
