"""anvil, the EVM development node from ``@foundry-rs/anvil`` (npm), as a child process.

``AnvilNode.start()`` runs the platform binary the npm package ships, on 127.0.0.1 with
``--port 0``, reads the port from its "Listening on" line and stops it by its pid. The
helpers below drive it through JSON-RPC: its unlocked development accounts send value,
``anvil_mine`` mines blocks, ``evm_snapshot``/``evm_revert`` and ``anvil_reorg`` rewrite
history for reorg tests.
"""

from __future__ import annotations

import platform
import re
import shutil
from pathlib import Path
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.types import Wei

from agent_server.kernel.recursion import restore_recursion_limit
from wallets.chains.processes import ChainProcessError, NodeProcess, node_modules_dir

restore_recursion_limit()  # importing web3 raised it (py_ecc)

_LISTENING = re.compile(r"Listening on (\d+\.\d+\.\d+\.\d+):(\d+)")
# anvil's well-known first development account (unlocked on every anvil node).
DEV_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
# Its second one: the embedded chain's withdrawal sender signs from it, so the sender and
# ``dev fund`` (which sends from DEV_ACCOUNT) never compete for one account's nonces.
SENDER_ACCOUNT = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def anvil_binary() -> str:
    """The anvil executable shipped by the npm package (or one on PATH)."""
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    shipped = node_modules_dir() / "@foundry-rs" / f"anvil-{system}-{machine}" / "bin" / "anvil"
    if shipped.is_file():
        return str(shipped)
    wrapper = node_modules_dir() / ".bin" / "anvil"
    if wrapper.exists():
        return str(wrapper)
    found = shutil.which("anvil")
    if found:
        return found
    raise ChainProcessError("anvil is not installed: run `npm ci` in the repository root")


class AnvilNode:
    """A running anvil node."""

    def __init__(self, process: NodeProcess, rpc_url: str) -> None:
        self.process = process
        self.rpc_url = rpc_url

    @classmethod
    def start(
        cls,
        *,
        chain_id: int | None = None,
        state_path: Path | None = None,
        timeout: float = 30.0,
    ) -> AnvilNode:
        """Start anvil on loopback; with ``state_path`` the chain survives restarts."""
        argv = [anvil_binary(), "--host", "127.0.0.1", "--port", "0"]
        if chain_id is not None:
            argv += ["--chain-id", str(chain_id)]
        if state_path is not None:
            state_path.parent.mkdir(parents=True, exist_ok=True)
            argv += ["--state", str(state_path), "--state-interval", "1"]
        process = NodeProcess(argv, "anvil")
        try:
            found = process.wait_for(_LISTENING, timeout)
        except BaseException:
            process.stop()
            raise
        return cls(process, f"http://{found.group(1)}:{found.group(2)}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.process.stop()

    def web3(self) -> AsyncWeb3[Any]:
        return connect(self.rpc_url)


def connect(rpc_url: str) -> AsyncWeb3[Any]:
    """An async web3 client for ``rpc_url``."""
    return AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": 30}))


async def rpc(w3: AsyncWeb3[Any], method: str, *params: Any) -> Any:
    """A raw JSON-RPC call (anvil_* and evm_* methods have no web3 wrapper)."""
    response = await w3.provider.make_request(method, list(params))
    if "error" in response:
        raise ChainProcessError(f"{method} failed: {response['error']}")
    return response.get("result")


async def mine(w3: AsyncWeb3[Any], blocks: int = 1) -> None:
    """Mine ``blocks`` empty blocks."""
    if blocks > 0:
        await rpc(w3, "anvil_mine", hex(blocks))


async def send_value(w3: AsyncWeb3[Any], to: str, wei: int, sender: str = DEV_ACCOUNT) -> str:
    """Send ``wei`` from an unlocked account; the mined transaction's hash."""
    tx_hash = await w3.eth.send_transaction(
        {
            "from": AsyncWeb3.to_checksum_address(sender),
            "to": AsyncWeb3.to_checksum_address(to),
            "value": Wei(wei),
        }
    )
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1:
        raise ChainProcessError(f"value transfer {tx_hash.to_0x_hex()} failed")
    return str(tx_hash.to_0x_hex())
