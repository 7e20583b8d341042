"""Every MCP tool of the product, declared on ``REGISTRY``.

Importing this package imports each tool module, so the registry is complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Each tool module declares its tools on REGISTRY when imported.
import agent_server.mcp.tools.bookings
import agent_server.mcp.tools.discovery
import agent_server.mcp.tools.schedules
import agent_server.mcp.tools.wallet  # noqa: F401
from agent_server.mcp.tools.registry import REGISTRY
from agent_server.runtime import Runtime
from billing.prices import PriceList, load_price_list


def _usd(micros: int) -> str:
    whole, frac = divmod(micros, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else f"{whole}.00"


def price_text(prices: PriceList, tool: str) -> tuple[str, dict[str, Any]]:
    """How a tool's price reads in its description, and the same as metadata."""
    p = prices.for_tool(tool)
    meta: dict[str, Any] = {
        "price_usd_micros": p.price_usd_micros,
        "free_per_month": p.free_per_month,
        "hold": p.hold,
    }
    if not p.paid:
        return "free.", meta
    text = f"{_usd(p.price_usd_micros)} USD per successful call"
    if p.free_per_month:
        text = f"first {p.free_per_month} calls per calendar month (UTC) free, then {text}"
    if tool == "book-slot":
        text += " (booking fee) plus the slot's price, held in escrow until the session"
    return text + "; failed or refused calls cost nothing.", meta


def describe_price(runtime: Runtime) -> Callable[[str], tuple[str, dict[str, Any]]]:
    prices = load_price_list(runtime.settings.price_list)
    return lambda tool: price_text(prices, tool)


__all__ = ["REGISTRY", "describe_price", "price_text"]
