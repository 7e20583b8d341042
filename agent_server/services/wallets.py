"""The wallet surface: balances per currency with their USD value, and deposit instructions.

It composes the wallets (addresses, pending deposits) with billing's ledger (balances, opening
a currency's wallet), so it lives in the service layer.

Plain async functions over a ``UnitOfWork``, called by REST (``/api/agent/wallet``,
``/api/agent/wallet/currency``) and by the MCP tools ``get-wallet`` and
``get-deposit-address``::

    async def get_wallet(uow, agent_id: int, *, rates: RateSource) -> WalletView
    async def choose_currency(uow, settings, agent_id: int, currency: str,
                              *, rates: RateSource) -> DepositInstructions

``choose_currency`` allocates the address on first use and opens the ledger wallet for the
currency: the caller commits. Amounts are ``Money``: the integer in base units (gwei for ETH),
its currency and its text (``agent_server.kernel.money``). Pending deposits, summed as they
arrived on chain, are shown in base units rounded down, as crediting rounds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from agent_server.kernel.config import Settings
from agent_server.kernel.money import USD, Money
from agent_server.kernel.store import UnitOfWork
from billing.ledger import open_wallet
from billing.wallet_funds import balances
from wallets.addresses import agent_addresses, deposit_address_for, wallet_keys
from wallets.currencies import CURRENCIES, currency_info
from wallets.holders import holder
from wallets.models import Deposit, DepositStatus
from wallets.rates import RateSource, base_units_to_usd, usd_to_base_units


@dataclass(frozen=True)
class CurrencyBalance:
    currency: str
    balance: Money
    balance_usd: Money
    pending: Money  # deposits seen on chain, waiting for confirmations
    deposit_address: str | None


@dataclass(frozen=True)
class WalletView:
    agent_id: int
    wallets: list[CurrencyBalance]
    total_usd: Money


@dataclass(frozen=True)
class DepositInstructions:
    currency: str
    deposit_address: str
    chain: str  # evm | btc
    min_deposit: Money  # smaller deposits are not credited
    activation_deposit: Money | None  # what activates a pending agent; None once active
    activation_usd: Money
    confirmations: int
    balance: Money


async def get_wallet(uow: UnitOfWork, agent_id: int, *, rates: RateSource) -> WalletView:
    """Balances per currency (ledger), pending deposits and addresses, and the USD total."""
    await holder(uow, agent_id)
    held = await balances(uow, agent_id)
    addresses = await agent_addresses(uow, agent_id)
    pending_rows = await uow.session.execute(
        select(Deposit.currency, Deposit.amount).where(
            Deposit.agent_id == agent_id, Deposit.status == DepositStatus.PENDING
        )
    )
    pending: dict[str, int] = {}
    for code, amount in pending_rows:
        pending[code] = pending.get(code, 0) + int(amount)
    # Open ledger wallets in paying order, then currencies with only unconfirmed deposits.
    codes = list(held) + [code for code in CURRENCIES if code in pending and code not in held]
    wallets = []
    total = 0
    for code in codes:
        info = currency_info(code)
        amount = held.get(code, 0)
        usd = base_units_to_usd(amount, code, rates.usd_micros_per_coin(code)) if amount else 0
        total += usd
        record = addresses.get(info.chain.value)
        wallets.append(
            CurrencyBalance(
                currency=code,
                balance=Money.of(amount, code),
                balance_usd=Money.of(usd, USD),
                pending=Money.of(info.chain_to_base(pending.get(code, 0))[0], code),
                deposit_address=record.address if record else None,
            )
        )
    return WalletView(agent_id=agent_id, wallets=wallets, total_usd=Money.of(total, USD))


async def choose_currency(
    uow: UnitOfWork, settings: Settings, agent_id: int, currency: str, *, rates: RateSource
) -> DepositInstructions:
    """The agent's deposit address for ``currency`` (allocated on first use), the minimum
    deposit, and what activates a pending agent. Opens the currency's wallet. Does not commit.
    """
    info = currency_info(currency)
    agent = await holder(uow, agent_id)
    address = await deposit_address_for(uow, agent_id, info.code, keys=wallet_keys(settings))
    await open_wallet(uow, agent_id, info.code)
    activation: Money | None = None
    if agent.awaiting_activation:
        needed = usd_to_base_units(
            settings.activation_usd_micros, info.code, rates.usd_micros_per_coin(info.code)
        )
        quantum = 10 ** max(info.decimals - 8, 0)  # at most 8 decimals, rounded up
        activation = Money.of(max(-(-needed // quantum) * quantum, info.min_deposit), info.code)
    held = (await balances(uow, agent_id)).get(info.code, 0)
    return DepositInstructions(
        currency=info.code,
        deposit_address=address.address,
        chain=address.chain,
        min_deposit=Money.of(info.min_deposit, info.code),
        activation_deposit=activation,
        activation_usd=Money.of(settings.activation_usd_micros, USD),
        confirmations=settings.confirmations,
        balance=Money.of(held, info.code),
    )
