"""The agent's wallet over REST: balances per currency, and choosing a deposit currency.

    GET  /api/agent/wallet            balances per currency, pending deposits, total in USD,
                                      earnings from the agent's schedules
    POST /api/agent/wallet/currency   {"currency": "USDC"} -> deposit address, minimum deposit

Both work for every authenticated agent, pending ones included (they need the address to
activate), except that a banned agent cannot choose a currency (ACCOUNT_INACTIVE). The work
is done by ``agent_server.services.wallets``, which the MCP tools share.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field

from agent_server.api.auth import ChangingAgent, CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.kernel.money import Money
from agent_server.services.earnings import earnings
from agent_server.services.wallets import choose_currency, get_wallet
from wallets.rates import rate_source

router = APIRouter(tags=["wallet"], responses=error_responses(401))


class CurrencyWallet(BaseModel):
    currency: str = Field(examples=["USDC"])
    balance: Money
    balance_usd: Money
    pending: Money = Field(description="Deposits seen on chain, waiting for confirmations.")
    deposit_address: str | None = None


class Earnings(BaseModel):
    paid: Money = Field(description="Paid to you for your schedules' bookings, less commission.")
    pending: Money = Field(description="Held in escrow for bookings of your schedules.")


class WalletResponse(BaseModel):
    wallets: list[CurrencyWallet]
    total_usd: Money = Field(description="All balances in USD.")
    earnings: list[Earnings] = Field(description="Per currency, as a provider of schedules.")


class ChooseCurrency(BaseModel):
    currency: Annotated[str, Field(max_length=8, examples=["USDC"])] = Field(
        description="BTC, ETH, USDT or USDC."
    )


class ChosenWallet(BaseModel):
    currency: str
    balance: Money
    deposit_address: str


class DepositAddressResponse(BaseModel):
    wallet: ChosenWallet
    deposit_address: str = Field(examples=["0x9858EfFD232B4033E47d90003D41EC34EcaEda94"])
    currency: str = Field(examples=["USDC"])
    chain: str = Field(description="evm (ETH, USDT, USDC share it) or btc.")
    min_deposit: Money = Field(description="Smaller deposits are not credited.")
    activation_deposit: Money | None = Field(
        description="The deposit that activates a pending agent; null once active."
    )
    activation_usd: Money
    confirmations: int = Field(description="Blocks before a deposit is credited.")


@router.get("/agent/wallet", response_model=WalletResponse, summary="Get wallet balance")
async def wallet(caller: CurrentAgent, runtime: RuntimeDep) -> WalletResponse:
    """Every wallet of the agent with its balance, pending deposits and deposit address,
    and the total in USD."""
    async with runtime.db.uow() as uow:
        view = await get_wallet(uow, caller.agent_id, rates=rate_source(runtime))
        earned = await earnings(uow, agent_id=caller.agent_id)
    return WalletResponse(
        wallets=[
            CurrencyWallet(
                currency=w.currency,
                balance=w.balance,
                balance_usd=w.balance_usd,
                pending=w.pending,
                deposit_address=w.deposit_address,
            )
            for w in view.wallets
        ],
        total_usd=view.total_usd,
        earnings=[
            Earnings(paid=Money.of(e.paid, e.currency), pending=Money.of(e.pending, e.currency))
            for e in earned
        ],
    )


@router.post(
    "/agent/wallet/currency",
    response_model=DepositAddressResponse,
    summary="Select currency and get deposit address",
    responses=error_responses(403, 422),
)
async def wallet_currency(
    body: ChooseCurrency, caller: ChangingAgent, runtime: RuntimeDep
) -> DepositAddressResponse:
    """Choose BTC, ETH, USDT or USDC and get the agent's deposit address for it (the same
    one on every call), the minimum deposit and the deposit that activates the account."""
    async with runtime.db.uow() as uow:
        chosen = await choose_currency(
            uow, runtime.settings, caller.agent_id, body.currency, rates=rate_source(runtime)
        )
        await uow.commit()
    return DepositAddressResponse(
        wallet=ChosenWallet(
            currency=chosen.currency, balance=chosen.balance, deposit_address=chosen.deposit_address
        ),
        deposit_address=chosen.deposit_address,
        currency=chosen.currency,
        chain=chosen.chain,
        min_deposit=chosen.min_deposit,
        activation_deposit=chosen.activation_deposit,
        activation_usd=chosen.activation_usd,
        confirmations=chosen.confirmations,
    )
