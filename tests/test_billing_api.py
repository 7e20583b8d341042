"""Usage and history over REST, as an agent owner's script would read them."""

from __future__ import annotations

from typing import Any

from accounts_support import api_for, bearer
from billing_support import fund

from agent_server.kernel.clock import FakeClock
from billing.config import BillingConfig
from billing.meter import Admission, MeteredCall, run_metered
from billing.prices import load_price_list
from wallets.rates import FakeRateSource


async def ok(call: MeteredCall) -> dict[str, Any]:
    return {}


async def test_usage_and_transactions_show_every_charge(
    database_url: str, clock: FakeClock
) -> None:
    config = BillingConfig(prices=load_price_list(), rates=FakeRateSource())
    async with api_for(database_url, clock, None) as api:
        registered = await api.register("owner@example.com", currency="USDC")
        assert registered.status_code == 201, registered.text
        agent, key = int(registered.json()["agent_id"]), registered.json()["api_key"]
        db = api.runtime.db
        await fund(db, agent, "USDC", 60_000)
        for tool in ("search-specialists", "search-specialists", "view-profile"):
            await run_metered(
                db,
                Admission(agent, tool),
                ok,
                config=config,
            )
        usage = await api.client.get(
            "/api/agent/wallet/usage", params={"period": "2026-03"}, headers=bearer(key)
        )
        assert usage.status_code == 200, usage.text
        body = usage.json()
        assert body["period"] == "2026-03"
        assert body["total_usd"] == {"amount": 20_000, "currency": "USD", "text": "0.02 USD"}
        by_tool = {row["tool"]: row for row in body["usage"]}
        assert by_tool["search-specialists"]["calls"] == 2
        assert by_tool["search-specialists"]["price_usd"] == {
            "amount": 20_000,
            "currency": "USD",
            "text": "0.02 USD",
        }
        assert by_tool["search-specialists"]["amounts"] == [
            {"amount": 20_000, "currency": "USDC", "text": "0.02 USDC"}
        ]
        assert by_tool["view-profile"]["free_calls"] == 1
        current = await api.client.get("/api/agent/wallet/usage", headers=bearer(key))
        assert current.json()["period"] == "2026-03"

        history = await api.client.get("/api/agent/wallet/transactions", headers=bearer(key))
        assert history.status_code == 200, history.text
        page = history.json()
        assert (page["total"], page["next_cursor"]) == (3, None)
        assert [(t["type"], t["balance_change"]["amount"]) for t in page["transactions"]] == [
            ("charge", -10_000),
            ("charge", -10_000),
            ("adjustment", 60_000),
        ]
        charge = page["transactions"][0]
        assert charge["amount"] == {"amount": 10_000, "currency": "USDC", "text": "0.01 USDC"}
        assert charge["balance_change"] == {
            "amount": -10_000,
            "currency": "USDC",
            "text": "-0.01 USDC",
        }
        assert charge["usd"] == {"amount": 10_000, "currency": "USD", "text": "0.01 USD"}
        assert "amount_display" not in charge and "currency" not in charge

        bad = await api.client.get(
            "/api/agent/wallet/usage", params={"period": "2026-13"}, headers=bearer(key)
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["details"]["fields"][0]["field"] == "period"
        anonymous = await api.client.get("/api/agent/wallet/transactions")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "UNAUTHORIZED"


async def test_transactions_page_by_cursor_and_a_new_one_shifts_no_page(
    database_url: str, clock: FakeClock
) -> None:
    async with api_for(database_url, clock, None) as api:
        registered = await api.register("pager@example.com", currency="USDC")
        assert registered.status_code == 201, registered.text
        agent, key = int(registered.json()["agent_id"]), registered.json()["api_key"]
        db = api.runtime.db
        for amount in (1_000, 2_000, 3_000, 4_000, 5_000):
            await fund(db, agent, "USDC", amount)

        async def page(**params: Any) -> dict[str, Any]:
            reply = await api.client.get(
                "/api/agent/wallet/transactions", params=params, headers=bearer(key)
            )
            assert reply.status_code == 200, reply.text
            return dict(reply.json())

        first = await page(limit=2)
        assert [t["amount"]["amount"] for t in first["transactions"]] == [5_000, 4_000]
        assert first["total"] == 5 and first["next_cursor"]
        # Money arriving between two pages is not shown again below, nor pushes one down.
        await fund(db, agent, "USDC", 6_000)
        second = await page(limit=2, cursor=first["next_cursor"])
        assert [t["amount"]["amount"] for t in second["transactions"]] == [3_000, 2_000]
        last = await page(limit=2, cursor=second["next_cursor"])
        assert [t["amount"]["amount"] for t in last["transactions"]] == [1_000]
        assert last["next_cursor"] is None
        assert [t["amount"]["amount"] for t in (await page(limit=1))["transactions"]] == [6_000]

        bad = await api.client.get(
            "/api/agent/wallet/transactions", params={"cursor": "page-2"}, headers=bearer(key)
        )
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"]["fields"][0]["field"] == "cursor"
        assert "next_cursor" in error["details"]["fields"][0]["message"]
        too_many = await api.client.get(
            "/api/agent/wallet/transactions", params={"limit": 101}, headers=bearer(key)
        )
        assert too_many.status_code == 422
        assert too_many.json()["error"]["details"]["fields"][0]["field"] == "limit"
