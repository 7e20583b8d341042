"""Local chains for development and tests: anvil (EVM) and bcoin (Bitcoin regtest).

Both are real nodes from npm (``package.json`` at the repository root, installed by
``npm ci``), started on loopback with an OS-chosen port and stopped by their process id.
"""

from typing import TYPE_CHECKING, Any

from wallets.chains.bcoin import BcoinNode, bcoin_binary
from wallets.chains.processes import ChainProcessError, node_modules_dir

if TYPE_CHECKING:
    from wallets.chains.anvil import AnvilNode, anvil_binary


def __getattr__(name: str) -> Any:
    """``AnvilNode`` and ``anvil_binary``, imported when first named: their module imports
    web3, which a process using only bcoin or the package's other names never needs."""
    if name in ("AnvilNode", "anvil_binary"):
        from wallets.chains import anvil

        return getattr(anvil, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnvilNode",
    "BcoinNode",
    "ChainProcessError",
    "anvil_binary",
    "bcoin_binary",
    "node_modules_dir",
]
