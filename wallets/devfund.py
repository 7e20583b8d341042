"""``agent-server dev fund``: a real deposit on the development chain, confirmations mined.

Sends ETH, USDT or USDC from anvil's first development account to the agent's deposit
address on the embedded chain (found through its ``endpoint.json``) or on the node of
``Settings.evm_rpc_url`` when that is an anvil node, then mines the blocks that give the
deposit its ``Settings.confirmations``. BTC is sent from the embedded bcoin regtest node's
own wallet (mining its first spendable coins when it has none) and confirmed the same way.
The running watcher (``serve`` or ``watch-deposits``) credits it; ``wait_for_credit`` watches
the database for that.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from agent_server.kernel.config import Settings
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.store import Database
from wallets.addresses import deposit_address_for, wallet_keys
from wallets.btc import btc_network
from wallets.chains.anvil import connect, mine, send_value
from wallets.chains.bcoin import BcoinNode
from wallets.chains.tokens import transfer
from wallets.currencies import Chain, currency_info
from wallets.embedded import read_endpoint
from wallets.evm import evm_network
from wallets.holders import holder
from wallets.models import ChainToken, Deposit, DepositStatus


class NoDevelopmentChain(RuntimeError):
    """No embedded chain is running and no EVM node is configured."""


@dataclass(frozen=True)
class Funding:
    agent_id: int
    currency: str
    amount: int  # sent, in the chain's unit (wei for ETH)
    address: str
    tx_hash: str
    block_number: int
    network: str


async def fund_agent(
    settings: Settings,
    db: Database,
    agent_id: int,
    currency: str,
    amount: str,
    *,
    chain_dir: Path | None = None,
) -> Funding:
    """Send ``amount`` (whole coins, e.g. ``"25"``) of ``currency`` to the agent and mine its
    confirmations."""
    info = currency_info(currency)
    on_chain = info.parse_on_chain(amount)  # wei for ETH; credited in base units (gwei)
    endpoint = read_endpoint(chain_dir)
    if info.chain is Chain.BTC:
        return await _fund_bitcoin(settings, db, agent_id, on_chain, endpoint)
    rpc_url = settings.evm_rpc_url or (endpoint or {}).get("rpc_url")
    if not rpc_url:
        raise NoDevelopmentChain(
            "no development chain is running: start `agent-server serve` (make run) or "
            "`agent-server watch-deposits` first, or set AGENT_SERVER_EVM_RPC_URL"
        )
    address = await _deposit_address(db, settings, agent_id, info.code)
    w3 = connect(str(rpc_url))
    try:
        network = evm_network(int(await w3.eth.chain_id))
        if info.code == "ETH":
            tx_hash = await send_value(w3, address, on_chain)
        else:
            contract = await _token_contract(db, network, info.code, endpoint)
            tx_hash = await transfer(w3, contract, address, on_chain)
        receipt = await w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        await mine(w3, settings.confirmations - 1)
    finally:
        await w3.provider.disconnect()
    return Funding(
        agent_id=agent_id,
        currency=info.code,
        amount=on_chain,
        address=address,
        tx_hash=tx_hash,
        block_number=int(receipt["blockNumber"]),
        network=network,
    )


async def _deposit_address(db: Database, settings: Settings, agent_id: int, currency: str) -> str:
    async with db.uow() as uow:
        await holder(uow, agent_id)
        row = await deposit_address_for(uow, agent_id, currency, keys=wallet_keys(settings))
        await uow.commit()
    return row.address


async def _fund_bitcoin(
    settings: Settings,
    db: Database,
    agent_id: int,
    satoshi: int,
    endpoint: dict[str, object] | None,
) -> Funding:
    """Pay ``satoshi`` from the embedded bcoin node's wallet and mine its confirmations."""
    btc = (endpoint or {}).get("btc")
    if not isinstance(btc, dict):
        raise NoDevelopmentChain(
            "no development Bitcoin node is running: start `agent-server serve` (make run) or "
            "`agent-server watch-deposits` with neither AGENT_SERVER_EVM_RPC_URL nor "
            "AGENT_SERVER_BTC_RPC_URL set"
        )
    if settings.btc_network != btc.get("network"):
        raise ValidationFailed.field(
            "currency",
            f"the development Bitcoin node runs {btc.get('network')}, but "
            f"AGENT_SERVER_BTC_NETWORK is {settings.btc_network}",
        )
    address = await _deposit_address(db, settings, agent_id, "BTC")
    node = BcoinNode.attach(str(btc["node_url"]), str(btc["wallet_url"]), str(btc["api_key"]))
    await node.fund_wallet()
    await node.wait_spendable(satoshi + 100_000)  # and the fee
    txid = await node.send(address, satoshi)
    blocks = await node.mine(settings.confirmations)
    rpc = node.rpc()
    try:
        block = await rpc.get_block(blocks[0])
    finally:
        await rpc.aclose()
    return Funding(
        agent_id=agent_id,
        currency="BTC",
        amount=satoshi,
        address=address,
        tx_hash=txid,
        block_number=block.height,
        network=btc_network(settings.btc_network),
    )


async def _token_contract(
    db: Database, network: str, currency: str, endpoint: dict[str, object] | None
) -> str:
    async with db.uow() as uow:
        contract = (
            await uow.session.execute(
                select(ChainToken.contract).where(
                    ChainToken.network == network, ChainToken.currency == currency
                )
            )
        ).scalar_one_or_none()
    if contract is None and endpoint and endpoint.get("network") == network:
        tokens = endpoint.get("tokens")
        if isinstance(tokens, dict):
            contract = tokens.get(currency)
    if contract is None:
        raise NoDevelopmentChain(f"no {currency} token is known on {network}")
    return str(contract)


async def wait_for_credit(db: Database, funding: Funding) -> Deposit:
    """The deposit once the watcher has credited it (or refused it as below the minimum).

    Polls until then: wrap it in ``asyncio.timeout`` to bound the wait.
    """
    while True:
        async with db.uow() as uow:
            deposit = (
                await uow.session.execute(
                    select(Deposit).where(
                        Deposit.network == funding.network, Deposit.tx_hash == funding.tx_hash
                    )
                )
            ).scalar_one_or_none()
            if deposit is not None and deposit.status != DepositStatus.PENDING:
                uow.session.expunge(deposit)
                return deposit
        await asyncio.sleep(0.5)
