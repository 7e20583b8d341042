"""The withdrawal sender on a real anvil: ETH, USDT and USDC from approved to confirmed, a
transaction that fails on chain, a reorg that drops a sent transaction, a stuck transaction
replaced under the same nonce. Balances, ledger and events to the base unit."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from chain_support import balance, register_tokens
from sqlalchemy import func, select
from test_wallet_processes import cli, env, start
from web3 import AsyncWeb3
from withdrawal_support import (
    PASSWORD,
    approved_withdrawal,
    attempts,
    events,
    evm_sender,
    external_address,
    fund_hot_wallet,
    funded_agent,
    new_hot_wallet,
    system_balance,
    token_balance,
    withdrawal,
)

from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.mail import OutboxMail
from agent_server.runtime import Runtime
from agent_server.services import withdrawals as svc
from billing.models import AccountKind, LedgerTransaction
from wallets.chains import AnvilNode
from wallets.chains.anvil import mine, rpc
from wallets.evm import evm_network
from wallets.network_fees import FixedFees
from wallets.sending.sender import PAUSE_VARIABLE, WithdrawalSender
from wallets.withdrawal_models import WithdrawalKind

GWEI = 10**9


async def drive(sender: WithdrawalSender, w3: AsyncWeb3[Any], ids: list[str], db: Database) -> None:
    """Sender passes, a block mined after each, until every withdrawal has ended (bounded)."""
    for _ in range(20):
        await sender.run_once()
        ended = [(await withdrawal(db, i)).status in ("confirmed", "failed") for i in ids]
        if all(ended):
            return
        await mine(w3)
    raise AssertionError([(await withdrawal(db, i)).status for i in ids])


@pytest.fixture
async def hot(
    tmp_path: Path, anvil: AsyncWeb3[Any], test_tokens: dict[str, str], db: Database
) -> tuple[Path, str]:
    keystore, address = new_hot_wallet(tmp_path)
    await fund_hot_wallet(anvil, address, test_tokens)
    await register_tokens(db, evm_network(int(await anvil.eth.chain_id)), test_tokens)
    return keystore, address


async def test_eth_usdt_usdc_go_from_approved_to_confirmed_once(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str], hot: tuple[Path, str]
) -> None:
    keystore, hot_address = hot
    agent = await funded_agent(db, {"ETH": 50_000_000, "USDT": 90_000_000, "USDC": 90_000_000})
    to = {c: external_address() for c in ("ETH", "USDT", "USDC")}
    amounts = {"ETH": 12_345_678, "USDT": 25_000_001, "USDC": 7_654_321}
    fees = {"ETH": 100_000, "USDT": 1_500_000, "USDC": 1_250_000}
    ids = {c: await approved_withdrawal(db, agent, c, amounts[c], fees[c], to[c]) for c in amounts}
    nonce_before = await anvil.eth.get_transaction_count(hot_address)  # type: ignore[arg-type]
    sender = await evm_sender(db, anvil, keystore)

    await drive(sender, anvil, list(ids.values()), db)

    assert await anvil.eth.get_balance(to["ETH"]) == amounts["ETH"] * GWEI  # type: ignore[arg-type]
    for c in ("USDT", "USDC"):
        assert await token_balance(anvil, test_tokens[c], to[c]) == amounts[c]
    assert await anvil.eth.get_transaction_count(hot_address) == nonce_before + 3  # type: ignore[arg-type]
    for c, public_id in ids.items():
        w = await withdrawal(db, public_id)
        assert w.status == "confirmed" and w.confirmations >= 3 and w.settle_txn_id
        assert [a.status for a in await attempts(db, public_id)] == ["mined"]
        assert (
            await balance(db, agent, c)
            == {"ETH": 50_000_000, "USDT": 90_000_000}.get(c, 90_000_000) - amounts[c] - fees[c]
        )
        assert await system_balance(db, AccountKind.WITHDRAWING, c) == 0
        assert await system_balance(db, AccountKind.WITHDRAWN, c) == amounts[c]
        assert await system_balance(db, AccountKind.NETWORK_FEES, c) == fees[c]
    seen = [(t, p["id"]) for t, p in await events(db, agent) if t.startswith("withdrawal.")]
    for public_id in ids.values():
        assert [t for t, i in seen if i == public_id] == [
            "withdrawal.sent",
            "withdrawal.confirmed",
        ]
    # The webhook shows what arrived and the fee as Money, ETH in gwei read as ETH.
    sent = {p["currency"]: p for t, p in await events(db, agent) if t == "withdrawal.sent"}
    texts = {"ETH": ("0.012345678 ETH", "0.0001 ETH"), "USDT": ("25.000001 USDT", "1.50 USDT")}
    texts["USDC"] = ("7.654321 USDC", "1.25 USDC")
    for c, (amount_text, fee_text) in texts.items():
        assert sent[c]["amount"] == {"amount": amounts[c], "currency": c, "text": amount_text}
        assert sent[c]["fee"] == {"amount": fees[c], "currency": c, "text": fee_text}
    # Nothing more happens however often the sender runs again.
    await sender.run_once()
    assert await anvil.eth.get_transaction_count(hot_address) == nonce_before + 3  # type: ignore[arg-type]


async def test_a_transaction_failing_on_chain_returns_the_money_once(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str], hot: tuple[Path, str]
) -> None:
    keystore, _ = hot
    agent = await funded_agent(db, {"USDC": 5_000_000_000})
    # More than the hot wallet holds: the token transfer reverts on chain.
    public_id = await approved_withdrawal(
        db, agent, "USDC", 2_000_000_000, 1_000_000, external_address()
    )
    assert await balance(db, agent, "USDC") == 5_000_000_000 - 2_001_000_000
    sender = await evm_sender(db, anvil, keystore)

    await drive(sender, anvil, [public_id], db)
    for _ in range(3):
        await sender.run_once()

    w = await withdrawal(db, public_id)
    assert w.status == "failed" and "failed on chain" in w.reason and w.return_txn_id
    assert await balance(db, agent, "USDC") == 5_000_000_000
    assert await system_balance(db, AccountKind.WITHDRAWING, "USDC") == 0
    async with db.uow() as uow:
        returns = await uow.session.scalar(
            select(func.count()).where(LedgerTransaction.kind == "withdraw_return")
        )
    assert returns == 1
    kinds = [t for t, p in await events(db, agent) if p.get("id") == public_id]
    assert kinds == ["withdrawal.sent", "withdrawal.failed"]


async def test_a_reorg_that_drops_the_transaction_is_followed_and_never_sends_twice(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str], hot: tuple[Path, str]
) -> None:
    keystore, hot_address = hot
    agent = await funded_agent(db, {"ETH": 50_000_000})
    to = external_address()
    public_id = await approved_withdrawal(db, agent, "ETH", 3_000_000, 50_000, to)
    sender = await evm_sender(db, anvil, keystore, confirmations=3)
    snapshot = await rpc(anvil, "evm_snapshot")
    await sender.run_once()  # signed, recorded, broadcast, mined at once (automine)
    await sender.run_once()
    mined = await withdrawal(db, public_id)
    assert mined.status == "sent" and mined.block_number is not None
    nonce = mined.nonce

    await rpc(anvil, "evm_revert", snapshot)  # the block with the transaction is gone
    assert await anvil.eth.get_balance(to) == 0  # type: ignore[arg-type]
    await drive(sender, anvil, [public_id], db)

    w = await withdrawal(db, public_id)
    assert w.status == "confirmed" and w.nonce == nonce
    assert await anvil.eth.get_balance(to) == 3_000_000 * GWEI  # type: ignore[arg-type]
    assert await anvil.eth.get_transaction_count(hot_address) == nonce + 1  # type: ignore[arg-type,operator]
    assert len(await attempts(db, public_id)) == 1  # the recorded raw transaction, again
    assert await balance(db, agent, "ETH") == 50_000_000 - 3_050_000


async def test_a_stuck_transaction_is_replaced_under_the_same_nonce(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str], hot: tuple[Path, str]
) -> None:
    keystore, hot_address = hot
    agent = await funded_agent(db, {"USDT": 50_000_000})
    to = external_address()
    public_id = await approved_withdrawal(db, agent, "USDT", 4_000_000, 100_000, to)
    sender = await evm_sender(db, anvil, keystore, replace_after=0)
    await rpc(anvil, "evm_setAutomine", False)
    try:
        await sender.run_once()  # signed and broadcast; no block comes
        await sender.run_once()  # still pending: outbid under the same nonce
    finally:
        await rpc(anvil, "evm_setAutomine", True)
    tries = await attempts(db, public_id)
    assert len(tries) >= 2 and len({a.nonce for a in tries}) == 1
    assert int(tries[1].max_fee_per_gas or 0) > int(tries[0].max_fee_per_gas or 0)
    await drive(sender, anvil, [public_id], db)

    w = await withdrawal(db, public_id)
    assert w.status == "confirmed" and w.nonce == tries[0].nonce
    assert await token_balance(anvil, test_tokens["USDT"], to) == 4_000_000
    final = await attempts(db, public_id)
    assert sorted(a.status for a in final).count("mined") == 1
    assert w.tx_hash == next(a.tx_hash for a in final if a.status == "mined")
    assert await anvil.eth.get_transaction_count(hot_address) == int(w.nonce or 0) + 1  # type: ignore[arg-type]


async def _until_status(
    db: Database, w3: AsyncWeb3[Any], public_id: str, status: str, timeout: float = 60
) -> None:
    """Wait for ``status``, mining a block now and then for the confirmations."""
    async with asyncio.timeout(timeout):
        while (await withdrawal(db, public_id)).status != status:
            await asyncio.sleep(0.3)
            await mine(w3)


@pytest.mark.parametrize("point", ["recorded", "broadcast"])
async def test_a_sender_killed_between_its_steps_never_sends_twice_nor_loses_a_withdrawal(
    point: str,
    db: Database,
    database_url: str,
    tmp_path: Path,
    anvil_node: AnvilNode,
    anvil: AsyncWeb3[Any],
    test_tokens: dict[str, str],
    hot: tuple[Path, str],
) -> None:
    """kill -9 right after the signed transaction is recorded (not yet broadcast), or right
    after it is broadcast (not yet recorded as such): the next sender finds out what reached
    the chain, and the address is paid exactly once."""
    keystore, hot_address = hot
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD)
    agent = await funded_agent(db, {"USDC": 80_000_000})
    to = external_address()
    public_id = await approved_withdrawal(db, agent, "USDC", 6_500_000, 200_000, to)
    nonce_before = await anvil.eth.get_transaction_count(hot_address)  # type: ignore[arg-type]
    environ = env(
        database_url,
        AGENT_SERVER_EVM_RPC_URL=anvil_node.rpc_url,
        AGENT_SERVER_SENDER_KEYSTORE=str(keystore),
        AGENT_SERVER_SENDER_KEYSTORE_PASSWORD_FILE=str(password_file),
        AGENT_SERVER_SENDER_INTERVAL="0.2",
    )
    paused = start(cli("send-withdrawals"), {**environ, PAUSE_VARIABLE: point}, "sender")
    try:
        await asyncio.to_thread(paused.wait_for, re.compile(f"sender paused at {point}"), 60)
        os.kill(paused.pid, signal.SIGKILL)
        await asyncio.to_thread(paused.process.wait, 10)
    finally:
        paused.stop()
    w = await withdrawal(db, public_id)
    assert w.status == "sending" and w.raw_tx and w.tx_hash and w.nonce == nonce_before
    [attempt] = await attempts(db, public_id)
    assert attempt.status == "signed"  # its broadcast, if any, was never recorded
    on_chain = await token_balance(anvil, test_tokens["USDC"], to)
    assert on_chain == (6_500_000 if point == "broadcast" else 0)

    resumed = start(cli("send-withdrawals"), environ, "sender")
    try:
        await _until_status(db, anvil, public_id, "confirmed")
    except TimeoutError:
        raise AssertionError(resumed.output()) from None
    finally:
        resumed.stop()
    assert await token_balance(anvil, test_tokens["USDC"], to) == 6_500_000
    assert await anvil.eth.get_transaction_count(hot_address) == nonce_before + 1  # type: ignore[arg-type]
    assert len(await attempts(db, public_id)) == 1
    assert await balance(db, agent, "USDC") == 80_000_000 - 6_700_000
    assert await system_balance(db, AccountKind.WITHDRAWING, "USDC") == 0
    assert await system_balance(db, AccountKind.WITHDRAWN, "USDC") == 6_500_000


async def test_the_whole_path_request_code_cooling_off_approval_sent_confirmed(
    db: Database,
    anvil: AsyncWeb3[Any],
    test_tokens: dict[str, str],
    hot: tuple[Path, str],
    clock: FakeClock,
) -> None:
    """Through the withdrawal services: requested to a new address (its code mailed), the
    code confirmed, the cooling-off time waited, an operator's approval for an amount above
    the limit, then the sender: exactly the amount arrives, amount and fee leave the wallet."""
    keystore, _ = hot
    settings = Settings(
        withdrawal_cooling_off=timedelta(hours=1), withdrawal_approval_usd_micros=50_000_000
    )
    runtime = Runtime(settings, db)
    terms = svc.Terms.of(settings, runtime.billing, FixedFees(2_000_000_000, 5))
    agent = await funded_agent(db, {"USDC": 500_000_000})
    owner = svc.Owner(agent_id=agent)
    to = external_address()
    async with db.uow() as uow:
        placed = await svc.request(
            uow,
            terms,
            owner,
            kind=WithdrawalKind.WITHDRAWAL,
            currency="USDC",
            amount=120_000_000,
            address=to,
            request_key="k1",
        )
        email = await svc.owner_email(uow, owner)
        await uow.commit()
    w = placed.withdrawal
    assert placed.code_sent and w.status == "awaiting_confirmation" and w.needs_approval
    async with db.uow() as uow:
        body = await uow.session.scalar(
            select(OutboxMail.body)
            .where(OutboxMail.to_addr == email)
            .order_by(OutboxMail.id.desc())
        )
    code = re.search(r"code is (\S+) \(valid", body or "")
    assert code
    async with db.uow() as uow:
        confirmed = await svc.confirm_address(uow, settings, owner, w.address_id, code.group(1))
        await uow.commit()
    assert confirmed.error is None
    sender = await evm_sender(db, anvil, keystore)
    await sender.run_once()  # nothing to send yet: cooling off
    assert (await withdrawal(db, w.public_id)).status == "awaiting_confirmation"
    clock.advance(timedelta(hours=1))
    async with db.uow() as uow:
        await svc.release_due(uow)
        await uow.commit()
    assert (await withdrawal(db, w.public_id)).status == "awaiting_approval"
    await sender.run_once()
    assert (await withdrawal(db, w.public_id)).status == "awaiting_approval"
    async with db.uow() as uow:
        await svc.approve(uow, w.public_id, operator="ops@example.com", note="known customer")
        await uow.commit()

    await drive(sender, anvil, [w.public_id], db)

    done = await withdrawal(db, w.public_id)
    assert done.status == "confirmed" and done.decided_by == "ops@example.com"
    assert await token_balance(anvil, test_tokens["USDC"], to) == 120_000_000
    assert await balance(db, agent, "USDC") == 500_000_000 - 120_000_000 - done.fee
    assert await system_balance(db, AccountKind.NETWORK_FEES, "USDC") == done.fee
    kinds = [t for t, p in await events(db, agent) if p.get("id") == w.public_id]
    assert kinds == ["withdrawal.requested", "withdrawal.sent", "withdrawal.confirmed"]


async def test_a_reorg_after_confirmation_is_followed_and_the_payment_sent_again_once(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str], hot: tuple[Path, str]
) -> None:
    keystore, hot_address = hot
    agent = await funded_agent(db, {"ETH": 50_000_000})
    to = external_address()
    public_id = await approved_withdrawal(db, agent, "ETH", 4_000_000, 50_000, to)
    sender = await evm_sender(db, anvil, keystore, confirmations=2)
    snapshot = await rpc(anvil, "evm_snapshot")
    await drive(sender, anvil, [public_id], db)
    confirmed = await withdrawal(db, public_id)
    assert confirmed.status == "confirmed"

    await rpc(anvil, "evm_revert", snapshot)  # deeper than its confirmations: dropped
    assert await anvil.eth.get_balance(to) == 0  # type: ignore[arg-type]
    result = await sender.run_once()
    assert result.rebroadcast == 1
    for _ in range(3):
        await mine(anvil)
        await sender.run_once()

    w = await withdrawal(db, public_id)
    assert w.status == "confirmed" and w.tx_hash == confirmed.tx_hash and w.confirmations >= 3
    assert await anvil.eth.get_balance(to) == 4_000_000 * GWEI  # type: ignore[arg-type]
    assert await anvil.eth.get_transaction_count(hot_address) == int(w.nonce or 0) + 1  # type: ignore[arg-type]
    assert await balance(db, agent, "ETH") == 50_000_000 - 4_050_000
    assert await system_balance(db, AccountKind.WITHDRAWN, "ETH") == 4_000_000  # settled once
