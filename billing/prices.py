"""The price list: what each tool costs in USD, free monthly quotas, and the booking policy.

Read from a TOML file (``billing/prices.toml`` by default, ``Settings.price_list`` to use
another). USD prices are written as exact decimal strings and held as integer micro-dollars;
a tool the file does not list is free.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from agent_server.kernel.errors import ValidationFailed
from wallets.currencies import currency_info

DEFAULT_PRICE_LIST = Path(__file__).with_name("prices.toml")
USD_MICROS = 1_000_000


class PriceListError(ValueError):
    """The price list file is malformed; the message names the entry and the fix."""


@dataclass(frozen=True)
class ToolPrice:
    """The price of one tool."""

    tool: str
    price_usd_micros: int = 0
    # Calls per agent and calendar month (UTC) that are free before the price applies.
    free_per_month: int = 0
    # Side-effecting tools reserve their price before running (a hold) and capture it after.
    hold: bool = False

    @property
    def paid(self) -> bool:
        return self.price_usd_micros > 0


@dataclass(frozen=True)
class BookingPolicy:
    """How escrowed slot prices are refunded and paid out."""

    full_refund_before: timedelta = timedelta(hours=24)
    late_refund_percent: int = 50
    commission_percent: int = 10


DEFAULT_WITHDRAWAL_MINIMUM = {"BTC": 10_000, "ETH": 1_000_000, "USDT": 1_000_000, "USDC": 1_000_000}


@dataclass(frozen=True)
class WithdrawalPolicy:
    """What a withdrawal or payout is charged on top of its amount: the network fee estimated
    when it is requested, times ``network_fee_percent`` / 100, plus ``fee_usd_micros`` in the
    currency at the current rate; and the least amount per currency, in base units."""

    network_fee_percent: int = 100
    fee_usd_micros: int = 0
    minimum: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_WITHDRAWAL_MINIMUM))


@dataclass(frozen=True)
class PriceList:
    """Every tool's price, the booking policy and the withdrawal fees."""

    tools: dict[str, ToolPrice] = field(default_factory=dict)
    booking: BookingPolicy = field(default_factory=BookingPolicy)
    withdrawals: WithdrawalPolicy = field(default_factory=WithdrawalPolicy)

    def for_tool(self, tool: str) -> ToolPrice:
        """The tool's price; a free ``ToolPrice`` for a tool the list does not name."""
        return self.tools.get(tool) or ToolPrice(tool)


def usd_to_micros(text: str, where: str) -> int:
    """An exact decimal USD string (``"0.01"``) as micro-dollars."""
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        raise PriceListError(
            f"{where}: write the USD price as a decimal string, e.g. '0.01'"
        ) from None
    micros = value * USD_MICROS
    if not value.is_finite() or value < 0 or micros != micros.to_integral_value():
        raise PriceListError(f"{where}: a USD price is >= 0 with at most 6 decimals")
    return int(micros)


def _int(table: dict[str, Any], key: str, default: int, where: str, top: int | None = None) -> int:
    value = table.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PriceListError(f"{where}.{key}: give a whole number >= 0")
    if top is not None and value > top:
        raise PriceListError(f"{where}.{key}: at most {top}")
    return value


def parse_price_list(data: dict[str, Any]) -> PriceList:
    """A ``PriceList`` from the parsed TOML document."""
    tools: dict[str, ToolPrice] = {}
    for name, entry in (data.get("tools") or {}).items():
        where = f"tools.{name}"
        if not isinstance(entry, dict):
            raise PriceListError(f"{where}: expected a table")
        unknown = set(entry) - {"price_usd", "free_per_month", "hold"}
        if unknown:
            raise PriceListError(f"{where}: unknown keys {sorted(unknown)}")
        hold = entry.get("hold", False)
        if not isinstance(hold, bool):
            raise PriceListError(f"{where}.hold: true or false")
        tools[name] = ToolPrice(
            tool=name,
            price_usd_micros=usd_to_micros(entry.get("price_usd", "0"), f"{where}.price_usd"),
            free_per_month=_int(entry, "free_per_month", 0, where),
            hold=hold,
        )
    booking = data.get("booking") or {}
    policy = BookingPolicy(
        full_refund_before=timedelta(hours=_int(booking, "full_refund_hours", 24, "booking")),
        late_refund_percent=_int(booking, "late_refund_percent", 50, "booking", 100),
        commission_percent=_int(booking, "commission_percent", 10, "booking", 100),
    )
    return PriceList(tools=tools, booking=policy, withdrawals=_withdrawals(data))


def _withdrawals(data: dict[str, Any]) -> WithdrawalPolicy:
    table = data.get("withdrawals") or {}
    where = "withdrawals"
    unknown = set(table) - {"network_fee_percent", "fee_usd", "minimum"}
    if unknown:
        raise PriceListError(f"{where}: unknown keys {sorted(unknown)}")
    minimum = dict(DEFAULT_WITHDRAWAL_MINIMUM)
    for code, text in (table.get("minimum") or {}).items():
        if code not in minimum:
            raise PriceListError(f"{where}.minimum.{code}: one of {sorted(minimum)}")
        try:
            minimum[code] = currency_info(code).parse(str(text))
        except ValidationFailed:
            raise PriceListError(
                f"{where}.minimum.{code}: a decimal string of coins, e.g. '0.001'"
            ) from None
    return WithdrawalPolicy(
        network_fee_percent=_int(table, "network_fee_percent", 100, where, 1000),
        fee_usd_micros=usd_to_micros(table.get("fee_usd", "0"), f"{where}.fee_usd"),
        minimum=minimum,
    )


def load_price_list(path: Path | None = None) -> PriceList:
    """The price list in ``path``, or the built-in defaults (SPEC's prices)."""
    source = path or DEFAULT_PRICE_LIST
    try:
        with source.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise PriceListError(f"{source}: {exc}") from exc
    return parse_price_list(data)
