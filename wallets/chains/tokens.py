"""The test stablecoins (USDT, USDC: 6 decimals) compiled from Vyper and deployed on a dev chain.

``wallets/contracts/test_token.vy`` is compiled with the ``vyper`` package at run time (a
development dependency), so the bytecode always matches the source in the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from web3 import AsyncWeb3

from agent_server.kernel.recursion import restore_recursion_limit
from wallets.chains.anvil import DEV_ACCOUNT, SENDER_ACCOUNT
from wallets.chains.processes import ChainProcessError

restore_recursion_limit()  # importing web3 raised it (py_ecc)

CONTRACT_SOURCE = Path(__file__).resolve().parent.parent / "contracts" / "test_token.vy"
TEST_TOKENS = {"USDT": "Tether USD (test)", "USDC": "USD Coin (test)"}


@dataclass(frozen=True)
class CompiledContract:
    abi: list[dict[str, Any]]
    bytecode: str


@lru_cache(maxsize=1)
def compiled_test_token() -> CompiledContract:
    """ABI and bytecode of the test token, compiled once per process."""
    try:
        from vyper.compiler import compile_code
    except ImportError as exc:  # pragma: no cover - vyper is a development dependency
        raise ChainProcessError(
            "the test tokens need the vyper compiler: pip install -e '.[dev]'"
        ) from exc
    out = compile_code(CONTRACT_SOURCE.read_text(), output_formats=["abi", "bytecode"])
    return CompiledContract(abi=out["abi"], bytecode=out["bytecode"])


async def _mined(w3: AsyncWeb3[Any], tx_hash: Any) -> Any:
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    if receipt["status"] != 1:
        raise ChainProcessError(f"transaction {tx_hash.to_0x_hex()} reverted")
    return receipt


async def deploy_token(
    w3: AsyncWeb3[Any], name: str, symbol: str, deployer: str = DEV_ACCOUNT
) -> str:
    """Deploy one test token; its checksummed address."""
    compiled = compiled_test_token()
    factory = w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    tx_hash = await factory.constructor(name, symbol).transact({"from": deployer})
    receipt = await _mined(w3, tx_hash)
    return str(receipt["contractAddress"])


INITIAL_SUPPLY = 10**9 * 10**6  # a billion tokens for the deployer to hand out


async def deploy_test_tokens(w3: AsyncWeb3[Any], deployer: str = DEV_ACCOUNT) -> dict[str, str]:
    """Deploy USDT and USDC, minting a supply to the deployer; currency -> contract address."""
    deployed = {}
    for symbol, name in TEST_TOKENS.items():
        contract = await deploy_token(w3, name, symbol, deployer)
        await mint(w3, contract, deployer, INITIAL_SUPPLY, owner=deployer)
        deployed[symbol] = contract
    return deployed


async def fund_sender_tokens(w3: AsyncWeb3[Any], tokens: dict[str, str]) -> None:
    """Mint each test token to the withdrawal sender's account (anvil gives it ETH) when it
    holds none, so the embedded chain's hot wallet can pay token withdrawals too."""
    for contract in tokens.values():
        held = await token(w3, contract).functions.balanceOf(SENDER_ACCOUNT).call()
        if int(held) == 0:
            await mint(w3, contract, SENDER_ACCOUNT, INITIAL_SUPPLY)


def token(w3: AsyncWeb3[Any], contract: str) -> Any:
    """A web3 contract object for a deployed test token."""
    return w3.eth.contract(
        address=AsyncWeb3.to_checksum_address(contract), abi=compiled_test_token().abi
    )


async def mint(
    w3: AsyncWeb3[Any], contract: str, to: str, amount: int, owner: str = DEV_ACCOUNT
) -> str:
    """Mint ``amount`` base units to ``to`` (one Transfer log from the zero address)."""
    call = token(w3, contract).functions.mint(AsyncWeb3.to_checksum_address(to), amount)
    receipt = await _mined(w3, await call.transact({"from": owner}))
    return str(receipt["transactionHash"].to_0x_hex())


async def transfer(
    w3: AsyncWeb3[Any], contract: str, to: str, amount: int, sender: str = DEV_ACCOUNT
) -> str:
    call = token(w3, contract).functions.transfer(AsyncWeb3.to_checksum_address(to), amount)
    receipt = await _mined(w3, await call.transact({"from": sender}))
    return str(receipt["transactionHash"].to_0x_hex())


async def transfer_many(
    w3: AsyncWeb3[Any],
    contract: str,
    payments: list[tuple[str, int]],
    sender: str = DEV_ACCOUNT,
) -> str:
    """One transaction with one Transfer log per (recipient, amount)."""
    call = token(w3, contract).functions.transferMany(
        [AsyncWeb3.to_checksum_address(to) for to, _ in payments],
        [amount for _, amount in payments],
    )
    receipt = await _mined(w3, await call.transact({"from": sender}))
    return str(receipt["transactionHash"].to_0x_hex())


async def has_code(w3: AsyncWeb3[Any], contract: str) -> bool:
    return len(await w3.eth.get_code(AsyncWeb3.to_checksum_address(contract))) > 0
