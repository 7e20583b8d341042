"""The EVM deposit watcher against a real anvil node with the Vyper test tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chain_support import (
    address_of,
    balance,
    deposits,
    evm_watcher,
    make_agent,
    rates,
    status_of,
)
from sqlalchemy import select, update
from web3 import AsyncWeb3

from agent_server.accounts.status import status_history
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.services.wallets import get_wallet
from billing.models import LedgerTransaction
from wallets.chains import AnvilNode
from wallets.chains.anvil import mine, rpc, send_value
from wallets.chains.tokens import transfer, transfer_many
from wallets.devfund import fund_agent
from wallets.models import ChainCheckpoint, DepositEvent, ScannedBlock

USDC = 1_000_000  # base units per USDC
GWEI = 10**9  # ETH's base unit is the gwei; the chain counts in wei (10^9 per gwei)


async def test_one_transaction_with_two_transfer_logs_credits_both_agents_after_confirmations(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str]
) -> None:
    watcher = await evm_watcher(db, anvil, test_tokens, confirmations=3)
    big, small = await make_agent(db, "big"), await make_agent(db, "small")
    to_big, to_small = await address_of(db, big, "USDC"), await address_of(db, small, "USDC")

    tx = await transfer_many(
        anvil, test_tokens["USDC"], [(to_big, 25 * USDC), (to_small, 5 * USDC)]
    )
    first = await watcher.poll_once()
    assert first.seen == 2 and first.credited == 0  # one confirmation of three
    assert await balance(db, big, "USDC") == 0
    await mine(anvil, 1)
    assert (await watcher.poll_once()).credited == 0  # two of three
    await mine(anvil, 1)
    assert (await watcher.poll_once()).credited == 2

    assert await balance(db, big, "USDC") == 25 * USDC
    assert await balance(db, small, "USDC") == 5 * USDC
    assert await status_of(db, big) == "active"  # 25 USD >= 20 USD activates
    assert await status_of(db, small) == "pending_deposit"  # 5 USD is credited, no more
    rows = await deposits(db)
    assert {r.tx_hash for r in rows} == {tx}
    assert sorted(r.position for r in rows) == [0, 1]  # two logs of one transaction
    assert {r.usd_micros for r in rows} == {25_000_000, 5_000_000}
    async with db.uow() as uow:
        events = [
            (e.kind, e.payload["amount"]["amount"], e.payload["amount"]["text"])
            for e in (await uow.session.execute(select(DepositEvent))).scalars()
        ]
    assert sorted(events) == [
        ("deposit.confirmed", 5_000_000, "5.00 USDC"),
        ("deposit.confirmed", 25_000_000, "25.00 USDC"),
    ]


async def test_native_eth_deposit_is_credited_and_other_tokens_or_addresses_are_not(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str]
) -> None:
    watcher = await evm_watcher(db, anvil, test_tokens, confirmations=2)
    agent = await make_agent(db)
    ours = await address_of(db, agent, "ETH")
    await send_value(anvil, ours, 10**16)  # 0.01 ETH = 30 USD, in wei
    # Value to an address that is not ours is ignored.
    await send_value(anvil, "0x000000000000000000000000000000000000dEaD", 10**16)
    await mine(anvil, 1)
    result = await watcher.poll_once()
    assert result.credited == 1
    assert await balance(db, agent, "ETH") == 10**7  # 0.01 ETH in gwei
    assert await status_of(db, agent) == "active"
    [row] = await deposits(db)
    assert (row.currency, row.position, row.usd_micros) == ("ETH", -1, 30_000_000)


async def test_an_eth_deposit_above_the_int64_wei_limit_is_credited_in_gwei_keeping_its_dust(
    db: Database, anvil: AsyncWeb3[Any]
) -> None:
    watcher = await evm_watcher(db, anvil, {}, confirmations=1)
    agent = await make_agent(db)
    ours = await address_of(db, agent, "ETH")
    sent = 12_345_678_901_234_567_891  # wei: 12.345678901234567891 ETH
    assert sent > 2**63 - 1  # more wei than a BIGINT holds
    tx = await send_value(anvil, ours, sent)
    # 0.000999999999999999 ETH: a wei short of the minimum once rounded down to gwei.
    short = await send_value(anvil, ours, 10**15 - 1)

    result = await watcher.poll_once()
    assert (result.seen, result.credited) == (2, 2)  # both settled: one credited, one refused
    assert await balance(db, agent, "ETH") == 12_345_678_901
    assert await status_of(db, agent) == "active"
    by_tx = {row.tx_hash: row for row in await deposits(db)}
    credited, refused = by_tx[tx], by_tx[short]
    assert (credited.status, credited.amount, credited.dust) == ("credited", sent, 234_567_891)
    assert credited.usd_micros == 37_037_036_703  # 12.345678901 ETH at 3,000 USD
    assert (refused.status, refused.amount, refused.dust) == (
        "below_minimum",
        10**15 - 1,
        999_999_999,
    )
    async with db.uow() as uow:
        wallet = await get_wallet(uow, agent, rates=rates())
        [ledger] = (
            await uow.session.execute(
                select(LedgerTransaction).where(LedgerTransaction.kind == "deposit")
            )
        ).scalars()
        [payload] = (await uow.session.execute(select(DepositEvent.payload))).scalars()
        assert (ledger.currency, ledger.amount) == ("ETH", 12_345_678_901)
    [eth] = wallet.wallets
    assert (eth.currency, eth.balance.amount, eth.balance.text) == (
        "ETH",
        12_345_678_901,
        "12.345678901 ETH",
    )
    assert eth.balance_usd.text == "37037.036703 USD"
    assert payload["amount"] == {
        "amount": 12_345_678_901,
        "currency": "ETH",
        "text": "12.345678901 ETH",
    }
    assert payload["amount_on_chain"] == str(sent)


async def test_dev_fund_sends_wei_on_chain_and_the_watcher_credits_gwei(
    db: Database, anvil: AsyncWeb3[Any], anvil_node: AnvilNode, tmp_path: Path
) -> None:
    watcher = await evm_watcher(db, anvil, {}, confirmations=2)
    agent = await make_agent(db)
    settings = Settings(evm_rpc_url=anvil_node.rpc_url, confirmations=2)
    funding = await fund_agent(settings, db, agent, "ETH", "25", chain_dir=tmp_path)
    assert funding.amount == 25 * 10**18  # wei, as sent
    sent = await anvil.eth.get_transaction(funding.tx_hash)  # type: ignore[arg-type]
    assert int(sent["value"]) == 25 * 10**18
    assert (await watcher.poll_once()).credited == 1
    assert await balance(db, agent, "ETH") == 25 * GWEI
    [row] = await deposits(db)
    assert (row.amount, row.dust, row.usd_micros) == (25 * 10**18, 0, 75_000_000_000)


async def test_replayed_blocks_and_a_second_watcher_credit_each_deposit_once(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str]
) -> None:
    start = int(await anvil.eth.block_number) + 1
    watcher = await evm_watcher(db, anvil, test_tokens, confirmations=1)
    agent = await make_agent(db)
    to = await address_of(db, agent, "USDT")
    await transfer(anvil, test_tokens["USDT"], to, 7 * USDC)
    await transfer(anvil, test_tokens["USDT"], to, 8 * USDC)
    assert (await watcher.poll_once()).credited == 2
    assert await balance(db, agent, "USDT") == 15 * USDC

    # Rewind the checkpoint as if the scan had never happened: the same logs come again.
    async with db.uow() as uow:
        await uow.session.execute(
            update(ChainCheckpoint).values(
                block_number=start - 1,
                block_hash=(await anvil.eth.get_block(start - 1))["hash"].to_0x_hex(),
            )
        )
        await uow.session.execute(ScannedBlock.__table__.delete())
        await uow.commit()
    replay = await watcher.poll_once()
    other = await evm_watcher(db, anvil, {}, confirmations=1)
    again = await other.poll_once()
    assert (replay.seen, replay.credited, again.seen, again.credited) == (0, 0, 0, 0)
    assert await balance(db, agent, "USDT") == 15 * USDC
    async with db.uow() as uow:
        credits = (
            (
                await uow.session.execute(
                    select(LedgerTransaction).where(LedgerTransaction.kind == "deposit")
                )
            )
            .scalars()
            .all()
        )
    assert len(credits) == 2


async def test_a_reorg_reverses_a_credited_deposit_with_a_new_ledger_transaction(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str]
) -> None:
    watcher = await evm_watcher(db, anvil, test_tokens, confirmations=2)
    agent = await make_agent(db)
    to = await address_of(db, agent, "USDC")
    await mine(anvil, 1)
    await watcher.poll_once()  # the watcher has seen the block the fork starts from
    snapshot = await rpc(anvil, "evm_snapshot")
    await transfer(anvil, test_tokens["USDC"], to, 40 * USDC)
    await mine(anvil, 1)
    assert (await watcher.poll_once()).credited == 1
    assert await balance(db, agent, "USDC") == 40 * USDC
    assert await status_of(db, agent) == "active"  # the deposit activated the account

    # The blocks holding the deposit are replaced by a longer chain without it.
    assert await rpc(anvil, "evm_revert", snapshot) is True
    await mine(anvil, 4)
    result = await watcher.poll_once()
    assert (result.reorgs, result.orphaned) == (1, 1)
    assert await balance(db, agent, "USDC") == 0
    # ...and the activation it paid for goes with it, on the record.
    assert await status_of(db, agent) == "pending_deposit"
    async with db.uow() as uow:
        last = (await status_history(uow, agent))[-1]
        change = (last.from_status, last.to_status, last.actor, last.reason)
    assert change[:3] == ("active", "pending_deposit", "deposits")
    assert "left the chain" in change[3]
    [row] = await deposits(db)
    assert row.status == "orphaned" and row.reversal_txn_id is not None
    async with db.uow() as uow:
        kinds = [
            t.kind
            for t in (
                await uow.session.execute(select(LedgerTransaction).order_by(LedgerTransaction.id))
            ).scalars()
        ]
        events = [e.kind for e in (await uow.session.execute(select(DepositEvent))).scalars()]
    assert kinds == ["deposit", "reversal"]  # the credit stays; a new transaction undoes it
    assert events == ["deposit.confirmed", "deposit.reversed"]
    # Polling again changes nothing.
    again = await watcher.poll_once()
    assert (again.reorgs, again.orphaned, again.credited) == (0, 0, 0)


async def test_a_reorged_deposit_leaves_an_agent_active_that_another_deposit_funds(
    db: Database, anvil: AsyncWeb3[Any], test_tokens: dict[str, str]
) -> None:
    watcher = await evm_watcher(db, anvil, test_tokens, confirmations=2)
    agent = await make_agent(db)
    to = await address_of(db, agent, "USDC")
    await transfer(anvil, test_tokens["USDC"], to, 30 * USDC)  # activates; stays on the chain
    await mine(anvil, 2)
    assert (await watcher.poll_once()).credited == 1
    assert await status_of(db, agent) == "active"
    snapshot = await rpc(anvil, "evm_snapshot")
    await transfer(anvil, test_tokens["USDC"], to, 25 * USDC)
    await mine(anvil, 2)
    assert (await watcher.poll_once()).credited == 1

    assert await rpc(anvil, "evm_revert", snapshot) is True
    await mine(anvil, 4)
    assert (await watcher.poll_once()).orphaned == 1
    assert await balance(db, agent, "USDC") == 30 * USDC
    assert await status_of(db, agent) == "active"
