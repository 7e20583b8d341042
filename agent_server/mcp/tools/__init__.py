"""Every MCP tool of the product, declared on ``REGISTRY``.

Importing this package imports each tool module, so the registry is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Each tool module declares its tools on REGISTRY when imported.
import agent_server.mcp.tools.bookings
import agent_server.mcp.tools.discovery
import agent_server.mcp.tools.disputes
import agent_server.mcp.tools.provider
import agent_server.mcp.tools.reviews
import agent_server.mcp.tools.schedules
import agent_server.mcp.tools.wallet
import agent_server.mcp.tools.withdrawals  # noqa: F401
from agent_server.kernel.money import usd_text
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.runtime import Runtime
from billing.prices import PriceList, load_price_list


def price_text(prices: PriceList, tool: str) -> tuple[str, dict[str, Any]]:
    """How a tool's price reads in its description, and the same as metadata."""
    p = prices.for_tool(tool)
    # Only what applies: a free tool's metadata is its price, 0.
    meta: dict[str, Any] = {"price_usd_micros": p.price_usd_micros}
    if p.free_per_month:
        meta["free_per_month"] = p.free_per_month
    if p.hold:
        meta["hold"] = True
    if not p.paid:
        return "free.", meta
    text = f"{usd_text(p.price_usd_micros)} per call"
    if p.free_per_month:
        text = f"first {p.free_per_month} a month (UTC) free, then {text}"
    if tool == "book-slot":
        text += " (booking fee), plus the slot's price into escrow"
    return text + ".", meta


def describe_price(runtime: Runtime) -> Callable[[str], tuple[str, dict[str, Any]]]:
    prices = load_price_list(runtime.settings.price_list)
    return lambda tool: price_text(prices, tool)


__all__ = ["REGISTRY", "describe_price", "price_text"]
