"""Helpers for the chain tests: agents, watchers on a fresh database, balances."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select
from web3 import AsyncWeb3

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.kernel.store import Database
from agent_server.services.deposits import DEPOSIT_FOLLOW_UP
from billing.wallet_funds import balances
from wallets.addresses import DEV_XPUB_BTC, DEV_XPUB_ETH, WalletKeys, deposit_address_for
from wallets.evm import EvmSource
from wallets.models import ChainToken, Deposit
from wallets.rates import FakeRateSource
from wallets.watcher import DepositWatcher

KEYS = WalletKeys(DEV_XPUB_ETH, DEV_XPUB_BTC, "regtest")
ACTIVATION = 20_000_000  # 20 USD


def rates() -> FakeRateSource:
    return FakeRateSource(
        {"BTC": 60_000_000_000, "ETH": 3_000_000_000, "USDT": 1_000_000, "USDC": 1_000_000}
    )


async def make_agent(
    db: Database, name: str = "agent", status: AgentStatus = AgentStatus.PENDING_DEPOSIT
) -> int:
    async with db.uow() as uow:
        now = uow.clock.now()
        token = secrets.token_hex(6)
        agent = Agent(
            name=name,
            email=f"{name}-{token}@example.com",
            email_verified=True,
            status=status.value,
            api_key_hash=secrets.token_hex(32),
            api_key_prefix="as_" + token,
            profile={},
            created_at=now,
            updated_at=now,
        )
        uow.session.add(agent)
        await uow.flush()
        await uow.commit()
        return agent.id


async def address_of(db: Database, agent_id: int, currency: str) -> str:
    async with db.uow() as uow:
        address = await deposit_address_for(uow, agent_id, currency, keys=KEYS)
        await uow.commit()
    return address.address


async def register_tokens(db: Database, network: str, tokens: dict[str, str]) -> None:
    async with db.uow() as uow:
        for currency, contract in tokens.items():
            uow.session.add(
                ChainToken(network=network, currency=currency, contract=contract, decimals=6)
            )
        await uow.commit()


async def evm_watcher(
    db: Database,
    w3: AsyncWeb3[Any],
    tokens: dict[str, str],
    *,
    confirmations: int = 3,
    batch_blocks: int = 50,
) -> DepositWatcher:
    """A watcher of the session's anvil on ``db``, starting after the current tip."""
    source = EvmSource(w3, int(await w3.eth.chain_id))
    await register_tokens(db, source.network, tokens)
    return DepositWatcher(
        db,
        source,
        rates=rates(),
        confirmations=confirmations,
        activation_usd_micros=ACTIVATION,
        follow_up=DEPOSIT_FOLLOW_UP,
        batch_blocks=batch_blocks,
        start_block=int(await w3.eth.block_number) + 1,
    )


async def balance(db: Database, agent_id: int, currency: str) -> int:
    async with db.uow() as uow:
        return (await balances(uow, agent_id)).get(currency, 0)


async def status_of(db: Database, agent_id: int) -> str:
    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        return agent.status


async def deposits(db: Database) -> list[Deposit]:
    async with db.uow() as uow:
        rows = list((await uow.session.execute(select(Deposit).order_by(Deposit.id))).scalars())
        uow.session.expunge_all()  # keep them readable after the session ends
        return rows
