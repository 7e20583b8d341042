"""Withdrawals and payouts up to the hand-off to the sender, through the MCP tools and the
services: quote, request, the owner's emailed code (a real SMTP sink), the cooling-off time
(FakeClock), the operator's approval, cancel and reject returning the money once, and the
ledger, balances and events to the base unit."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import httpx
import pytest
from mcp import Client
from mcp_support import body, call_ok, error_code, make_agent
from smtp_sink import SmtpSink
from sqlalchemy import func, select, update
from withdrawal_setup import (
    ETH_ADDRESS,
    TOKEN_FEE,
    USDC,
    credit_earnings,
    mailed_code,
    withdrawal_runtime,
)

from agent_server.app import create_app
from agent_server.events.mail_delivery import MailSender
from agent_server.events.models import OutboxEvent
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from agent_server.services import withdrawals as svc
from billing.ledger import account_balance_from_entries, system_account
from billing.models import AccountKind, LedgerTransaction
from billing.wallet_funds import balances
from wallets.network_fees import FixedFees
from wallets.withdrawal_models import Withdrawal

OTHER_ETH_ADDRESS = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
BTC_REGTEST = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
THIRD_ETH_ADDRESS = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
FOURTH_ETH_ADDRESS = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"


@pytest.fixture
def runtime(database_url: str, db: Database, sink: SmtpSink) -> Runtime:
    return withdrawal_runtime(
        database_url,
        db,
        sink,
        withdrawal_cooling_off=timedelta(hours=24),
        withdrawal_approval_usd_micros=100 * USDC,
    )


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def _owner_email(db: Database, agent_id: int) -> str:
    async with db.uow() as uow:
        return await svc.owner_email(uow, svc.Owner(agent_id=agent_id))


async def _mail_code(runtime: Runtime, sink: SmtpSink, agent_id: int) -> str:
    return await mailed_code(runtime, sink, await _owner_email(runtime.db, agent_id))


async def _confirm(runtime: Runtime, agent_id: int, address_id: int, code: str) -> None:
    async with runtime.db.uow() as uow:
        done = await svc.confirm_address(
            uow, runtime.settings, svc.Owner(agent_id=agent_id), address_id, code
        )
        await uow.commit()
    if done.error is not None:
        raise done.error


async def _withdrawal(db: Database, public_id: str) -> Withdrawal:
    async with db.uow() as uow:
        found = await svc.find(uow, public_id)
        uow.session.expunge(found)
        return found


async def _account(db: Database, kind: AccountKind, currency: str = "USDC") -> int:
    async with db.uow() as uow:
        ref = await system_account(uow, kind, currency)
        held = await account_balance_from_entries(uow, ref.id)
        await uow.commit()
        return held


async def _events(db: Database, agent_id: int) -> list[tuple[str, str]]:
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(OutboxEvent.type, OutboxEvent.payload)
            .where(OutboxEvent.agent_id == agent_id, OutboxEvent.type.like("withdrawal.%"))
            .order_by(OutboxEvent.id)
        )
        return [(t, p["status"]) for t, p in rows.all()]


async def _money_in_events(db: Database, agent_id: int) -> list[tuple[object, object, str]]:
    """Each withdrawal.* event's ``amount``, ``fee`` and ``currency``, as a webhook sends them."""
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(OutboxEvent.payload)
            .where(OutboxEvent.agent_id == agent_id, OutboxEvent.type.like("withdrawal.%"))
            .order_by(OutboxEvent.id)
        )
        return [(p["amount"], p["fee"], p["currency"]) for (p,) in rows.all()]


async def _release(db: Database) -> int:
    async with db.uow() as uow:
        moved = await svc.release_due(uow)
        await uow.commit()
        return moved


async def _wallet(db: Database, agent_id: int) -> int:
    async with db.uow() as uow:
        return (await balances(uow, agent_id))["USDC"]


async def test_request_confirm_cool_off_approve_and_settle_to_the_base_unit(
    runtime: Runtime, sink: SmtpSink, clock: FakeClock
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=500 * USDC)
    async with client_for(runtime, key) as client:
        quoted = await call_ok(
            client,
            "request-withdrawal",
            {"currency": "USDC", "amount": 150 * USDC, "address": ETH_ADDRESS, "quote_only": True},
        )
        assert quoted["fee"] == {"amount": TOKEN_FEE, "currency": "USDC", "text": "1.95 USDC"}
        assert quoted["total"]["amount"] == 150 * USDC + TOKEN_FEE
        assert quoted["total"]["text"] == "151.95 USDC"
        assert quoted["withdrawal"] is None and await _wallet(db, agent_id) == 500 * USDC

        asked = await call_ok(
            client,
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 150 * USDC,
                "address": ETH_ADDRESS,
                "idempotency_key": "first-withdrawal",
            },
        )
    w = asked["withdrawal"]
    assert asked["code_sent"] is True
    assert w["status"] == "awaiting_confirmation" and w["fee"]["amount"] == TOKEN_FEE
    assert w["amount"] == {"amount": 150 * USDC, "currency": "USDC", "text": "150.00 USDC"}
    total = 150 * USDC + TOKEN_FEE
    assert await _wallet(db, agent_id) == 500 * USDC - total
    assert await _account(db, AccountKind.WITHDRAWING) == total

    code = await _mail_code(runtime, sink, agent_id)
    assert code not in str(asked)  # the caller with the key never sees the code
    row = await _withdrawal(db, w["id"])
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(ValidationFailed) as refused:
        await _confirm(runtime, agent_id, row.address_id, wrong)
    assert refused.value.details["fields"][0]["field"] == "code"
    assert "4 tries left" in refused.value.message
    await _confirm(runtime, agent_id, row.address_id, code)

    # Confirmed, but cooling off: nothing moves until 24 hours have passed.
    assert await _release(db) == 0
    clock.advance(timedelta(hours=23, minutes=59))
    assert await _release(db) == 0
    clock.advance(timedelta(minutes=1))
    assert await _release(db) == 1
    assert (await _withdrawal(db, w["id"])).status == "awaiting_approval"  # 150 USD > 100

    async with db.uow() as uow:
        with pytest.raises(ValidationFailed):
            await svc.approve(uow, w["id"], operator="ops@example.com", note=" ")
    async with db.uow() as uow:
        await svc.approve(uow, w["id"], operator="ops@example.com", note="known customer")
        await uow.commit()
    approved = await _withdrawal(db, w["id"])
    assert approved.status == "approved"
    assert (approved.decided_by, approved.decision_note) == ("ops@example.com", "known customer")
    assert approved.decided_at == clock.now()

    # The sender's part, in short: it claims, broadcasts, and the chain confirms.
    async with db.uow() as uow:
        await uow.session.execute(
            update(Withdrawal).where(Withdrawal.public_id == w["id"]).values(status="sending")
        )
        await svc.settle(uow, w["id"])
        await uow.commit()
    assert (await _withdrawal(db, w["id"])).status == "confirmed"
    assert await _account(db, AccountKind.WITHDRAWING) == 0
    assert await _account(db, AccountKind.WITHDRAWN) == 150 * USDC
    assert await _account(db, AccountKind.NETWORK_FEES) == TOKEN_FEE
    assert await _wallet(db, agent_id) == 500 * USDC - total
    assert await _events(db, agent_id) == [
        ("withdrawal.requested", "awaiting_confirmation"),
        ("withdrawal.confirmed", "confirmed"),
    ]
    # A webhook reads the withdrawal's money as Money, as the tools show it.
    fee_money = {"amount": TOKEN_FEE, "currency": "USDC", "text": "1.95 USDC"}
    amount_money = {"amount": 150 * USDC, "currency": "USDC", "text": "150.00 USDC"}
    assert await _money_in_events(db, agent_id) == [(amount_money, fee_money, "USDC")] * 2

    # The address is now usable: a small withdrawal to it is approved at once.
    async with client_for(runtime, key) as client:
        again = await call_ok(
            client,
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 10 * USDC,
                "address": ETH_ADDRESS,
                "idempotency_key": "second-withdrawal",
            },
        )
        assert again["withdrawal"]["status"] == "approved" and again["code_sent"] is False
        listed = await call_ok(client, "list-withdrawals", {})
    assert [x["status"] for x in listed["withdrawals"]] == ["approved", "confirmed"]


async def test_a_retried_request_is_one_withdrawal_and_cancel_returns_the_money_once(
    runtime: Runtime,
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=50 * USDC)
    args = {
        "currency": "USDC",
        "amount": 20 * USDC,
        "address": ETH_ADDRESS,
        "idempotency_key": "same-key-twice",
    }
    async with client_for(runtime, key) as client:
        first = await call_ok(client, "request-withdrawal", args)
        second = await call_ok(client, "request-withdrawal", args)
        assert first["withdrawal"]["id"] == second["withdrawal"]["id"]
        assert await _wallet(db, agent_id) == 50 * USDC - 20 * USDC - TOKEN_FEE
        wid = first["withdrawal"]["id"]
        cancelled = await call_ok(client, "cancel-withdrawal", {"withdrawal_id": wid})
        assert cancelled["withdrawal"]["status"] == "cancelled"
        again = await client.call_tool("cancel-withdrawal", {"withdrawal_id": wid})
        assert error_code(again) == "VALIDATION_ERROR"
        assert body(again)["error"]["details"]["fields"][0]["field"] == "withdrawal_id"
        missing = await client.call_tool("cancel-withdrawal", {"withdrawal_id": "wd_nope"})
        assert error_code(missing) == "NOT_FOUND"
    assert await _wallet(db, agent_id) == 50 * USDC
    assert await _account(db, AccountKind.WITHDRAWING) == 0
    assert await _events(db, agent_id) == [
        ("withdrawal.requested", "awaiting_confirmation"),
        ("withdrawal.failed", "cancelled"),
    ]


async def test_rejection_and_failure_return_the_money_once(runtime: Runtime) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=100 * USDC)
    ids = []
    async with client_for(runtime, key) as client:
        for n in range(2):
            done = await call_ok(
                client,
                "request-withdrawal",
                {
                    "currency": "USDC",
                    "amount": 10 * USDC,
                    "address": ETH_ADDRESS,
                    "idempotency_key": f"reject-or-fail-{n}",
                },
            )
            ids.append(done["withdrawal"]["id"])
    async with db.uow() as uow:
        await svc.reject(uow, ids[0], operator="ops@example.com", note="sanctioned address")
        await uow.commit()
    async with db.uow() as uow:
        await uow.session.execute(
            update(Withdrawal).where(Withdrawal.public_id == ids[1]).values(status="sending")
        )
        await svc.fail(uow, ids[1], reason="node refused the transaction")
        await uow.commit()
    for wid in ids:
        async with db.uow() as uow:
            with pytest.raises(ValidationFailed):
                await svc.fail(uow, wid, reason="again")
    assert (await _withdrawal(db, ids[0])).status == "rejected"
    assert (await _withdrawal(db, ids[1])).status == "failed"
    assert await _wallet(db, agent_id) == 100 * USDC
    assert await _account(db, AccountKind.WITHDRAWING) == 0


@pytest.mark.parametrize(
    ("currency", "address", "says"),
    [
        ("USDC", ETH_ADDRESS.lower(), "EIP-55"),
        ("ETH", ETH_ADDRESS[:-1] + ("E" if ETH_ADDRESS[-1] != "E" else "e"), "checksum"),
        ("BTC", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "mainnet"),
        ("BTC", "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "testnet"),
        ("BTC", ETH_ADDRESS, "Ethereum"),
        ("USDT", BTC_REGTEST, "BTC address"),
        ("BTC", BTC_REGTEST[:-1] + "1", "bech32"),
    ],
)
async def test_invalid_addresses_are_refused_by_name_and_change_nothing(
    runtime: Runtime, currency: str, address: str, says: str
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=50 * USDC)
    async with client_for(runtime, key) as client:
        result = await client.call_tool(
            "request-withdrawal",
            {
                "currency": currency,
                "amount": 10**7,
                "address": address,
                "idempotency_key": "invalid-address",
            },
        )
    assert error_code(result) == "VALIDATION_ERROR"
    error = body(result)["error"]
    assert error["details"]["fields"][0]["field"] == "address" and says in error["message"]
    assert await _wallet(db, agent_id) == 50 * USDC
    async with db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Withdrawal)) == 0


async def test_below_the_minimum_and_beyond_the_balance_are_refused(runtime: Runtime) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=5 * USDC)
    async with client_for(runtime, key) as client:
        small = await client.call_tool(
            "request-withdrawal",
            {"currency": "USDC", "amount": USDC - 1, "address": ETH_ADDRESS, "quote_only": True},
        )
        assert error_code(small) == "VALIDATION_ERROR"
        assert "at least 1.00 USDC" in body(small)["error"]["message"]
        broke = await client.call_tool(
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 4 * USDC,
                "address": ETH_ADDRESS,
                "idempotency_key": "too-much-money",
            },
        )
        assert error_code(broke) == "INSUFFICIENT_FUNDS"
    assert await _wallet(db, agent_id) == 5 * USDC


async def test_a_stolen_key_cannot_confirm_nor_skip_the_cooling_off(
    runtime: Runtime, sink: SmtpSink, clock: FakeClock
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=50 * USDC)
    async with client_for(runtime, key) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        # No tool takes a code: the confirmation belongs to the owner's mailbox and dashboard.
        assert not any("confirm" in t and "address" in t for t in tools)
        done = await call_ok(
            client,
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 10 * USDC,
                "address": OTHER_ETH_ADDRESS,
                "idempotency_key": "thief-withdrawal",
            },
        )
    wid = done["withdrawal"]["id"]
    row = await _withdrawal(db, wid)
    # Guessing: five wrong tries and the code is dead, even for the right one afterwards.
    code = await _mail_code(runtime, sink, agent_id)
    for guess in range(5):
        with pytest.raises(ValidationFailed):
            await _confirm(
                runtime, agent_id, row.address_id, f"{(int(code) + 1 + guess) % 10**6:06d}"
            )
    with pytest.raises(ValidationFailed) as dead:
        await _confirm(runtime, agent_id, row.address_id, code)
    assert "tried too often" in dead.value.message
    # No fresh code before the dead one expires, and at most three addresses wait for codes.
    async with client_for(runtime, key) as client:
        again = await call_ok(
            client,
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": USDC,
                "address": OTHER_ETH_ADDRESS,
                "idempotency_key": "thief-again-same",
            },
        )
        assert again["code_sent"] is False
        results = []
        for n, address in enumerate((ETH_ADDRESS, THIRD_ETH_ADDRESS, FOURTH_ETH_ADDRESS)):
            results.append(
                await client.call_tool(
                    "request-withdrawal",
                    {
                        "currency": "USDC",
                        "amount": USDC,
                        "address": address,
                        "idempotency_key": f"thief-new-address-{n}",
                    },
                )
            )
    assert [r.is_error for r in results] == [False, False, True]
    assert error_code(results[2]) == "RATE_LIMITED"
    clock.advance(timedelta(days=30))
    assert await _release(db) == 0
    assert (await _withdrawal(db, wid)).status == "awaiting_confirmation"
    # The owner cancels them: the money is back.
    async with db.uow() as uow:
        for w in await svc.list_for(uow, svc.Owner(agent_id=agent_id), before=None, limit=9):
            await svc.cancel(uow, svc.Owner(agent_id=agent_id), w.public_id)
        await uow.commit()
    assert await _wallet(db, agent_id) == 50 * USDC


async def test_a_payout_moves_what_a_specialist_is_owed(runtime: Runtime) -> None:
    from events_support import specialist as make_specialist

    db = runtime.db
    specialist_id = await make_specialist(db)
    owner = svc.Owner(specialist_id=specialist_id)
    async with db.uow() as uow:
        payable = await credit_earnings(uow, 80 * USDC, specialist_id=specialist_id)
        await uow.commit()
    terms = svc.Terms.of(runtime.settings, runtime.billing, runtime.network_fees)
    async with db.uow() as uow:
        placed = await svc.request(
            uow,
            terms,
            owner,
            kind=svc.WithdrawalKind.PAYOUT,
            currency="USDC",
            amount=70 * USDC,
            address=ETH_ADDRESS,
        )
        await uow.commit()
    assert placed.withdrawal.kind == "payout" and placed.code_sent
    async with db.uow() as uow:
        left = await svc.payable_balance(uow, payable, lock=False)
    assert left == 10 * USDC - TOKEN_FEE
    async with db.uow() as uow:
        with pytest.raises(Exception, match="owed"):
            await svc.request(
                uow,
                terms,
                owner,
                kind=svc.WithdrawalKind.PAYOUT,
                currency="USDC",
                amount=9 * USDC,
                address=ETH_ADDRESS,
            )


CANCEL_IN_A_PROCESS = """
import asyncio, sys
from agent_server.kernel.clock import SystemClock
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.store import Database, make_engine
from agent_server.services import withdrawals as svc

async def main(url, agent_id, wid):
    db = Database(make_engine(url), SystemClock())
    try:
        async with db.uow() as uow:
            await svc.cancel(uow, svc.Owner(agent_id=agent_id), wid)
            await uow.commit()
        print("cancelled")
    except ValidationFailed:
        print("refused")
    finally:
        await db.dispose()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
"""


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_concurrent_cancels_in_two_processes_return_the_money_once(
    runtime: Runtime, database_url: str
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=50 * USDC)
    async with client_for(runtime, key) as client:
        done = await call_ok(
            client,
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 10 * USDC,
                "address": ETH_ADDRESS,
                "idempotency_key": "race-cancel",
            },
        )
    wid = done["withdrawal"]["id"]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CANCEL_IN_A_PROCESS,
            database_url,
            str(agent_id),
            wid,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outcomes = [(await p.communicate())[0].decode().strip() for p in procs]
    assert sorted(outcomes) == ["cancelled", "refused", "refused"]
    assert await _wallet(db, agent_id) == 50 * USDC
    assert await _account(db, AccountKind.WITHDRAWING) == 0
    async with db.uow() as uow:
        returns = await uow.session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "withdraw_return")
        )
    assert returns == 1


async def _rest(runtime: Runtime) -> httpx.AsyncClient:
    app = create_app(runtime)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_rest_quote_request_confirm_by_mailed_code_and_cancel(
    runtime: Runtime, sink: SmtpSink, clock: FakeClock
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=30 * USDC)
    auth = {"Authorization": f"Bearer {key}"}
    async with await _rest(runtime) as web:
        quoted = await web.post(
            "/api/agent/withdrawals/quote",
            json={"currency": "USDC", "amount": 10 * USDC},
            headers=auth,
        )
        assert quoted.status_code == 200, quoted.text
        q = quoted.json()
        assert q["fee"] == {"amount": TOKEN_FEE, "currency": "USDC", "text": "1.95 USDC"}
        assert q["total"] == {
            "amount": 10 * USDC + TOKEN_FEE,
            "currency": "USDC",
            "text": "11.95 USDC",
        }
        assert q["amount"]["text"] == "10.00 USDC" and q["currency"] == "USDC"
        assert (
            q["network_fee"]["currency"] == "USDC" and 0 < q["network_fee"]["amount"] <= TOKEN_FEE
        )
        assert q["minimum"]["currency"] == "USDC" and q["minimum"]["amount"] <= 10 * USDC
        placed = await web.post(
            "/api/agent/withdrawals",
            json={
                "currency": "USDC",
                "amount": 10 * USDC,
                "address": ETH_ADDRESS,
                "idempotency_key": "rest-withdrawal",
            },
            headers=auth,
        )
        assert placed.status_code == 201, placed.text
        wid = placed.json()["withdrawal"]["id"]
        assert placed.json()["code_sent"] is True
        assert placed.json()["withdrawal"]["amount"] == q["amount"]
        assert placed.json()["withdrawal"]["fee"] == q["fee"]
        listed = (await web.get("/api/agent/withdrawal-addresses", headers=auth)).json()
        assert [(a["address"], a["confirmed"]) for a in listed] == [(ETH_ADDRESS, False)]
        code = await _mail_code(runtime, sink, agent_id)
        wrong = await web.post(
            f"/api/agent/withdrawal-addresses/{listed[0]['id']}/confirm",
            json={"code": "000000" if code != "000000" else "111111"},
            headers=auth,
        )
        assert wrong.status_code == 422
        assert wrong.json()["error"]["details"]["fields"][0]["field"] == "code"
        right = await web.post(
            f"/api/agent/withdrawal-addresses/{listed[0]['id']}/confirm",
            json={"code": code},
            headers=auth,
        )
        assert right.status_code == 200 and right.json()["confirmed"] is True
        assert right.json()["usable_after"].startswith(
            (clock.now() + timedelta(hours=24)).date().isoformat()
        )
        one = await web.get(f"/api/agent/withdrawals/{wid}", headers=auth)
        assert one.json()["status"] == "awaiting_confirmation"
        assert one.json()["fee"]["text"] == "1.95 USDC" and one.json()["currency"] == "USDC"
        page = (await web.get("/api/agent/withdrawals", headers=auth)).json()
        assert [w["amount"]["text"] for w in page["withdrawals"]] == ["10.00 USDC"]
        cancelled = await web.post(f"/api/agent/withdrawals/{wid}/cancel", headers=auth)
        assert cancelled.json()["status"] == "cancelled"
        again = await web.post(f"/api/agent/withdrawals/{wid}/cancel", headers=auth)
        assert again.status_code == 422
        _, other_key = await make_agent(db, runtime.settings)
        foreign = await web.get(
            f"/api/agent/withdrawals/{wid}", headers={"Authorization": f"Bearer {other_key}"}
        )
        assert foreign.status_code == 404
    assert await _wallet(db, agent_id) == 30 * USDC


async def test_closing_an_account_never_strands_its_balance(
    runtime: Runtime, sink: SmtpSink
) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=30 * USDC)
    auth = {"Authorization": f"Bearer {key}"}
    async with await _rest(runtime) as web:
        refused = await web.delete("/api/agent/me", headers=auth)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["details"]["fields"][0]["field"] == "remaining"
        assert "30.00 USDC" in error["message"] and "forfeit" in error["message"]
        # A withdrawal in flight refuses it even with forfeit: its money could come back.
        placed = await web.post(
            "/api/agent/withdrawals",
            json={
                "currency": "USDC",
                "amount": 10 * USDC,
                "address": ETH_ADDRESS,
                "idempotency_key": "before-closing",
            },
            headers=auth,
        )
        assert placed.status_code == 201
        in_flight = await web.delete("/api/agent/me?remaining=forfeit", headers=auth)
        assert in_flight.status_code == 422 and "not final" in in_flight.json()["error"]["message"]
        wid = placed.json()["withdrawal"]["id"]
        await web.post(f"/api/agent/withdrawals/{wid}/cancel", headers=auth)
        assert (await web.get("/api/agent/me", headers=auth)).status_code == 200
        await MailSender(db, runtime.settings).run_once()  # the new address's code
        # Giving the balance up needs the owner's mailed code, not only the key.
        asked = await web.delete("/api/agent/me?remaining=forfeit", headers=auth)
        assert asked.status_code == 202, asked.text
        code = await _mail_code(runtime, sink, agent_id)
        closed = await web.delete(f"/api/agent/me?remaining=forfeit&code={code}", headers=auth)
        assert closed.status_code == 200, closed.text
        assert (await web.get("/api/agent/me", headers=auth)).status_code == 401
    assert await _wallet(db, agent_id) == 0
    assert await _account(db, AccountKind.FORFEITED) == 30 * USDC
    async with db.uow() as uow:
        memo = await uow.session.scalar(
            select(LedgerTransaction.memo)
            .where(LedgerTransaction.agent_id == agent_id, LedgerTransaction.kind == "adjustment")
            .order_by(LedgerTransaction.id.desc())
            .limit(1)
        )
    assert memo is not None and "owner's choice" in memo


async def test_closing_an_empty_account_needs_no_choice(runtime: Runtime) -> None:
    _, key = await make_agent(runtime.db, runtime.settings)
    async with await _rest(runtime) as web:
        closed = await web.delete("/api/agent/me", headers={"Authorization": f"Bearer {key}"})
    assert closed.status_code == 200, closed.text


async def test_the_schedule_pays_out_balances_above_the_minimum_to_a_confirmed_address(
    runtime: Runtime, clock: FakeClock
) -> None:
    from events_support import specialist as make_specialist

    from agent_server.services.withdrawal_jobs import run_once
    from billing.ledger import open_account
    from wallets.withdrawal_models import WithdrawalAddress

    db = runtime.db
    rich, poor, unconfirmed = [await make_specialist(db, f"S{n}") for n in range(3)]
    async with db.uow() as uow:
        for who, owed in ((rich, 80 * USDC), (poor, 20 * USDC), (unconfirmed, 90 * USDC)):
            await credit_earnings(uow, owed, specialist_id=who, reference=f"test:earned:{who}")
            now = clock.now()
            confirmed = who != unconfirmed
            uow.session.add(
                WithdrawalAddress(
                    owner=f"specialist:{who}",
                    specialist_id=who,
                    currency="USDC",
                    network="evm",
                    address=ETH_ADDRESS,
                    label="",
                    code_tries=0,
                    confirmed_at=now if confirmed else None,
                    usable_after=now if confirmed else None,
                    created_at=now,
                )
            )
        await uow.commit()
    # The minimum is 50 USD: only the confirmed specialist owed 80 is paid, all of it less the fee.
    assert await run_once(runtime, payouts=True) == (0, 1)
    assert await run_once(runtime, payouts=True) == (0, 0)  # one open payout at a time
    async with db.uow() as uow:
        rows = await svc.list_for(uow, svc.Owner(specialist_id=rich), before=None, limit=5)
        shown = [(w.kind, w.status, w.amount, w.fee) for w in rows]
        payable = await open_account(uow, AccountKind.PAYABLE, "USDC", specialist_id=rich)
        left = await svc.payable_balance(uow, payable, lock=False)
    assert shown == [("payout", "approved", 80 * USDC - TOKEN_FEE, TOKEN_FEE)]
    assert left == 0


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_no_log_line_or_error_carries_the_code_or_the_key(
    runtime: Runtime,
    sink: SmtpSink,
    fmt: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import re

    from agent_server.kernel.logs import configure_logging

    configure_logging("DEBUG", fmt)
    caplog.set_level(logging.DEBUG)
    # The test's SMTP server (aiosmtpd) logs what it receives at DEBUG: the mailbox, not us.
    caplog.set_level(logging.INFO, logger="mail.log")
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=30 * USDC)
    auth = {"Authorization": f"Bearer {key}"}
    bodies: list[str] = []
    async with await _rest(runtime) as web:
        placed = await web.post(
            "/api/agent/withdrawals",
            json={
                "currency": "USDC",
                "amount": 10 * USDC,
                "address": ETH_ADDRESS,
                "idempotency_key": "logged-withdrawal",
            },
            headers=auth,
        )
        bodies.append(placed.text)
        code = await _mail_code(runtime, sink, agent_id)
        address_id = (await web.get("/api/agent/withdrawal-addresses", headers=auth)).json()[0][
            "id"
        ]
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for attempt in (wrong, code, code):
            answer = await web.post(
                f"/api/agent/withdrawal-addresses/{address_id}/confirm",
                json={"code": attempt},
                headers=auth,
            )
            bodies.append(answer.text)
    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert "mail.sent" in logged and "withdrawal-addresses" in logged
    # Six digits that are not a timestamp's fraction of a second.
    for secret in (code, wrong):
        found = [ln for ln in logged.splitlines() if re.search(rf"(?<![\d.]){secret}(?!\d)", ln)]
        assert not found, found
        assert not any(secret in body for body in bodies), "a code reached an answer"
    assert key[12:] not in logged and not any(key[12:] in body for body in bodies)


async def test_the_quote_reads_the_gas_price_from_an_evm_node_and_falls_back_without_one() -> None:
    from wallets.chains.anvil import AnvilNode
    from wallets.network_fees import GAS_LIMIT, NodeFees, estimate_network_fee
    from wallets.rates import StaticRateSource

    rates = StaticRateSource()
    fallback = FixedFees(gas_price_wei=7 * 10**9, btc_sat_per_vbyte=3)
    node = AnvilNode.start()
    try:
        gas_price = int(await node.web3().eth.gas_price)
        fees = NodeFees(node.rpc_url, None, fallback)
        eth = await estimate_network_fee(fees, "ETH", rates)
        usdc = await estimate_network_fee(fees, "USDC", rates)
    finally:
        node.stop()
    assert gas_price > 0 and eth == -(-gas_price * GAS_LIMIT["ETH"] // 10**9)
    token_gwei = -(-gas_price * GAS_LIMIT["USDC"] // 10**9)
    assert usdc == -(-token_gwei * 3_000_000_000 // 10**9)  # USD micros = USDC base units
    # The node is gone: the fallback levels answer, and BTC has no node configured.
    gone = NodeFees(node.rpc_url, None, fallback)
    assert await estimate_network_fee(gone, "ETH", rates) == 7 * 21_000
    assert await estimate_network_fee(gone, "BTC", rates) == 3 * 141


async def test_a_provider_agent_is_paid_its_earnings_over_mcp(runtime: Runtime) -> None:
    db = runtime.db
    agent_id, key = await make_agent(db, runtime.settings, funds=5 * USDC)
    async with db.uow() as uow:
        payable = await credit_earnings(
            uow, 60 * USDC, agent_id=agent_id, reference="test:agent-earned"
        )
        await uow.commit()
    async with client_for(runtime, key) as client:
        paid = await call_ok(
            client,
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 50 * USDC,
                "address": ETH_ADDRESS,
                "source": "earnings",
                "idempotency_key": "agent-earnings-1",
            },
        )
        over = await client.call_tool(
            "request-withdrawal",
            {
                "currency": "USDC",
                "amount": 9 * USDC,
                "address": ETH_ADDRESS,
                "source": "earnings",
                "idempotency_key": "agent-earnings-2",
            },
        )
        assert error_code(over) == "INSUFFICIENT_FUNDS"
        wid = paid["withdrawal"]["id"]
        await call_ok(client, "cancel-withdrawal", {"withdrawal_id": wid})
    assert paid["withdrawal"]["kind"] == "payout"
    assert await _wallet(db, agent_id) == 5 * USDC  # the wallet is not touched
    async with db.uow() as uow:
        assert await svc.payable_balance(uow, payable, lock=False) == 60 * USDC
