"""The wallet over REST: choosing a deposit currency and reading balances with their USD total."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from accounts_support import registered, settings_for

from agent_server.api import build_api
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from billing.wallet_funds import credit_deposit
from wallets.addresses import wallet_keys
from wallets.models import Deposit
from wallets.rates import FakeRateSource


@pytest.fixture
async def api(database_url: str, db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    # BTC 60,000 USD, ETH 3,000 USD, USD coins 1
    runtime = Runtime(settings=settings_for(database_url), db=db, rates=FakeRateSource())
    transport = httpx.ASGITransport(app=build_api(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, runtime


async def test_choosing_a_currency_gives_a_stable_address_minimum_and_activation_amount(
    api: tuple[httpx.AsyncClient, Runtime], db: Database
) -> None:
    client, runtime = api
    _, key = await registered(db, runtime.settings, "w@example.com")
    auth = {"Authorization": f"Bearer {key}"}
    keys = wallet_keys(runtime.settings)

    btc = await client.post("/agent/wallet/currency", json={"currency": "btc"}, headers=auth)
    assert btc.status_code == 200, btc.text
    body = btc.json()
    assert body["currency"] == "BTC" and body["chain"] == "btc"
    assert body["deposit_address"] == keys.btc_address(0)
    assert body["deposit_address"].startswith("bcrt1q")  # regtest by default
    assert body["min_deposit"] == {"amount": 10_000, "currency": "BTC", "text": "0.0001 BTC"}
    # 20 USD at 60,000 USD, rounded up
    assert body["activation_deposit"]["text"] == "0.00033334 BTC"
    assert body["activation_usd"] == {"amount": 20_000_000, "currency": "USD", "text": "20.00 USD"}
    assert body["confirmations"] == runtime.settings.confirmations
    assert body["wallet"] == {
        "currency": "BTC",
        "balance": {"amount": 0, "currency": "BTC", "text": "0.00 BTC"},
        "deposit_address": keys.btc_address(0),
    }
    again = await client.post("/agent/wallet/currency", json={"currency": "BTC"}, headers=auth)
    assert again.json()["deposit_address"] == body["deposit_address"]

    usdc = (
        await client.post("/agent/wallet/currency", json={"currency": "USDC"}, headers=auth)
    ).json()
    assert (
        usdc["deposit_address"].startswith("0x")
        and usdc["activation_deposit"]["text"] == "20.00 USDC"
    )

    bad = await client.post("/agent/wallet/currency", json={"currency": "DOGE"}, headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "VALIDATION_ERROR"
    assert bad.json()["error"]["details"]["fields"][0]["field"] == "currency"
    anonymous = await client.post("/agent/wallet/currency", json={"currency": "BTC"})
    assert anonymous.status_code == 401


async def test_the_wallet_lists_balances_pending_deposits_and_the_usd_total(
    api: tuple[httpx.AsyncClient, Runtime], db: Database
) -> None:
    client, runtime = api
    agent_id, key = await registered(db, runtime.settings, "t@example.com")
    auth = {"Authorization": f"Bearer {key}"}
    btc_address = (
        await client.post("/agent/wallet/currency", json={"currency": "BTC"}, headers=auth)
    ).json()["deposit_address"]
    async with db.uow() as uow:
        await credit_deposit(
            uow, agent_id=agent_id, currency="USDC", amount=25_500_000,
            usd_micros=25_500_000, reference="test:usdc",
        )  # fmt: skip
        await credit_deposit(
            uow, agent_id=agent_id, currency="BTC", amount=100_000,
            usd_micros=60_000_000, reference="test:btc",
        )  # fmt: skip
        uow.session.add(
            Deposit(
                network="eip155:1", tx_hash="0xabc", position=-1, agent_id=agent_id,
                address="0x0", currency="ETH", amount=2 * 10**18, block_number=1,
                block_hash="0x1", status="pending", generation=0, activated_agent=False,
                seen_at=uow.clock.now(),
            )
        )  # fmt: skip
        await uow.commit()

    response = await client.get("/agent/wallet", headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    wallets = {w["currency"]: w for w in body["wallets"]}
    assert wallets["USDC"]["balance"] == {
        "amount": 25_500_000,
        "currency": "USDC",
        "text": "25.50 USDC",
    }
    assert wallets["USDC"]["balance_usd"]["text"] == "25.50 USD"
    assert wallets["BTC"]["balance"] == {"amount": 100_000, "currency": "BTC", "text": "0.001 BTC"}
    assert wallets["BTC"]["deposit_address"] == btc_address
    assert wallets["ETH"]["balance"]["amount"] == 0
    assert wallets["ETH"]["pending"] == {"amount": 2 * 10**9, "currency": "ETH", "text": "2.00 ETH"}
    assert body["total_usd"] == {"amount": 85_500_000, "currency": "USD", "text": "85.50 USD"}
    assert (await client.get("/agent/wallet")).status_code == 401
