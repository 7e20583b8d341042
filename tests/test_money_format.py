"""One figure for one amount on every surface: the MCP text, REST, the dashboard (its template
filters, forms and CSV), the CLI and mails all read money through ``agent_server.kernel.money``.

Properties: for any amount and currency, every surface shows the same figure; the figure
turns back into the same integer (nothing is lost); and no float is ever involved.
"""

from __future__ import annotations

import ast
import inspect
from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import agent_server.kernel.money as money
from agent_server.dashboard.forms import format_amount, parse_amount
from agent_server.dashboard.web import TEMPLATES
from agent_server.kernel.inputs import BIGINT_MAX
from agent_server.kernel.money import (
    DECIMALS,
    Money,
    amount_text,
    base_units,
    decimal_text,
    usd_text,
)
from agent_server.mcp.text import receipt_text, render
from wallets.currencies import CURRENCIES

CODES = st.sampled_from(sorted(DECIMALS))
AMOUNTS = st.integers(min_value=-BIGINT_MAX, max_value=BIGINT_MAX)
ROOT = Path(__file__).resolve().parents[1]


@given(AMOUNTS, CODES)
def test_every_surface_shows_the_same_figure(amount: int, currency: str) -> None:
    figure = decimal_text(amount, currency)
    said = f"{figure} {currency}"
    assert amount_text(amount, currency) == said
    assert Money.of(amount, currency).text == said  # MCP structured parts and REST bodies
    # MCP text: a money object, a receipt line and a generic body all read the same.
    body = {"price": Money.of(amount, currency).model_dump(), "note": "x"}
    assert f"price {said}" in render("some-tool", body)
    receipt = {"tool": "t", "call_id": "c", "amount": Money.of(amount, currency).model_dump()}
    assert receipt_text(receipt).startswith(f"Charged {said} for t")
    # Dashboard: the template filters and the form fields.
    filters = TEMPLATES.env.filters
    assert filters["money"](amount, currency) == said
    assert filters["coins"](amount, currency) == figure
    assert format_amount(amount, currency) == figure
    if currency == "USD":
        assert filters["usd"](amount) == usd_text(amount) == said


@given(AMOUNTS, CODES)
def test_the_figure_turns_back_into_the_same_integer(amount: int, currency: str) -> None:
    figure = decimal_text(amount, currency)
    assert base_units(figure, currency) == amount
    # The same, read as an exact decimal by anyone else (no rounding anywhere).
    assert Decimal(figure).scaleb(DECIMALS[currency]) == amount
    whole, _, frac = figure.lstrip("-").partition(".")
    assert len(frac) >= 2 and whole.isdigit()  # always cents, never an exponent


@given(st.integers(min_value=0, max_value=BIGINT_MAX), CODES)
def test_a_dashboard_form_reads_back_what_it_showed(amount: int, currency: str) -> None:
    assert parse_amount(format_amount(amount, currency), currency, "price") == amount


def test_currencies_count_in_the_units_the_formatter_knows() -> None:
    for code, info in CURRENCIES.items():
        assert DECIMALS[code] == info.decimals
    assert amount_text(25_000_000, "USDC") == "25.00 USDC"
    assert amount_text(1_250_000, "ETH") == "0.00125 ETH"
    assert amount_text(-10_000, "USD") == "-0.01 USD"
    assert amount_text(123_456_789_012, "BTC") == "1234.56789012 BTC"


def test_no_float_in_the_formatter_and_no_second_formatter_elsewhere() -> None:
    tree = ast.parse(inspect.getsource(money))
    for node in ast.walk(tree):
        assert not (isinstance(node, ast.Constant) and isinstance(node.value, float))
        assert not (isinstance(node, ast.Name) and node.id == "float")
        assert not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div))
    # Micro-dollars or base units divided into a float, or formatted by hand, anywhere else.
    suspects = ("/ 1_000_000", "/ 1e6", ":.2f", "// 10_000:02d", 'rstrip("0").ljust(2')
    for path in [*ROOT.glob("agent_server/**/*.py"), *ROOT.glob("billing/**/*.py"),
                 *ROOT.glob("wallets/**/*.py")]:  # fmt: skip
        if path.name == "money.py":
            continue
        source = path.read_text()
        for suspect in suspects:
            assert suspect not in source, f"{path.relative_to(ROOT)} formats money: {suspect}"
