"""Network fees of withdrawals, estimated before the request and shown in its quote.

EVM: the node's gas price times the transfer's gas limit (21,000 for ETH, 65,000 for a token
transfer), in gwei for ETH; for a token the ETH cost is turned into the token's base units
through the rate source (rounded up). BTC: the node's fee rate (sat/vB) times the size of a
one-input, two-output SegWit transaction. Without a node the configured fallbacks are used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from agent_server.kernel.logs import get_logger
from wallets.btc_rpc import BitcoinCoreRpc, BitcoinRpcError, to_satoshi
from wallets.currencies import Chain, currency_info
from wallets.rates import RateSource, usd_to_base_units

log = get_logger(__name__)

GAS_LIMIT = {"ETH": 21_000, "USDT": 65_000, "USDC": 65_000}
BTC_TRANSFER_VBYTES = 141  # one P2WPKH input, a payment and a change output
WEI_PER_GWEI = 10**9


class FeeSource(Protocol):
    """Where current fee levels come from."""

    async def evm_gas_price_wei(self) -> int: ...

    async def btc_fee_rate(self) -> int:
        """Satoshi per virtual byte."""
        ...


class FixedFees:
    """Fixed fee levels: the fallback without a node, and what tests set."""

    def __init__(self, gas_price_wei: int, btc_sat_per_vbyte: int) -> None:
        self.gas_price_wei = gas_price_wei
        self.btc_sat_per_vbyte = btc_sat_per_vbyte

    async def evm_gas_price_wei(self) -> int:
        return self.gas_price_wei

    async def btc_fee_rate(self) -> int:
        return self.btc_sat_per_vbyte


class NodeFees:
    """Fee levels read from the configured nodes, falling back to fixed ones when a node
    does not answer (logged, without the node's URL, which may carry a password)."""

    def __init__(
        self,
        evm_rpc_url: str | Callable[[], str | None] | None,
        btc_rpc_url: str | None,
        fallback: FixedFees,
    ):
        # The EVM node may be known only once the embedded chain runs: then a callable.
        self._evm_rpc_url = evm_rpc_url
        self.btc_rpc_url = btc_rpc_url.removeprefix("bcoin+") if btc_rpc_url else None
        self.fallback = fallback

    @property
    def evm_rpc_url(self) -> str | None:
        found = self._evm_rpc_url() if callable(self._evm_rpc_url) else self._evm_rpc_url
        return found or None

    async def evm_gas_price_wei(self) -> int:
        url = self.evm_rpc_url
        if not url:
            return await self.fallback.evm_gas_price_wei()
        # Imported only when a node is configured: web3 is the heaviest import of the server.
        from wallets.chains.anvil import connect

        w3: Any = connect(url)
        try:
            return max(1, int(await w3.eth.gas_price))
        except Exception as exc:  # any node failure falls back
            log.warning("withdrawals.gas_price_unavailable", error=type(exc).__name__)
            return await self.fallback.evm_gas_price_wei()
        finally:
            with contextlib.suppress(Exception):
                await w3.provider.disconnect()

    async def btc_fee_rate(self) -> int:
        if not self.btc_rpc_url:
            return await self.fallback.btc_fee_rate()
        rpc = BitcoinCoreRpc(self.btc_rpc_url, timeout=5.0)
        try:
            answer = await rpc.call("estimatesmartfee", 6)
            per_kvb = to_satoshi(answer["feerate"]) if isinstance(answer, dict) else 0
            if per_kvb > 0:
                return max(1, -(-per_kvb // 1000))
        except (BitcoinRpcError, KeyError, TypeError, ValueError) as exc:
            log.warning("withdrawals.fee_rate_unavailable", error=type(exc).__name__)
        finally:
            await rpc.aclose()
        return await self.fallback.btc_fee_rate()


async def estimate_network_fee(source: FeeSource, currency: str, rates: RateSource) -> int:
    """The network fee of sending ``currency``, in its base units (rounded up)."""
    info = currency_info(currency)
    if info.chain is Chain.BTC:
        return await source.btc_fee_rate() * BTC_TRANSFER_VBYTES
    wei = await source.evm_gas_price_wei() * GAS_LIMIT[info.code]
    gwei = -(-wei // WEI_PER_GWEI)
    if info.code == "ETH":
        return gwei
    eth_rate = rates.usd_micros_per_coin("ETH")
    gwei_per_eth = 10 ** currency_info("ETH").decimals
    usd = -(-gwei * eth_rate // gwei_per_eth)  # rounded up
    return usd_to_base_units(usd, info.code, rates.usd_micros_per_coin(info.code))
