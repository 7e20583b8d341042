"""Money as people read it: the one formatter behind every surface.

Every amount in the product is an integer in its currency's base unit: micro-dollars for USD,
10^-6 for USDT and USDC, gwei for ETH, satoshi for BTC (``DECIMALS``). This module only shows
them; nothing computes with the text. It is part of the kernel (beside errors, clock and
config) so that billing, wallets and every transport (MCP, REST, dashboard, CLI, mail) read
the same figure from the same code without importing each other.

Formatting is integer arithmetic (``divmod`` by a power of ten): no float and no decimal
context that could round, so the text of any integer turns back into the same integer
(``base_units``).

    decimal_text(25_000_000, "USDC")  -> "25.00"
    amount_text(25_000_000, "USDC")   -> "25.00 USDC"
    amount_text(1_250_000, "ETH")     -> "0.00125 ETH"
    usd_text(10_000)                  -> "0.01 USD"
    Money.of(15_500_250, "USD")       -> {"amount": 15500250, "currency": "USD",
                                          "text": "15.50025 USD"}
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

USD = "USD"
DECIMALS: dict[str, int] = {"USD": 6, "USDT": 6, "USDC": 6, "ETH": 9, "BTC": 8}
"""Decimals of each currency's base unit: how many base units make one whole coin."""

_DECIMAL = re.compile(r"^(-?)(\d+)(?:\.(\d+))?$")


def decimal_text(amount: int, currency: str) -> str:
    """Base units as a plain decimal of whole coins, exact, with at least two decimals (cents)
    and no trailing zeros beyond them: ``25000000`` USD -> ``"25.00"``, ``1250000`` ETH ->
    ``"0.00125"``, ``-10000`` USD -> ``"-0.01"``. An unknown currency shows the integer."""
    places = DECIMALS.get(currency.upper())
    return str(amount) if places is None else scaled_text(amount, places)


def scaled_text(amount: int, places: int) -> str:
    """``amount`` counted in units of 10^-``places`` as a plain decimal with at least two
    decimals: ``scaled_text(1_250_000, 9)`` -> ``"0.00125"``. For a unit that is not a base
    unit, such as the wei a chain counts in; ``decimal_text`` names the currency instead."""
    whole, frac = divmod(abs(amount), 10**places)
    digits = f"{frac:0{places}d}".rstrip("0").ljust(2, "0") if places else "00"
    sign = "-" if amount < 0 else ""
    return f"{sign}{whole}.{digits}"


def amount_text(amount: int, currency: str | None) -> str:
    """``"25.00 USDC"``: an amount in base units with its currency, as a reader says it."""
    if currency is None:
        return str(amount)
    return f"{decimal_text(amount, currency)} {currency.upper()}"


def usd_text(micros: int) -> str:
    """Micro-dollars as ``"0.01 USD"``."""
    return amount_text(micros, USD)


def usd_decimal(micros: int) -> str:
    """Micro-dollars as ``"0.01"``: the figure of ``usd_text`` without its currency."""
    return decimal_text(micros, USD)


def base_units(text: str, currency: str) -> int:
    """The exact inverse of ``decimal_text``: ``"25.00"`` USDC -> ``25000000``.

    ``ValueError`` for text that is not a plain decimal or has more decimals than the base
    unit; for reading back what this module wrote (user input goes through the constrained
    input types, which name the field)."""
    places = DECIMALS.get(currency.upper())
    match = _DECIMAL.match(text)
    if places is None or match is None:
        raise ValueError(f"{text!r} is not an amount of {currency}")
    sign, whole = match.group(1), match.group(2)
    frac: str = match.group(3) or ""
    if len(frac.rstrip("0")) > places:
        raise ValueError(f"{currency} has {places} decimals")
    value: int = int(whole) * 10**places + int((frac[:places] or "0").ljust(places, "0"))
    return -value if sign else value


class Money(BaseModel):
    """An amount of money on the wire: the exact integer, its currency and how it reads."""

    amount: int = Field(description="In the currency's base unit.")
    currency: str = Field(
        description="USD (micro-dollars), USDT/USDC (10^-6), ETH (gwei), BTC (sat)."
    )
    text: str = Field(description='The same amount for people, e.g. "25.00 USD".')

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        return cls(amount=amount, currency=currency, text=amount_text(amount, currency))
