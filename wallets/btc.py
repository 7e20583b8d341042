"""The Bitcoin side of the watcher: outputs paying our addresses, keyed by (txid, vout).

``BtcSource`` reads blocks through any ``wallets.btc_rpc.BitcoinRpc`` (Bitcoin Core, or
bcoin through ``BcoinRpc``): for each height, ``getblockhash`` then ``getblock`` with
transactions, and every output whose address is one of ours is a deposit in satoshi.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent_server.kernel.store import UnitOfWork
from wallets.btc_rpc import BitcoinRpc
from wallets.currencies import Chain
from wallets.watcher import ObservedBlock, ObservedTransfer, ScanBatch


def btc_network(name: str) -> str:
    """The network key of a Bitcoin network (``mainnet``, ``testnet``, ``regtest``...)."""
    return f"bitcoin:{name}"


class BtcSource:
    """A Bitcoin node as the deposit watcher reads it."""

    chain = Chain.BTC

    def __init__(self, rpc: BitcoinRpc, network_name: str) -> None:
        self.rpc = rpc
        self.network = btc_network(network_name)

    async def prepare(self, uow: UnitOfWork) -> None:
        return None

    async def head(self) -> int:
        return await self.rpc.get_block_count()

    async def block_hash(self, number: int) -> str | None:
        return await self.rpc.get_block_hash(number)

    async def scan(self, first: int, last: int, addresses: Mapping[str, int]) -> ScanBatch:
        blocks: list[ObservedBlock] = []
        transfers: list[ObservedTransfer] = []
        for height in range(first, last + 1):
            block_hash = await self.rpc.get_block_hash(height)
            if block_hash is None:  # the tip moved back: the batch will not link up
                break
            block = await self.rpc.get_block(block_hash)
            blocks.append(ObservedBlock(block.height, block.hash, block.previous_hash))
            for tx in block.transactions:
                for out in tx.outputs:
                    if out.address is None or out.satoshi <= 0 or out.address not in addresses:
                        continue
                    transfers.append(
                        ObservedTransfer(
                            tx_hash=tx.txid,
                            position=out.vout,
                            address=out.address,
                            currency="BTC",
                            amount=out.satoshi,
                            block_number=block.height,
                            block_hash=block.hash,
                        )
                    )
        return ScanBatch(blocks=blocks, transfers=transfers)

    async def aclose(self) -> None:
        await self.rpc.aclose()
