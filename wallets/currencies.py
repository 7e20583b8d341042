"""The currencies agents can deposit, their chains, base units and minimum deposits.

Amounts are integers in each currency's base unit: satoshi for BTC, wei for ETH and
10^-6 for USDT and USDC. ETH, USDT and USDC share one deposit address per agent (the EVM
chain); BTC has its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from agent_server.errors import ValidationFailed


class Chain(StrEnum):
    """The address families a deposit address belongs to."""

    EVM = "evm"
    BTC = "btc"


@dataclass(frozen=True)
class CurrencyInfo:
    """One depositable currency."""

    code: str
    chain: Chain
    decimals: int
    min_deposit: int  # base units; smaller deposits are recorded but not credited

    def to_decimal(self, amount: int) -> Decimal:
        """Base units as a decimal amount of whole coins (for display only)."""
        return Decimal(amount).scaleb(-self.decimals)

    def format(self, amount: int) -> str:
        """Base units as a plain decimal string without trailing zeros, e.g. ``"25.5"``."""
        text = format(self.to_decimal(amount), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text or "0"

    def parse(self, text: str, field: str = "amount") -> int:
        """A decimal string of whole coins as base units; more decimals than exist is an error."""
        try:
            value = Decimal(text.strip())
        except ArithmeticError:
            raise ValidationFailed.field(
                field, f"give a decimal number of {self.code}, e.g. 25 or 0.5"
            ) from None
        if not value.is_finite() or value <= 0:
            raise ValidationFailed.field(field, f"give a positive amount of {self.code}")
        base = value.scaleb(self.decimals)
        if base != base.to_integral_value():
            raise ValidationFailed.field(
                field, f"{self.code} has {self.decimals} decimals; round the amount"
            )
        return int(base)


CURRENCIES: dict[str, CurrencyInfo] = {
    "BTC": CurrencyInfo("BTC", Chain.BTC, 8, 10_000),  # 0.0001 BTC
    "ETH": CurrencyInfo("ETH", Chain.EVM, 18, 10**15),  # 0.001 ETH
    "USDT": CurrencyInfo("USDT", Chain.EVM, 6, 1_000_000),  # 1 USDT
    "USDC": CurrencyInfo("USDC", Chain.EVM, 6, 1_000_000),  # 1 USDC
}

TOKEN_CURRENCIES: tuple[str, ...] = ("USDT", "USDC")


def currency_info(code: str, field: str = "currency") -> CurrencyInfo:
    """The currency named ``code`` (case-insensitive), or ``ValidationFailed`` naming ``field``."""
    info = CURRENCIES.get(code.strip().upper()) if isinstance(code, str) else None
    if info is None:
        raise ValidationFailed.field(field, f"choose one of {', '.join(CURRENCIES)}")
    return info
