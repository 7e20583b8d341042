"""The watcher and the development commands as separate processes: killed mid-scan, and the
whole `watch-deposits` (embedded chain) + `dev fund` path from deposit to activation."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from chain_support import (
    address_of,
    balance,
    deposits,
    evm_watcher,
    make_agent,
    register_tokens,
    status_of,
)
from sqlalchemy import func, select
from web3 import AsyncWeb3

from agent_server.kernel.store import Database
from billing.models import LedgerTransaction
from wallets.chains.anvil import mine
from wallets.chains.processes import NodeProcess
from wallets.chains.tokens import transfer
from wallets.evm import evm_network
from wallets.models import ChainCheckpoint

REPO = Path(__file__).resolve().parents[2]
USDC = 1_000_000


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from agent_server.cli import app; app()", *args]


def env(database_url: str, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    clean.update(
        AGENT_SERVER_DATABASE_URL=database_url,
        AGENT_SERVER_LOG_FORMAT="console",
        AGENT_SERVER_CONFIRMATIONS="3",
        **extra,
    )
    return clean


def start(argv: list[str], environ: dict[str, str], name: str) -> NodeProcess:
    previous = os.getcwd()
    saved = dict(os.environ)
    try:  # NodeProcess inherits the environment and working directory
        os.chdir(REPO)
        os.environ.clear()
        os.environ.update(environ)
        return NodeProcess(argv, name)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        os.chdir(previous)


async def checkpoint(db: Database, network: str) -> int | None:
    async with db.uow() as uow:
        row = await uow.session.get(ChainCheckpoint, network, populate_existing=True)
        return row.block_number if row else None


async def test_a_watcher_killed_mid_scan_resumes_without_gaps_or_double_credits(
    db: Database, database_url: str, anvil: AsyncWeb3[Any], test_tokens: dict[str, str]
) -> None:
    network = evm_network(int(await anvil.eth.chain_id))
    first = int(await anvil.eth.block_number) + 1
    agents = [await make_agent(db, f"k{i}") for i in range(3)]
    addresses = [await address_of(db, a, "USDC") for a in agents]
    await register_tokens(db, network, test_tokens)
    sent: dict[int, int] = dict.fromkeys(agents, 0)
    for round_ in range(12):  # deposits spread over ~250 blocks
        agent = agents[round_ % 3]
        amount = (round_ + 1) * USDC
        await transfer(anvil, test_tokens["USDC"], addresses[round_ % 3], amount)
        sent[agent] += amount
        await mine(anvil, 20)
    await mine(anvil, 3)
    head = int(await anvil.eth.block_number)

    watcher = start(
        cli("watch-deposits", "--batch-blocks", "2", "--from-block", str(first)),
        env(database_url, AGENT_SERVER_EVM_RPC_URL=anvil.provider.endpoint_uri),  # type: ignore[attr-defined]
        "watch-deposits",
    )
    try:
        while (await checkpoint(db, network)) is None:
            assert watcher.process.poll() is None, watcher.output()
            await asyncio.sleep(0.01)
    finally:
        watcher.process.kill()  # SIGKILL: no clean shutdown
        watcher.stop()
    killed_at = await checkpoint(db, network)
    assert killed_at is not None and first <= killed_at < head  # it was mid-scan

    restarted = await evm_watcher(db, anvil, {}, confirmations=3)
    result = await restarted.poll_once()
    assert result.scanned_to == head
    for agent in agents:
        assert await balance(db, agent, "USDC") == sent[agent]
    rows = await deposits(db)
    assert len(rows) == 12 and {r.status for r in rows} == {"credited"}
    async with db.uow() as uow:
        credits = await uow.session.execute(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(LedgerTransaction.kind == "deposit")
        )
        assert credits.scalar_one() == 12


async def test_dev_fund_on_the_embedded_chain_activates_an_agent(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    agent = await make_agent(db, "newcomer")
    environ = env(database_url, AGENT_SERVER_CHAIN_DIR=str(tmp_path / "chain"))
    server = start(cli("watch-deposits", "--interval", "0.2"), environ, "watch-deposits")
    try:
        server.wait_for(re.compile(r"watching eip155:\d+"), timeout=60)
        funder = start(cli("dev", "fund", str(agent), "USDC", "25"), environ, "dev-fund")
        try:
            funder.wait_for(re.compile(r"deposit credited; agent \d+ is active"), timeout=60)
            assert funder.process.wait(30) == 0
        finally:
            funder.stop()
    finally:
        server.stop()  # SIGTERM: the embedded chain is stopped with it
    assert server.process.returncode == 0, server.output()
    assert await status_of(db, agent) == "active"
    assert await balance(db, agent, "USDC") == 25 * USDC
    [row] = await deposits(db)
    assert (row.currency, row.status, row.usd_micros) == ("USDC", "credited", 25_000_000)
    assert not (tmp_path / "chain" / "endpoint.json").exists()


async def test_dev_fund_btc_on_the_embedded_bitcoin_node_activates_an_agent(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """`make run`'s set-up: with no node configured the watcher process starts bcoin in
    regtest beside anvil; `dev fund AGENT BTC 0.01` pays the agent from bcoin's wallet and the
    watcher credits it. After a restart (a new regtest chain) the credit stands and funding
    works again."""
    agent = await make_agent(db, "btc-newcomer")
    environ = env(database_url, AGENT_SERVER_CHAIN_DIR=str(tmp_path / "chain"))
    watching = re.compile(r"watcher_started.*bitcoin:regtest")
    credited = re.compile(r"deposit credited; agent \d+ is active")
    sent: list[str] = []
    for amount in ("0.01", "0.02"):
        server = start(cli("watch-deposits", "--interval", "0.2"), environ, "watch-deposits")
        try:
            server.wait_for(watching, timeout=60)
            funder = start(cli("dev", "fund", str(agent), "BTC", amount), environ, "dev-fund")
            try:
                funder.wait_for(credited, timeout=90)
                assert funder.process.wait(30) == 0
            finally:
                funder.stop()
            txid = re.search(r"in ([0-9a-f]{64}) \(block \d+", funder.output())
            assert txid, funder.output()
            sent.append(txid.group(1))
        finally:
            server.stop()
        assert server.process.returncode == 0, server.output()
        assert "wallets.reorg" not in server.output()

    assert await status_of(db, agent) == "active"
    assert await balance(db, agent, "BTC") == 3_000_000  # satoshi
    rows = await deposits(db)
    assert sorted((r.currency, r.network, r.status, r.tx_hash, r.amount) for r in rows) == sorted(
        [
            ("BTC", "bitcoin:regtest", "credited", sent[0], 1_000_000),
            ("BTC", "bitcoin:regtest", "credited", sent[1], 2_000_000),
        ]
    )
    assert not (tmp_path / "chain" / "endpoint.json").exists()
