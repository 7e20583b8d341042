"""bcoin, a Bitcoin full node from npm, in regtest as a child process.

``BcoinNode.start()`` runs ``node node_modules/bcoin/bin/node --network=regtest
--memory=true`` with its node and wallet HTTP servers on 127.0.0.1 (OS-chosen ports, read
from its log), no peers and a random API key; stopped by its pid. Blocks and transactions
are read through ``wallets.btc_rpc.BcoinRpc`` like any Bitcoin-Core-compatible node; the
helpers here use bcoin's REST wallet to get funded addresses and send payments, and
``generatetoaddress`` to mine.

``BcoinNode.attach`` drives a node another process started (``agent-server dev fund``).

bcoin writes regtest bech32 addresses with the ``rb`` prefix where Bitcoin Core writes
``bcrt``; payments to our (``bcrt``) deposit addresses are re-encoded before sending.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wallets.btc_rpc import BcoinRpc, reencode_bech32
from wallets.chains.processes import ChainProcessError, NodeProcess, node_modules_dir

if TYPE_CHECKING:
    import httpx

_WALLET_HTTP = re.compile(r"Wallet HTTP server listening on \S+ \(port=(\d+)\)")
_NODE_HTTP = re.compile(r"Node HTTP server listening on \S+ \(port=(\d+)\)")
COINBASE_MATURITY = 100


def bcoin_binary() -> list[str]:
    """The command that runs a bcoin full node (node + the package's entry script)."""
    script = node_modules_dir() / "bcoin" / "bin" / "node"
    node = shutil.which("node")
    if not script.is_file() or node is None:
        raise ChainProcessError("bcoin is not installed: run `npm ci` in the repository root")
    return [node, str(script)]


class BcoinNode:
    """A running bcoin regtest node with its wallet."""

    def __init__(
        self,
        process: NodeProcess | None,
        node_url: str,
        wallet_url: str,
        api_key: str,
        prefix: Path | None,
    ) -> None:
        self.process = process
        self.node_url = node_url
        self.wallet_url = wallet_url
        self.api_key = api_key
        self._prefix = prefix  # a temporary directory removed on stop
        self._miner_address: str | None = None

    @classmethod
    def attach(cls, node_url: str, wallet_url: str, api_key: str) -> BcoinNode:
        """A client of a node started elsewhere; ``stop`` leaves that node running."""
        return cls(None, node_url, wallet_url, api_key, None)

    @classmethod
    def start(cls, *, timeout: float = 30.0) -> BcoinNode:
        api_key = secrets.token_hex(16)
        # In memory: bcoin's on-disk database needs the leveldown API of its own day, not the
        # one installed here, so its wallet would list no coins after a restart.
        prefix = Path(tempfile.mkdtemp(prefix="bcoin-regtest-"))
        argv = [
            *bcoin_binary(),
            "--network=regtest",
            "--memory=true",
            "--workers=false",
            "--listen=false",
            "--max-outbound=1",
            "--discover=false",
            "--seeds=",
            "--http-host=127.0.0.1",
            "--http-port=0",
            "--wallet-http-host=127.0.0.1",
            "--wallet-http-port=0",
            f"--api-key={api_key}",
            f"--wallet-api-key={api_key}",
            "--log-level=info",
            "--log-file=false",
            f"--prefix={prefix}",
        ]
        process = NodeProcess(argv, "bcoin")
        try:
            wallet_port = process.wait_for(_WALLET_HTTP, timeout).group(1)
            node_port = process.wait_for(_NODE_HTTP, timeout).group(1)
        except BaseException:
            process.stop()
            shutil.rmtree(prefix, ignore_errors=True)
            raise
        return cls(
            process,
            f"http://127.0.0.1:{node_port}",
            f"http://127.0.0.1:{wallet_port}",
            api_key,
            prefix,
        )

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    @property
    def rpc_url(self) -> str:
        """The node's JSON-RPC URL with its credentials, as ``BcoinRpc`` takes it."""
        return self.node_url.replace("http://", f"http://x:{self.api_key}@")

    def rpc(self) -> BcoinRpc:
        return BcoinRpc(self.rpc_url, network="regtest")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        if self._prefix is not None:
            shutil.rmtree(self._prefix, ignore_errors=True)

    def _client(self) -> httpx.AsyncClient:
        import httpx  # loaded on first use: a server that never calls out does without it

        return httpx.AsyncClient(auth=("x", self.api_key), timeout=30)

    async def _rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self._client() as client:
            response = await client.request(method, self.wallet_url + path, json=body)
        if response.status_code >= 400:
            raise ChainProcessError(f"bcoin wallet {path}: {response.text}")
        return response.json()

    async def new_address(self) -> str:
        """A fresh receive address of bcoin's own ``primary`` wallet (REST)."""
        result = await self._rest("POST", "/wallet/primary/address", {"account": "default"})
        return str(result["address"])

    async def mine(self, blocks: int, to: str | None = None) -> list[str]:
        """Mine ``blocks`` blocks (rewards to bcoin's wallet); their hashes."""
        if to is None:
            if self._miner_address is None:
                self._miner_address = await self.new_address()
            to = self._miner_address
        rpc = self.rpc()
        try:
            return [str(h) for h in await rpc.call("generatetoaddress", blocks, to)]
        finally:
            await rpc.aclose()

    async def fund_wallet(self) -> None:
        """Mine until the wallet has spendable coinbase outputs."""
        rpc = self.rpc()
        try:
            height = await rpc.get_block_count()
        finally:
            await rpc.aclose()
        if height <= COINBASE_MATURITY:
            await self.mine(COINBASE_MATURITY + 1 - height + 1)

    async def wait_spendable(self, satoshi: int) -> None:
        """Wait (30 seconds at most) until the wallet holds ``satoshi`` in mature coins:
        bcoin's wallet takes in new blocks a moment after the node, so coins just mined may
        not be seen yet."""
        spendable = 0
        try:
            async with asyncio.timeout(30):
                while True:
                    spendable = await self._spendable()
                    if spendable >= satoshi:
                        return
                    await asyncio.sleep(0.2)
        except TimeoutError:
            raise ChainProcessError(
                f"bcoin's wallet holds {spendable} spendable satoshi, {satoshi} needed"
            ) from None

    async def _spendable(self) -> int:
        rpc = self.rpc()
        try:
            height = await rpc.get_block_count()
        finally:
            await rpc.aclose()
        coins = await self._rest("GET", "/wallet/primary/coin")
        return sum(
            int(coin["value"])
            for coin in coins
            if coin["height"] >= 0
            and (not coin["coinbase"] or height - coin["height"] >= COINBASE_MATURITY)
        )

    async def send(self, address: str, satoshi: int) -> str:
        """Pay ``satoshi`` to ``address`` (``bcrt1`` accepted) from bcoin's wallet; the txid."""
        target = reencode_bech32(address, "bcrt", "rb")
        result = await self._rest(
            "POST",
            "/wallet/primary/send",
            {"outputs": [{"address": target, "value": satoshi}], "rate": 1000},
        )
        return str(result["hash"])

    async def send_many(self, payments: list[tuple[str, int]]) -> str:
        """One transaction paying several addresses; the txid."""
        outputs = [{"address": reencode_bech32(a, "bcrt", "rb"), "value": v} for a, v in payments]
        result = await self._rest(
            "POST", "/wallet/primary/send", {"outputs": outputs, "rate": 1000}
        )
        return str(result["hash"])

    async def rebroadcast(self, txid: str) -> None:
        """Send one of the wallet's transactions to the mempool again (after a reorg)."""
        record = await self._rest("GET", f"/wallet/primary/tx/{txid}")
        rpc = self.rpc()
        try:
            await rpc.call("sendrawtransaction", record["tx"])
        finally:
            await rpc.aclose()
