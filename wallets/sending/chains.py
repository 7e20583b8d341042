"""Signing, broadcasting and looking up withdrawal transactions on each chain.

``EvmSigner`` (ETH and the ERC-20 tokens of ``chain_tokens``) signs EIP-1559 transactions with
the hot wallet's key, one nonce per withdrawal; a replacement keeps the nonce and raises both
fees by at least an eighth. ``BcoinSigner`` has a bcoin wallet create and sign a payment
without broadcasting it, then broadcasts the recorded raw transaction through the node.
Both answer ``lookup(hash)``: not known, waiting in the mempool, or mined (where, whether it
succeeded, what it cost).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import httpx
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound

from agent_server.kernel.recursion import restore_recursion_limit
from wallets.btc_rpc import BitcoinCoreRpc, BitcoinRpcError, reencode_bech32
from wallets.currencies import Chain, currency_info

restore_recursion_limit()  # importing web3 raised it (py_ecc)

ERC20_TRANSFER = "0xa9059cbb"


class Seen(StrEnum):
    UNKNOWN = "unknown"  # the node knows nothing of it
    PENDING = "pending"  # in the mempool
    MINED = "mined"


@dataclass(frozen=True)
class Lookup:
    seen: Seen
    block_number: int | None = None
    block_hash: str | None = None
    succeeded: bool = True
    fee: int | None = None  # paid, in the chain's unit


@dataclass(frozen=True)
class Signed:
    tx_hash: str
    raw: str
    nonce: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    gas_limit: int | None = None
    fee_rate: int | None = None
    fee: int | None = None


@dataclass(frozen=True)
class Payment:
    currency: str
    address: str
    amount: int  # base units
    token: str | None = None  # ERC-20 contract


class BroadcastRefused(RuntimeError):
    """The node refused the transaction for good (its inputs are spent elsewhere)."""


class ChainSigner(Protocol):
    chain: Chain
    network: str
    from_address: str
    sender_key: str  # the hot wallet with its network, as recorded on each withdrawal

    async def head(self) -> int: ...

    async def lookup(self, tx_hash: str) -> Lookup: ...

    async def broadcast(self, raw: str) -> None: ...

    async def aclose(self) -> None: ...


def _hex(value: Any) -> str:
    return value.to_0x_hex() if hasattr(value, "to_0x_hex") else str(value)


class EvmSigner:
    chain = Chain.EVM

    def __init__(
        self, w3: AsyncWeb3[Any], chain_id: int, account: LocalAccount, token_gas: int
    ) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.network = f"eip155:{chain_id}"
        self._account = account
        self.from_address = str(account.address)
        self.sender_key = f"{self.network}:{self.from_address}"  # unique with each nonce
        self.token_gas = token_gas

    async def head(self) -> int:
        return int(await self.w3.eth.block_number)

    async def mined_nonce(self) -> int:
        """How many of the hot wallet's transactions are mined."""
        return int(await self.w3.eth.get_transaction_count(self.from_address, "latest"))  # type: ignore[arg-type]

    async def pending_nonce(self) -> int:
        return int(await self.w3.eth.get_transaction_count(self.from_address, "pending"))  # type: ignore[arg-type]

    async def fees(self) -> tuple[int, int]:
        """(max fee, tip) per gas for a transaction now: twice the base fee plus the tip."""
        block = await self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        tip = int(await self.w3.eth.max_priority_fee)
        return 2 * base + tip, tip

    async def sign(
        self, payment: Payment, nonce: int, *, replacing: tuple[int, int] | None = None
    ) -> Signed:
        """Sign ``payment`` under ``nonce``; ``replacing`` (max fee, tip) of the transaction
        it replaces, outbid by at least an eighth."""
        max_fee, tip = await self.fees()
        if replacing is not None:
            tip = max(tip, replacing[1] + replacing[1] // 8 + 1)
            max_fee = max(max_fee, replacing[0] + replacing[0] // 8 + 1, tip)
        info = currency_info(payment.currency)
        to = AsyncWeb3.to_checksum_address(payment.address)
        if payment.token is None:
            tx: dict[str, Any] = {"to": to, "value": info.base_to_chain(payment.amount)}
            gas = 21_000
        else:
            data = ERC20_TRANSFER + to[2:].lower().rjust(64, "0") + f"{payment.amount:064x}"
            tx = {"to": AsyncWeb3.to_checksum_address(payment.token), "value": 0, "data": data}
            gas = self.token_gas
        tx.update(
            chainId=self.chain_id,
            nonce=nonce,
            gas=gas,
            maxFeePerGas=max_fee,
            maxPriorityFeePerGas=tip,
            type=2,
        )
        signed = self._account.sign_transaction(tx)
        return Signed(
            tx_hash=_hex(signed.hash),
            raw=_hex(signed.raw_transaction),
            nonce=nonce,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tip,
            gas_limit=gas,
        )

    async def broadcast(self, raw: str) -> None:
        try:
            await self.w3.eth.send_raw_transaction(HexStr(raw))
        except Exception as exc:
            text = str(exc).lower()
            if "already known" in text or "already imported" in text or "nonce too low" in text:
                return  # on its way already, or its nonce is used: lookup decides which
            raise

    async def lookup(self, tx_hash: str) -> Lookup:
        try:
            tx = await self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return Lookup(Seen.UNKNOWN)
        if tx.get("blockNumber") is None:
            return Lookup(Seen.PENDING)
        try:
            receipt = await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return Lookup(Seen.PENDING)
        fee = int(receipt["gasUsed"]) * int(receipt.get("effectiveGasPrice", 0) or 0)
        return Lookup(
            Seen.MINED,
            block_number=int(receipt["blockNumber"]),
            block_hash=_hex(receipt["blockHash"]),
            succeeded=int(receipt["status"]) == 1,
            fee=fee,
        )

    async def aclose(self) -> None:
        await self.w3.provider.disconnect()


class BcoinSigner:
    """A bcoin wallet signs; its node broadcasts and tells what is mined."""

    chain = Chain.BTC

    def __init__(
        self,
        rpc: BitcoinCoreRpc,
        wallet_url: str,
        wallet_id: str,
        api_key: str,
        network_name: str,
        fee_rate: int,
    ) -> None:
        self.rpc = rpc
        self.network = f"bitcoin:{network_name}"
        self.network_name = network_name
        self.from_address = f"bcoin-wallet:{wallet_id}"
        self.sender_key = f"{self.network}:{self.from_address}"
        self._wallet = f"{wallet_url.rstrip('/')}/wallet/{wallet_id}"
        self._client = httpx.AsyncClient(auth=("x", api_key), timeout=30)
        self.fee_rate = fee_rate

    def _address(self, address: str) -> str:
        if self.network_name == "regtest":
            return reencode_bech32(address, "bcrt", "rb")
        return address

    async def head(self) -> int:
        return await self.rpc.get_block_count()

    async def sign(self, payment: Payment) -> Signed:
        response = await self._client.post(
            f"{self._wallet}/create",
            json={
                "outputs": [{"address": self._address(payment.address), "value": payment.amount}],
                "rate": self.fee_rate,
                "sign": True,
            },
        )
        if response.status_code >= 400:
            raise BitcoinRpcError(f"the wallet did not create the payment: {response.text[:200]}")
        body = response.json()
        return Signed(
            tx_hash=str(body["hash"]),
            raw=str(body["hex"]),
            fee_rate=self.fee_rate,
            fee=int(body.get("fee") or 0),
        )

    async def broadcast(self, raw: str) -> None:
        try:
            await self.rpc.call("sendrawtransaction", raw)
        except BitcoinRpcError as exc:
            text = str(exc).lower()
            if "already" in text or "txn-already" in text:
                return
            if "spent" in text or "conflict" in text or "missing" in text:
                raise BroadcastRefused(str(exc)) from None
            raise

    async def lookup(self, tx_hash: str) -> Lookup:
        response = await self._client.get(f"{self._wallet}/tx/{tx_hash}")
        if response.status_code >= 400 and response.status_code != 404:
            raise BitcoinRpcError(f"wallet tx {tx_hash}: HTTP {response.status_code}")
        # The wallet takes in a transaction a moment after the node: absent there, the
        # node's mempool may still hold it.
        body = response.json() if response.status_code == 200 else {}
        height = int(body.get("height", -1))
        if height >= 0 and body.get("block"):
            return Lookup(
                Seen.MINED,
                block_number=height,
                block_hash=str(body["block"]),
                fee=int(body.get("fee") or 0),
            )
        mempool = await self.rpc.call("getrawmempool")
        return Lookup(Seen.PENDING if tx_hash in (mempool or []) else Seen.UNKNOWN)

    async def aclose(self) -> None:
        await self._client.aclose()
        await self.rpc.aclose()
