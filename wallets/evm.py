"""The EVM side of the watcher: native ETH and the ERC-20 ``Transfer`` logs of USDT and USDC.

``EvmSource`` reads an Ethereum-compatible node over JSON-RPC (web3, async):

- native deposits: every transaction of every scanned block whose ``to`` is one of our
  addresses and whose value is positive (position -1), kept only if its receipt succeeded;
- token deposits: ``eth_getLogs`` over the whole block range of a batch, filtered by the
  token contracts and by ``Transfer``'s indexed recipient topic = our addresses (in chunks),
  position = the log's index in its block.

Token contracts come from ``chain_tokens`` (the embedded chain registers its deployments
there; an operator can add rows for other networks) and, on Ethereum mainnet, the canonical
USDT and USDC contracts. Only contracts with the currency's decimals (6) are followed.
Value moved by contracts (internal transactions) is not seen: that needs trace APIs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from web3 import AsyncWeb3
from web3.exceptions import BlockNotFound

from agent_server.kernel.logs import get_logger
from agent_server.kernel.recursion import restore_recursion_limit
from agent_server.kernel.store import UnitOfWork
from wallets.chains.anvil import connect
from wallets.currencies import CURRENCIES, Chain
from wallets.models import ChainToken
from wallets.watcher import ObservedBlock, ObservedTransfer, ScanBatch

restore_recursion_limit()  # importing web3 raised it (py_ecc)

log = get_logger(__name__)

# keccak256("Transfer(address,address,uint256)")
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
KNOWN_TOKENS: dict[int, dict[str, str]] = {
    1: {
        "USDT": "0xdAC17F958D2ee523a2206206994597C13D831ec7",
        "USDC": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    },
}
TOPIC_CHUNK = 200  # recipients per eth_getLogs call
FETCH_CONCURRENCY = 8


def evm_network(chain_id: int) -> str:
    """The network key of an EVM chain (CAIP-2)."""
    return f"eip155:{chain_id}"


def _topic(address: str) -> str:
    return "0x" + "0" * 24 + address[2:].lower()


def _hex(value: Any) -> str:
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value)


class EvmSource:
    """An EVM node as the deposit watcher reads it."""

    chain = Chain.EVM

    def __init__(self, w3: AsyncWeb3[Any], chain_id: int) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.network = evm_network(chain_id)
        self.tokens: dict[str, str] = {}  # checksummed contract -> currency

    @classmethod
    async def connect(cls, rpc_url: str) -> EvmSource:
        w3 = connect(rpc_url)
        return cls(w3, int(await w3.eth.chain_id))

    async def prepare(self, uow: UnitOfWork) -> None:
        tokens: dict[str, str] = {
            AsyncWeb3.to_checksum_address(contract): currency
            for currency, contract in KNOWN_TOKENS.get(self.chain_id, {}).items()
        }
        rows = await uow.session.execute(
            select(ChainToken).where(ChainToken.network == self.network)
        )
        for row in rows.scalars():
            info = CURRENCIES.get(row.currency)
            if info is None or info.chain_decimals != row.decimals:
                log.error(
                    "wallets.token_ignored",
                    network=self.network,
                    currency=row.currency,
                    contract=row.contract,
                    reason="unknown currency or decimals differ from the currency's",
                )
                continue
            tokens[AsyncWeb3.to_checksum_address(row.contract)] = info.code
        self.tokens = tokens

    async def head(self) -> int:
        return int(await self.w3.eth.block_number)

    async def block_hash(self, number: int) -> str | None:
        if number < 0:
            return None
        try:
            block = await self.w3.eth.get_block(number)
        except BlockNotFound:
            return None
        return _hex(block["hash"])

    async def _blocks(self, first: int, last: int) -> list[Any]:
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def fetch(number: int) -> Any:
            async with limit:
                return await self.w3.eth.get_block(number, full_transactions=True)

        return list(await asyncio.gather(*(fetch(n) for n in range(first, last + 1))))

    async def scan(self, first: int, last: int, addresses: Mapping[str, int]) -> ScanBatch:
        blocks = await self._blocks(first, last)
        observed = [
            ObservedBlock(int(b["number"]), _hex(b["hash"]), _hex(b["parentHash"])) for b in blocks
        ]
        transfers: list[ObservedTransfer] = []
        if addresses:
            transfers += await self._native(blocks, addresses)
            transfers += await self._token_logs(first, last, addresses)
        return ScanBatch(blocks=observed, transfers=transfers)

    async def _native(
        self, blocks: list[Any], addresses: Mapping[str, int]
    ) -> list[ObservedTransfer]:
        found: list[ObservedTransfer] = []
        for block in blocks:
            for tx in block["transactions"]:
                to = tx.get("to")
                if not to or int(tx["value"]) <= 0 or to not in addresses:
                    continue
                receipt = await self.w3.eth.get_transaction_receipt(tx["hash"])
                if int(receipt["status"]) != 1 or _hex(receipt["blockHash"]) != _hex(block["hash"]):
                    continue
                found.append(
                    ObservedTransfer(
                        tx_hash=_hex(tx["hash"]),
                        position=-1,
                        address=str(to),
                        currency="ETH",
                        amount=int(tx["value"]),
                        block_number=int(block["number"]),
                        block_hash=_hex(block["hash"]),
                    )
                )
        return found

    async def _token_logs(
        self, first: int, last: int, addresses: Mapping[str, int]
    ) -> list[ObservedTransfer]:
        if not self.tokens:
            return []
        recipients = list(addresses)
        found: list[ObservedTransfer] = []
        for start in range(0, len(recipients), TOPIC_CHUNK):
            chunk = recipients[start : start + TOPIC_CHUNK]
            logs = await self.w3.eth.get_logs(
                {
                    "fromBlock": first,
                    "toBlock": last,
                    "address": [AsyncWeb3.to_checksum_address(t) for t in self.tokens],
                    "topics": [TRANSFER_TOPIC, None, [_topic(a) for a in chunk]],
                }
            )
            for entry in logs:
                if entry.get("removed") or len(entry["topics"]) != 3:
                    continue
                currency = self.tokens.get(AsyncWeb3.to_checksum_address(entry["address"]))
                recipient = AsyncWeb3.to_checksum_address("0x" + _hex(entry["topics"][2])[-40:])
                amount = int(_hex(entry["data"]), 16) if len(entry["data"]) else 0
                if currency is None or recipient not in addresses or amount <= 0:
                    continue
                found.append(
                    ObservedTransfer(
                        tx_hash=_hex(entry["transactionHash"]),
                        position=int(entry["logIndex"]),
                        address=recipient,
                        currency=currency,
                        amount=amount,
                        block_number=int(entry["blockNumber"]),
                        block_hash=_hex(entry["blockHash"]),
                    )
                )
        return found

    async def aclose(self) -> None:
        await self.w3.provider.disconnect()
