"""What a call costs in one wallet currency: the tool's fee plus any extra (a slot price)."""

from __future__ import annotations

from dataclasses import dataclass

from billing.config import BillingConfig
from billing.prices import ToolPrice
from wallets.currencies import currency_info
from wallets.rates import base_units_to_usd, usd_to_base_units


@dataclass(frozen=True, slots=True)
class ExtraPrice:
    """A price added to the tool's fee for one call and held in escrow (a slot price).

    ``currency`` is a wallet currency (base units) or ``"USD"`` (micro-dollars).
    """

    amount: int
    currency: str


@dataclass(frozen=True, slots=True)
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


def is_held(price: ToolPrice, extra: ExtraPrice | None) -> bool:
    """Whether a call reserves its price before it runs: a side-effecting tool (``hold = true``
    in the price list) or a call with an extra price to escrow."""
    return price.hold or (extra is not None and extra.amount > 0)
