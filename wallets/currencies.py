"""The currencies agents can deposit, their chains, base units and minimum deposits.

Amounts are integers in each currency's base unit: satoshi for BTC, gwei for ETH (the
chain's wei would overflow a 64-bit integer above 9.22 ETH), and 10^-6 for USDT and USDC.
Ledger entries, balances, holds, prices and receipts all use the base unit. The chain may
count in a smaller unit (``chain_decimals``: 18 for ETH's wei, the same as ``decimals`` for
the others): ``chain_to_base`` turns an amount seen on chain into base units, rounding down
and returning the remainder (dust) that is not credited, and ``base_to_chain`` goes back.
ETH, USDT and USDC share one deposit address per agent (the EVM chain); BTC has its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.inputs import BIGINT_MAX
from agent_server.kernel.money import DECIMALS, decimal_text, scaled_text


class Chain(StrEnum):
    """The address families a deposit address belongs to."""

    EVM = "evm"
    BTC = "btc"


@dataclass(frozen=True)
class CurrencyInfo:
    """One depositable currency."""

    code: str
    chain: Chain
    decimals: int  # of the base unit every amount in the product is counted in
    min_deposit: int  # base units; smaller deposits are recorded but not credited
    chain_decimals: int  # of the unit the chain counts in (wei for ETH); >= decimals

    @property
    def chain_units_per_base_unit(self) -> int:
        """How many of the chain's units make one base unit (10^9 wei per gwei for ETH)."""
        return int(10 ** (self.chain_decimals - self.decimals))

    def chain_to_base(self, amount_on_chain: int) -> tuple[int, int]:
        """An amount in the chain's unit as ``(base units credited, dust left on chain)``.

        Rounds down: the dust (less than one base unit, in the chain's unit) is not credited.
        """
        if amount_on_chain < 0:
            raise ValueError("an amount on chain cannot be negative")
        credited, dust = divmod(amount_on_chain, self.chain_units_per_base_unit)
        return credited, dust

    def base_to_chain(self, base: int) -> int:
        """Base units in the chain's unit (gwei to wei for ETH); exact."""
        return base * self.chain_units_per_base_unit

    def format_on_chain(self, amount_on_chain: int) -> str:
        """An amount in the chain's unit (a deposit as received) as whole coins, exactly."""
        return scaled_text(amount_on_chain, self.chain_decimals)

    def parse(self, text: str, field: str = "amount") -> int:
        """A decimal string of whole coins as base units; more decimals than exist is an error."""
        base = self._parse(text, field, self.decimals)
        if base > BIGINT_MAX:
            raise ValidationFailed.field(
                field,
                f"give at most {decimal_text(BIGINT_MAX, self.code)} {self.code}, "
                "the most the ledger holds",
            )
        return base

    def parse_on_chain(self, text: str, field: str = "amount") -> int:
        """A decimal string of whole coins in the chain's unit (wei for ETH), to send on chain."""
        return self._parse(text, field, self.chain_decimals)

    def _parse(self, text: str, field: str, decimals: int) -> int:
        try:
            value = Decimal(text.strip())
        except ArithmeticError:
            raise ValidationFailed.field(
                field, f"give a decimal number of {self.code}, e.g. 25 or 0.5"
            ) from None
        if not value.is_finite() or value <= 0:
            raise ValidationFailed.field(field, f"give a positive amount of {self.code}")
        if value.adjusted() + decimals > 80:  # no amount is this large; keep the int small
            raise ValidationFailed.field(field, f"give a smaller amount of {self.code}")
        base = value.scaleb(decimals)
        if base != base.to_integral_value():
            raise ValidationFailed.field(
                field, f"{self.code} has {decimals} decimals; round the amount"
            )
        return int(base)


CURRENCIES: dict[str, CurrencyInfo] = {
    "BTC": CurrencyInfo("BTC", Chain.BTC, DECIMALS["BTC"], 10_000, chain_decimals=8),  # 0.0001
    # gwei (DECIMALS["ETH"] is 9): wei (18 decimals) stays on the chain side only.
    "ETH": CurrencyInfo("ETH", Chain.EVM, DECIMALS["ETH"], 10**6, chain_decimals=18),  # 0.001
    "USDT": CurrencyInfo("USDT", Chain.EVM, DECIMALS["USDT"], 1_000_000, chain_decimals=6),  # 1
    "USDC": CurrencyInfo("USDC", Chain.EVM, DECIMALS["USDC"], 1_000_000, chain_decimals=6),  # 1
}

TOKEN_CURRENCIES: tuple[str, ...] = ("USDT", "USDC")


def currency_info(code: str, field: str = "currency") -> CurrencyInfo:
    """The currency named ``code`` (case-insensitive), or ``ValidationFailed`` naming ``field``."""
    info = CURRENCIES.get(code.strip().upper()) if isinstance(code, str) else None
    if info is None:
        raise ValidationFailed.field(field, f"choose one of {', '.join(CURRENCIES)}")
    return info
