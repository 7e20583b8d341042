"""A Bitcoin-Core-compatible JSON-RPC client (httpx), narrowed to what the BTC watcher reads.

The watcher depends on the ``BitcoinRpc`` protocol only::

    get_block_count() -> int             getblockcount
    get_block_hash(height) -> str|None   getblockhash (None above the tip)
    get_block(hash) -> BtcBlock          getblock <hash> 2 (transactions with outputs)

``BitcoinCoreRpc`` speaks to Bitcoin Core. ``BcoinRpc`` speaks to bcoin, whose ``getblock``
takes ``verbose, details`` booleans instead of a verbosity level, lists output addresses as
``addresses`` and writes regtest bech32 addresses with its own ``rb`` prefix; it answers with
the same ``BtcBlock`` as Bitcoin Core would (``bcrt`` addresses). Amounts are parsed from the
JSON text as decimals and turned into satoshi exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

SATOSHI_PER_BTC = 100_000_000


class BitcoinRpcError(RuntimeError):
    """The node answered with an error or could not be reached."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BtcOutput:
    vout: int
    address: str | None
    satoshi: int


@dataclass(frozen=True)
class BtcTransaction:
    txid: str
    outputs: tuple[BtcOutput, ...]


@dataclass(frozen=True)
class BtcBlock:
    hash: str
    height: int
    previous_hash: str | None
    transactions: tuple[BtcTransaction, ...]


class BitcoinRpc(Protocol):
    """What the BTC watcher needs from a node."""

    async def get_block_count(self) -> int: ...

    async def get_block_hash(self, height: int) -> str | None: ...

    async def get_block(self, block_hash: str) -> BtcBlock: ...

    async def aclose(self) -> None: ...


def to_satoshi(value: Any) -> int:
    """A BTC amount from JSON (parsed as Decimal) in satoshi, exactly."""
    amount = Decimal(str(value)) * SATOSHI_PER_BTC
    if amount != amount.to_integral_value():
        raise BitcoinRpcError(f"amount {value} has more than 8 decimals")
    return int(amount)


def reencode_bech32(address: str, from_hrp: str, to_hrp: str) -> str:
    """The same segwit program under another human-readable prefix (``rb1...`` ↔ ``bcrt1...``)."""
    if not address.lower().startswith(from_hrp + "1"):
        return address
    # Imported here: bip_utils loads hundreds of modules a server that only quotes fees or
    # reads blocks never needs.
    from bip_utils import Bech32ChecksumError, SegwitBech32Decoder, SegwitBech32Encoder

    try:
        version, program = SegwitBech32Decoder.Decode(from_hrp, address)
    except (ValueError, Bech32ChecksumError):
        # Not bech32 after all: a base58 address can start with the same three letters
        # (bcoin's regtest P2PKH and P2SH addresses start with R), e.g. RB1HVprBk...
        return address
    return str(SegwitBech32Encoder.Encode(to_hrp, version, program))


class BitcoinCoreRpc:
    """JSON-RPC to Bitcoin Core (``http://user:pass@host:port``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        import httpx  # loaded on first use: a server that never calls out does without it

        parsed = httpx.URL(url)
        auth = None
        if parsed.username or parsed.password:
            auth = httpx.BasicAuth(parsed.username, parsed.password)
            parsed = parsed.copy_with(username=None, password=None)
        self.url = str(parsed)
        self._client = httpx.AsyncClient(auth=auth, timeout=timeout)
        self._ids = 0

    async def call(self, method: str, *params: Any) -> Any:
        import httpx

        self._ids += 1
        try:
            response = await self._client.post(
                self.url,
                json={
                    "jsonrpc": "1.0",
                    "id": self._ids,
                    "method": method,
                    "params": list(params),
                },
            )
        except httpx.HTTPError as exc:
            raise BitcoinRpcError(f"{method}: node unreachable ({type(exc).__name__})") from exc
        try:
            body = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise BitcoinRpcError(f"{method}: HTTP {response.status_code}") from None
        error = body.get("error") if isinstance(body, dict) else None
        if error:
            if isinstance(error, dict):
                raise BitcoinRpcError(f"{method}: {error.get('message')}", error.get("code"))
            raise BitcoinRpcError(f"{method}: {error}")
        if response.status_code >= 400:
            raise BitcoinRpcError(f"{method}: HTTP {response.status_code}")
        return body.get("result")

    async def get_block_count(self) -> int:
        return int(await self.call("getblockcount"))

    async def get_block_hash(self, height: int) -> str | None:
        if height < 0 or height > await self.get_block_count():
            return None
        try:
            return str(await self.call("getblockhash", height))
        except BitcoinRpcError as exc:
            if exc.code == -8:  # out of range: the tip moved back meanwhile
                return None
            raise

    async def _raw_block(self, block_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getblock", block_hash, 2)
        return result

    def _address(self, script_pub_key: dict[str, Any]) -> str | None:
        if "address" in script_pub_key:
            return str(script_pub_key["address"])
        addresses = script_pub_key.get("addresses") or []
        return str(addresses[0]) if len(addresses) == 1 else None

    async def get_block(self, block_hash: str) -> BtcBlock:
        raw = await self._raw_block(block_hash)
        transactions = []
        for tx in raw.get("tx", []):
            outputs = tuple(
                BtcOutput(
                    vout=int(out["n"]),
                    address=self._address(out.get("scriptPubKey", {})),
                    satoshi=to_satoshi(out["value"]),
                )
                for out in tx.get("vout", [])
            )
            transactions.append(BtcTransaction(txid=str(tx["txid"]), outputs=outputs))
        return BtcBlock(
            hash=str(raw["hash"]),
            height=int(raw["height"]),
            previous_hash=raw.get("previousblockhash"),
            transactions=tuple(transactions),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class BcoinRpc(BitcoinCoreRpc):
    """bcoin's node RPC, answered in Bitcoin Core's terms."""

    def __init__(self, url: str, *, network: str = "regtest", timeout: float = 30.0) -> None:
        super().__init__(url, timeout=timeout)
        self.network = network

    async def _raw_block(self, block_hash: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("getblock", block_hash, True, True)
        return result

    def _address(self, script_pub_key: dict[str, Any]) -> str | None:
        address = super()._address(script_pub_key)
        if address is not None and self.network == "regtest":
            return reencode_bech32(address, "rb", "bcrt")
        return address
