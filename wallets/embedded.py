"""Running the watchers in a server process, and the embedded development chain.

``start_embedded_chain_and_watcher(runtime)`` is what ``agent-server serve`` and
``agent-server watch-deposits`` enter for their lifetime:

- with ``Settings.start_watchers`` false it does nothing;
- with ``Settings.evm_rpc_url`` set it watches that node (tokens from ``chain_tokens`` and,
  on Ethereum mainnet, the canonical USDT/USDC contracts);
- without it, it starts the embedded chain: anvil from npm, its state kept in
  ``.agent_server/chain/`` (so deposits and blocks survive a restart), the test USDT and USDC
  deployed once and registered in ``chain_tokens``, and an ``endpoint.json`` there that
  ``agent-server dev fund`` reads to find the node;
- with ``Settings.btc_rpc_url`` set it also watches that Bitcoin node
  (``http://user:pass@host:port`` for Bitcoin Core; ``bcoin+http://x:key@host:port`` for bcoin);
- with neither node URL set (development, ``make run``) and ``Settings.btc_network`` regtest,
  it also starts bcoin in regtest and names it under ``btc`` in ``endpoint.json`` for
  ``agent-server dev fund AGENT BTC 0.01``. bcoin keeps its chain in memory, so each start is
  a new regtest chain: the watcher's scan position of the previous one is forgotten (it
  would read the new chain as a reorg of the old one down to the genesis block and reverse
  every BTC deposit credited on it); credited deposits and balances stay as they are.

A fresh embedded chain gets a random chain id, so a chain whose state was deleted is a new
network to the watcher rather than a reorg of the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import delete, select

from agent_server.kernel.config import Settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database
from wallets.btc import BtcSource, btc_network
from wallets.btc_rpc import BcoinRpc, BitcoinCoreRpc, BitcoinRpc
from wallets.chains.bcoin import BcoinNode
from wallets.crediting import DepositFollowUp
from wallets.models import ChainCheckpoint, ChainToken, ScannedBlock
from wallets.rates import RateSource, rate_source
from wallets.watcher import ChainSource, DepositWatcher

if TYPE_CHECKING:  # web3 is imported only once an EVM chain is started or watched
    from wallets.chains.anvil import AnvilNode

log = get_logger(__name__)

CHAIN_DIR = Path(".agent_server") / "chain"
POLL_INTERVAL = 1.0


class RuntimeLike(Protocol):
    settings: Settings
    db: Database
    chain_services: ChainServices | None

    @property
    def rates(self) -> RateSource: ...


@dataclass
class ChainServices:
    """What is running: the watchers, and the embedded node if one was started."""

    watchers: list[DepositWatcher] = field(default_factory=list)
    anvil: AnvilNode | None = None
    bcoin: BcoinNode | None = None
    endpoint: dict[str, Any] | None = None


def chain_dir() -> Path:
    return Path(os.environ.get("AGENT_SERVER_CHAIN_DIR", str(CHAIN_DIR)))


def read_endpoint(directory: Path | None = None) -> dict[str, Any] | None:
    """The running embedded chain's endpoint (rpc_url, chain_id, tokens), if any."""
    path = (directory or chain_dir()) / "endpoint.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


async def register_tokens(db: Database, network: str, tokens: dict[str, str]) -> None:
    """Make ``chain_tokens`` hold exactly ``tokens`` (currency -> contract) for ``network``."""
    async with db.uow() as uow:
        rows = (
            await uow.session.execute(select(ChainToken).where(ChainToken.network == network))
        ).scalars()
        existing = {row.currency: row for row in rows}
        for currency, contract in tokens.items():
            row = existing.get(currency)
            if row is None:
                uow.session.add(
                    ChainToken(network=network, currency=currency, contract=contract, decimals=6)
                )
            elif row.contract != contract:
                row.contract = contract
        await uow.commit()


def _load_state(directory: Path) -> tuple[dict[str, Any], Path]:
    """The chain's id and tokens from ``chain.json``; a new id when there is no saved state."""
    directory.mkdir(parents=True, exist_ok=True)
    meta_path = directory / "chain.json"
    state_path = directory / "anvil-state.json"
    meta: dict[str, Any] = {}
    if state_path.exists() and meta_path.exists():
        with contextlib.suppress(ValueError):
            meta = json.loads(meta_path.read_text())
    if "chain_id" not in meta:
        state_path.unlink(missing_ok=True)
        meta = {"chain_id": 100_000 + secrets.randbelow(900_000), "tokens": {}}
    return meta, state_path


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` readable by its owner only (the endpoint holds the bcoin API key)."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(json.dumps(data, indent=2))


async def _start_embedded_bitcoin(db: Database) -> tuple[BcoinNode, dict[str, Any]]:
    """A new bcoin regtest chain, the previous one's scan position forgotten; the node and
    its part of the endpoint."""
    node = await asyncio.to_thread(BcoinNode.start)
    network = btc_network("regtest")
    try:
        async with db.uow() as uow:
            for model in (ChainCheckpoint, ScannedBlock):
                await uow.session.execute(delete(model).where(model.network == network))
            await uow.commit()
    except BaseException:
        await asyncio.to_thread(node.stop)
        raise
    endpoint = {
        "rpc_url": f"bcoin+{node.rpc_url}",
        "node_url": node.node_url,
        "wallet_url": node.wallet_url,
        "api_key": node.api_key,
        "pid": node.pid,
        "network": "regtest",
    }
    log.info(
        "wallets.embedded_bitcoin_started",
        node_url=node.node_url,
        message="development Bitcoin node: fund agents with `agent-server dev fund AGENT BTC 0.01`",
    )
    return node, endpoint


async def _start_embedded(db: Database, directory: Path) -> tuple[AnvilNode, dict[str, Any]]:
    from wallets.chains.anvil import AnvilNode
    from wallets.chains.tokens import deploy_test_tokens, fund_sender_tokens, has_code
    from wallets.evm import evm_network

    meta, state_path = await asyncio.to_thread(_load_state, directory)
    node = await asyncio.to_thread(
        AnvilNode.start, chain_id=meta["chain_id"], state_path=state_path
    )
    w3 = node.web3()
    try:
        tokens: dict[str, str] = dict(meta.get("tokens") or {})
        if len(tokens) < 2 or not all([await has_code(w3, c) for c in tokens.values()]):
            tokens = await deploy_test_tokens(w3)
            meta["tokens"] = tokens
        await fund_sender_tokens(w3, tokens)
        await asyncio.to_thread(_write_json, directory / "chain.json", meta)
    except BaseException:
        await asyncio.to_thread(node.stop)
        raise
    finally:
        await w3.provider.disconnect()
    network = evm_network(int(meta["chain_id"]))
    await register_tokens(db, network, tokens)
    endpoint = {
        "rpc_url": node.rpc_url,
        "pid": node.pid,
        "chain_id": meta["chain_id"],
        "network": network,
        "tokens": tokens,
    }
    await asyncio.to_thread(_write_json, directory / "endpoint.json", endpoint)
    log.info(
        "wallets.embedded_chain_started",
        rpc_url=node.rpc_url,
        chain_id=meta["chain_id"],
        contracts=tokens,
        message="development chain: fund agents with `agent-server dev fund AGENT USDC 25`",
    )
    return node, endpoint


def _alive(pid: int, program: bytes = b"anvil") -> bool:
    """Whether ``pid`` is a running ``program`` (a stale endpoint file names a dead or reused
    pid)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        return program in cmdline.read_bytes()
    return True


def bitcoin_rpc(url: str, network: str) -> BitcoinRpc:
    """A client for ``url``: Bitcoin Core, or bcoin when the scheme is ``bcoin+http``."""
    if url.startswith("bcoin+"):
        return BcoinRpc(url.removeprefix("bcoin+"), network=network)
    return BitcoinCoreRpc(url)


SourceFactory = Callable[[], Awaitable[ChainSource]]


async def _connected(factory: SourceFactory, name: str) -> ChainSource | None:
    try:
        return await factory()
    except Exception as exc:  # the node is down or misconfigured: retried in the background
        log.warning("wallets.node_unreachable", chain=name, error=repr(exc))
        return None


@contextlib.asynccontextmanager
async def start_embedded_chain_and_watcher(
    runtime: RuntimeLike,
    *,
    follow_up: DepositFollowUp,
    batch_blocks: int = 100,
    start_block: int | None = None,
    interval: float = POLL_INTERVAL,
) -> AsyncIterator[ChainServices]:
    """Run the deposit watchers (and the embedded chain when no EVM node is configured)
    for the duration of the block; ``follow_up`` is what each credited deposit does beyond
    the wallets (``agent_server.services.deposits.DEPOSIT_FOLLOW_UP``).

    Never fails the server's start: a chain that cannot be started or reached is logged and
    its watcher retries in the background.
    """
    settings = runtime.settings
    services = ChainServices()
    if not settings.start_watchers:
        yield services
        return
    rates = rate_source(runtime)
    directory = chain_dir()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def watch(factory: SourceFactory, name: str, source: ChainSource | None) -> None:
        while source is None:
            try:
                await asyncio.wait_for(stop.wait(), 5.0)
                return
            except TimeoutError:
                source = await _connected(factory, name)
        watcher = DepositWatcher(
            runtime.db,
            source,
            rates=rates,
            confirmations=settings.confirmations,
            activation_usd_micros=settings.activation_usd_micros,
            follow_up=follow_up,
            batch_blocks=batch_blocks,
            start_block=start_block,
        )
        services.watchers.append(watcher)
        log.info("wallets.watcher_started", network=watcher.network)
        try:
            await watcher.run(stop, interval)
        finally:
            with contextlib.suppress(Exception):
                await source.aclose()

    try:
        factories: list[tuple[str, SourceFactory]] = []
        evm_url = settings.evm_rpc_url
        btc_url = settings.btc_rpc_url
        # Development: no node configured at all, so the embedded ones are started.
        embedded_btc = not evm_url and not btc_url and settings.btc_network == "regtest"
        running = read_endpoint(directory) if not evm_url else None
        if running is not None and _alive(int(running.get("pid", 0))):
            # Another process (``serve`` or ``watch-deposits``) runs the embedded chain.
            evm_url = str(running["rpc_url"])
            services.endpoint = running
            btc = running.get("btc")
            if embedded_btc and isinstance(btc, dict) and _alive(int(btc["pid"]), b"bcoin"):
                btc_url = str(btc["rpc_url"])
            embedded_btc = False
        if not evm_url:
            try:
                services.anvil, services.endpoint = await _start_embedded(runtime.db, directory)
                evm_url = services.anvil.rpc_url
            except Exception as exc:
                log.error(
                    "wallets.embedded_chain_failed",
                    error=repr(exc),
                    message="no EVM deposits will be credited; run `npm ci` or set "
                    "AGENT_SERVER_EVM_RPC_URL",
                )
        if embedded_btc and services.endpoint is not None:
            try:
                services.bcoin, btc_endpoint = await _start_embedded_bitcoin(runtime.db)
                services.endpoint["btc"] = btc_endpoint
                await asyncio.to_thread(_write_json, directory / "endpoint.json", services.endpoint)
                btc_url = str(btc_endpoint["rpc_url"])
            except Exception as exc:
                log.error(
                    "wallets.embedded_bitcoin_failed",
                    error=repr(exc),
                    message="no BTC deposits will be credited; run `npm ci` or set "
                    "AGENT_SERVER_BTC_RPC_URL",
                )
        if evm_url:
            url = evm_url

            async def evm_source() -> ChainSource:
                from wallets.evm import EvmSource

                return await EvmSource.connect(url)

            factories.append(("evm", evm_source))
        if btc_url:

            async def btc_source() -> ChainSource:
                rpc = bitcoin_rpc(btc_url, settings.btc_network)
                return BtcSource(rpc, settings.btc_network)

            factories.append(("btc", btc_source))
        for name, factory in factories:
            first = await _connected(factory, name)
            tasks.append(asyncio.create_task(watch(factory, name, first), name=f"watch-{name}"))
        await asyncio.sleep(0)  # let connected watchers register
        runtime.chain_services = services
        yield services
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if services.anvil is not None:
            (directory / "endpoint.json").unlink(missing_ok=True)
            await asyncio.to_thread(services.anvil.stop)
            log.info("wallets.embedded_chain_stopped")
        if services.bcoin is not None:
            await asyncio.to_thread(services.bcoin.stop)
            log.info("wallets.embedded_bitcoin_stopped")
