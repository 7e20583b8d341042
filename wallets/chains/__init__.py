"""Local chains for development and tests: anvil (EVM) and bcoin (Bitcoin regtest).

Both are real nodes from npm (``package.json`` at the repository root, installed by
``npm ci``), started on loopback with an OS-chosen port and stopped by their process id.
"""

from wallets.chains.anvil import AnvilNode, anvil_binary
from wallets.chains.bcoin import BcoinNode, bcoin_binary
from wallets.chains.processes import ChainProcessError, node_modules_dir

__all__ = [
    "AnvilNode",
    "BcoinNode",
    "ChainProcessError",
    "anvil_binary",
    "bcoin_binary",
    "node_modules_dir",
]
