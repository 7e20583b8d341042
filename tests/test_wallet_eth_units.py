"""ETH is counted in gwei inside the product (the chain's wei overflow a 64-bit integer above
9.22 ETH): the conversion helpers, and an ETH price above 10 ETH published and booked over MCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from mcp import Client
from mcp_support import call_ok, make_agent

from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.money import decimal_text
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from wallets.currencies import CURRENCIES, currency_info

GWEI = 10**9  # gwei per ETH
INT64_MAX = 2**63 - 1


def test_eth_is_gwei_in_the_product_and_wei_on_chain() -> None:
    eth = currency_info("eth")
    assert (eth.decimals, eth.chain_decimals, eth.chain_units_per_base_unit) == (9, 18, 10**9)
    assert eth.min_deposit == 10**6 and decimal_text(eth.min_deposit, "ETH") == "0.001"
    wei = 12_345_678_901_234_567_891  # 12.345678901234567891 ETH
    assert wei > INT64_MAX
    assert eth.chain_to_base(wei) == (12_345_678_901, 234_567_891)
    assert decimal_text(12_345_678_901, "ETH") == "12.345678901"
    assert eth.format_on_chain(wei) == "12.345678901234567891"
    assert eth.base_to_chain(12_345_678_901) == 12_345_678_901_000_000_000
    assert eth.chain_to_base(999_999_999) == (0, 999_999_999)  # less than a gwei: all dust
    assert eth.chain_to_base(eth.base_to_chain(25 * GWEI)) == (25 * GWEI, 0)
    assert eth.parse("25") == 25 * GWEI
    assert eth.parse_on_chain("25") == 25 * 10**18
    assert eth.parse_on_chain("0.000000000000000001") == 1
    with pytest.raises(ValidationFailed) as refused:
        eth.parse("0.0000000001")  # a tenth of a gwei
    assert refused.value.details["fields"] == [
        {"field": "amount", "message": "ETH has 9 decimals; round the amount"}
    ]
    with pytest.raises(ValueError):
        eth.chain_to_base(-1)


def test_other_currencies_count_on_chain_in_their_base_unit() -> None:
    for code in ("BTC", "USDT", "USDC"):
        info = CURRENCIES[code]
        assert info.chain_decimals == info.decimals and info.chain_units_per_base_unit == 1
        assert info.chain_to_base(123_456_789) == (123_456_789, 0)
        assert info.base_to_chain(123_456_789) == 123_456_789
    # The largest ETH balance a BIGINT holds is now about 9.2 billion ETH, not 9.22 ETH.
    assert decimal_text(INT64_MAX, "ETH") == "9223372036.854775807"


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield Runtime(settings=Settings(database_url=database_url), db=db)


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


def _eth(wallet: dict[str, object]) -> dict[str, str]:
    wallets = wallet["wallets"]
    assert isinstance(wallets, list)
    found: dict[str, str] = next(w for w in wallets if w["currency"] == "ETH")
    return found


async def test_an_eth_price_above_ten_eth_is_published_and_booked_in_gwei(
    runtime: Runtime, clock: FakeClock
) -> None:
    price = 12_500_000_000  # 12.5 ETH in gwei; in wei it would not fit a BIGINT
    _, seller = await make_agent(runtime.db, runtime.settings, currency="ETH", funds=GWEI)
    _, buyer = await make_agent(runtime.db, runtime.settings, currency="ETH", funds=20 * GWEI)
    weekly = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    async with client_for(runtime, seller) as client:
        made = await call_ok(
            client,
            "create-schedule",
            {
                "timezone": "Europe/Berlin",
                "weekly_hours": weekly,
                "price_amount": price,
                "price_currency": "ETH",
                "private": False,
                "idempotency_key": "eth-sched-01",
            },
        )
    schedule = made["schedule"]
    assert schedule["price"] == {"amount": price, "currency": "ETH", "text": "12.50 ETH"}
    # 0.1 USD for create-schedule at 3,000 USD/ETH: 33,334 gwei, rounded up.
    assert made["receipt"]["amount"] == {
        "amount": 33_334,
        "currency": "ETH",
        "text": "0.000033334 ETH",
    }

    async with client_for(runtime, buyer) as client:
        start = (clock.now() + timedelta(days=2)).isoformat()
        free = await call_ok(
            client, "get-availability", {"schedule_id": schedule["id"], "start": start}
        )
        booked = await call_ok(
            client,
            "book-slot",
            {
                "slot_id": next(iter(free["schedules"][0]["slots"])),
                "idempotency_key": "eth-book-0001",
            },
        )
        receipt = booked["receipt"]
        assert receipt["escrowed"] == {"amount": price, "currency": "ETH", "text": "12.50 ETH"}
        assert booked["booking"]["price"] == {
            "amount": price,
            "currency": "ETH",
            "text": "12.50 ETH",
        }
        wallet = _eth(await call_ok(client, "get-wallet", {}))
    left = 20 * GWEI - price - receipt["amount"]["amount"]  # the slot price and 0.05 USD
    assert receipt["amount"]["amount"] == 16_667
    assert receipt["balance_after"] == {
        "amount": left,
        "currency": "ETH",
        "text": "7.499983333 ETH",
    }
    assert wallet["balance"] == {"amount": left, "currency": "ETH", "text": "7.499983333 ETH"}
