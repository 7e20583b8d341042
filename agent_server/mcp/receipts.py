"""A charged call's receipt as tools show it: every figure in the one money shape.

The meter's ``billing.meter.Receipt`` keeps integers (and is stored that way with an
idempotency key, so a replay rebuilds it); ``receipt_out`` turns it into ``Receipt``, whose
figures are each ``{amount, currency, text}`` (``agent_server.kernel.money.Money``): the fee in
USD, what the wallet paid, the balance after, the escrowed slot price and the coin's USD rate.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agent_server.kernel.money import USD, Money
from billing.meter import Receipt as MeterReceipt


class Receipt(BaseModel):
    """What a paid call cost; present on every result that was charged."""

    call_id: str = Field(description="Id of this charged call in the ledger.")
    tool: str
    price_usd: Money = Field(description="The tool's fee in USD.")
    amount: Money | None = Field(description="What your wallet paid; null when free.")
    balance_after: Money | None = Field(description="That wallet's balance after.")
    rate: Money | None = Field(default=None, description="USD price of one coin, used to convert.")
    free: bool = Field(default=False, description="True when the monthly free quota paid.")
    escrowed: Money | None = Field(
        default=None, description="Slot price moved into escrow (book-slot); null if none."
    )


def money_or_none(amount: int | None, currency: str | None) -> Money | None:
    """``Money.of`` when there is a figure and a currency to read it in, else None."""
    return None if amount is None or currency is None else Money.of(amount, currency)


def receipt_out(receipt: MeterReceipt) -> Receipt:
    currency = receipt.currency
    return Receipt(
        call_id=receipt.call_id,
        tool=receipt.tool,
        price_usd=Money.of(receipt.price_usd_micros, USD),
        amount=None if receipt.free else money_or_none(receipt.amount, currency),
        balance_after=money_or_none(receipt.balance_after, currency),
        rate=money_or_none(receipt.rate, USD),
        free=receipt.free,
        escrowed=money_or_none(receipt.escrowed or None, currency),
    )


def receipt_body(receipt: MeterReceipt | None) -> dict[str, Any] | None:
    """The receipt's JSON form, as it goes into a result's structured content."""
    return receipt_out(receipt).model_dump(mode="json") if receipt is not None else None
