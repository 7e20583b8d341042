"""Registering an agent: the account (``agent_server.accounts``) with its deposit address and
the deposit that activates it (``wallets``), in one transaction; the verification code is
mailed after the commit.

    async def register_agent(uow, settings, data, *, client_ip=None, rates=None) -> Registration
    async def wallet_info(uow, settings, agent_id, currency, rates=None) -> WalletInfo
"""

from __future__ import annotations

from dataclasses import dataclass

from agent_server.accounts.models import Agent
from agent_server.accounts.schemas import DEFAULT_CURRENCY, RegisterAgent
from agent_server.accounts.service import create_agent, limit_ip, mail_code
from agent_server.kernel.config import Settings
from agent_server.kernel.logs import get_logger
from agent_server.kernel.money import decimal_text, usd_decimal
from agent_server.kernel.store import UnitOfWork
from wallets.addresses import deposit_address_for, wallet_keys
from wallets.currencies import currency_info
from wallets.rates import RateSource, StaticRateSource, usd_to_base_units

log = get_logger(__name__)


@dataclass(frozen=True)
class WalletInfo:
    """Where to send the activation deposit, and how much at least."""

    currency: str
    deposit_address: str
    minimum_deposit: str  # whole coins, e.g. "20" USDT or "0.00033334" BTC
    minimum_deposit_usd: str  # e.g. "20.00"


async def wallet_info(
    uow: UnitOfWork,
    settings: Settings,
    agent_id: int,
    currency: str | None,
    rates: RateSource | None = None,
) -> WalletInfo:
    """The agent's deposit address in its currency and the deposit that activates it.

    Runs in the caller's transaction (the address is allocated on first use).
    """
    code = currency or DEFAULT_CURRENCY
    info = currency_info(code)
    address = await deposit_address_for(uow, agent_id, info.code, keys=wallet_keys(settings))
    rate = (rates or StaticRateSource()).usd_micros_per_coin(info.code)
    needed = max(usd_to_base_units(settings.activation_usd_micros, info.code, rate), 1)
    # Rounded up to at most 8 decimals, so the amount is easy to type and still enough.
    quantum = 10 ** max(info.decimals - 8, 0)
    needed = -(-needed // quantum) * quantum
    return WalletInfo(
        currency=info.code,
        deposit_address=address.address,
        minimum_deposit=decimal_text(max(needed, info.min_deposit), info.code),
        minimum_deposit_usd=usd_decimal(settings.activation_usd_micros),
    )


@dataclass(frozen=True)
class Registration:
    """A new agent, its API key (shown once) and where to fund it."""

    agent: Agent
    api_key: str
    wallet: WalletInfo
    mail_sent: bool


async def register_agent(
    uow: UnitOfWork,
    settings: Settings,
    data: RegisterAgent,
    *,
    client_ip: str | None = None,
    rates: RateSource | None = None,
) -> Registration:
    """Create a ``pending_deposit`` agent, mail its verification code, allocate its address."""
    await limit_ip(uow.db, "registration", client_ip, settings.register_per_ip_per_hour)
    async with uow:
        new = await create_agent(uow, settings, data)
        agent = new.agent
        wallet = await wallet_info(uow, settings, agent.id, agent.currency, rates)
        await uow.commit()
    log.info("agent.registered", agent_id=agent.id, key_prefix=agent.api_key_prefix)
    sent = await mail_code(settings, uow.db, agent.email, new.code)
    return Registration(agent=agent, api_key=new.api_key, wallet=wallet, mail_sent=sent)
