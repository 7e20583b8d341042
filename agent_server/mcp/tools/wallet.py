"""Tools for the calling agent's money: wallet, deposit address, history, usage, quotes."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.inputs import Text
from agent_server.kernel.money import USD, Money
from agent_server.mcp.pipeline import ToolContext
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import Input, Paid
from agent_server.services import limits as limits_svc
from agent_server.services import wallet_history
from agent_server.services import wallets as wallet_svc
from agent_server.services.earnings import Earnings, earnings
from billing import meter
from billing.meter import ExtraPrice

Currency = Literal["BTC", "ETH", "USDT", "USDC"]


class CurrencyBalanceOut(BaseModel):
    currency: str
    balance: Money
    balance_usd: Money
    pending: Money = Field(description="Deposits seen on chain, waiting for confirmations.")
    deposit_address: str | None


class EarningsOut(BaseModel):
    paid: Money = Field(description="Paid to you, less commission.")
    pending: Money = Field(description="Held in escrow for your sessions.")


class WalletOut(Paid):
    agent_id: int
    wallets: list[CurrencyBalanceOut]
    total_usd: Money
    earnings: list[EarningsOut]


class NoInput(Input):
    """No arguments."""


@REGISTRY.tool(
    "get-wallet",
    title="Your balances",
    toolset="wallet",
    input_model=NoInput,
    output_model=WalletOut,
    read_only=True,
    idempotent=True,
)
async def get_wallet(ctx: ToolContext, args: NoInput) -> WalletOut:
    """Your balances (also in USD), pending deposits, deposit addresses, and earnings from
    your schedules."""
    view = await wallet_svc.get_wallet(ctx.uow, ctx.agent_id, rates=ctx.runtime.billing.rates)
    earned = await earnings(ctx.uow, agent_id=ctx.agent_id)
    return WalletOut.model_validate({**asdict(view), "earnings": [earnings_out(e) for e in earned]})


def earnings_out(earned: Earnings) -> EarningsOut:
    return EarningsOut(
        paid=Money.of(earned.paid, earned.currency),
        pending=Money.of(earned.pending, earned.currency),
    )


class DepositAddressIn(Input):
    currency: Currency


class DepositAddressOut(Paid):
    currency: str
    deposit_address: str = Field(description="Send only this currency to this address.")
    chain: str = Field(description="evm (ETH and the ERC-20 tokens) or btc.")
    min_deposit: Money = Field(description="Smaller deposits are not credited.")
    activation_deposit: Money | None = Field(
        description="What activates a pending account; null once active."
    )
    activation_usd: Money
    confirmations: int = Field(description="Blocks before a deposit is credited.")
    balance: Money


@REGISTRY.tool(
    "get-deposit-address",
    title="Where to send funds",
    toolset="wallet",
    input_model=DepositAddressIn,
    output_model=DepositAddressOut,
    read_only=False,
    idempotent=True,
)
async def get_deposit_address(ctx: ToolContext, args: DepositAddressIn) -> DepositAddressOut:
    """Your deposit address for a currency (always the same), the minimum deposit and the
    confirmations before it is credited."""
    info = await wallet_svc.choose_currency(
        ctx.uow, ctx.runtime.settings, ctx.agent_id, args.currency, rates=ctx.runtime.billing.rates
    )
    return DepositAddressOut.model_validate(asdict(info))


class ListTransactionsIn(Input):
    cursor: Annotated[Text | None, Field(max_length=200)] = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50


class TransactionsOut(Paid, wallet_history.TransactionsOut):
    pass


@REGISTRY.tool(
    "list-transactions",
    title="Your ledger history",
    toolset="wallet",
    input_model=ListTransactionsIn,
    output_model=TransactionsOut,
    read_only=True,
    idempotent=True,
)
async def list_transactions(ctx: ToolContext, args: ListTransactionsIn) -> TransactionsOut:
    """Your wallet's ledger, newest first (page with next_cursor): deposits, charges, holds,
    escrow, refunds, payouts, adjustments."""
    page = await wallet_history.transactions_of(
        ctx.uow, ctx.agent_id, cursor=args.cursor, limit=args.limit
    )
    return TransactionsOut.model_validate(page, from_attributes=True)


class UsageIn(Input):
    period: Annotated[
        str | None,
        Field(
            pattern=r"^\d{4}-(0[1-9]|1[0-2])$",
            description="YYYY-MM (UTC); default this month.",
        ),
    ] = None


class UsageOut(Paid, wallet_history.UsageOut):
    pass


@REGISTRY.tool(
    "get-usage",
    title="Your usage per tool",
    toolset="wallet",
    input_model=UsageIn,
    output_model=UsageOut,
    read_only=True,
    idempotent=True,
)
async def get_usage(ctx: ToolContext, args: UsageIn) -> UsageOut:
    """Calls and charges per tool for one calendar month (UTC)."""
    found = await wallet_history.usage_of(ctx.uow, ctx.agent_id, args.period)
    return UsageOut.model_validate(found, from_attributes=True)


class QuoteIn(Input):
    tool: Annotated[Text, Field(max_length=64, description="e.g. book-slot.")]
    slot_id: Annotated[
        Text | None,
        Field(max_length=64, description="book-slot: adds the slot's price."),
    ] = None


class QuoteOut(Paid):
    tool: str
    price_usd: Money
    amount: Money = Field(description="What the call would cost, from the wallet that would pay.")
    balance: Money
    balance_after: Money
    sufficient: bool
    free: bool = Field(description="True when the monthly free quota covers it.")
    free_remaining: int | None
    rate: Money = Field(description="USD price of one coin of that wallet.")


@REGISTRY.tool(
    "quote",
    title="What a call would cost",
    toolset="wallet",
    input_model=QuoteIn,
    output_model=QuoteOut,
    read_only=True,
    idempotent=True,
)
async def quote(ctx: ToolContext, args: QuoteIn) -> QuoteOut:
    """What a call of a tool would cost you now, which wallet would pay, and your balance
    after."""
    if args.tool not in REGISTRY.specs:
        raise NotFound(f"no tool is named {args.tool!r}", {"tools": sorted(REGISTRY.specs)})
    extra: ExtraPrice | None = None
    if args.slot_id is not None:
        if args.tool not in ("book-slot", "reschedule-booking"):
            raise ValidationFailed.field("slot_id", "only book-slot quotes take a slot_id")
        from agent_server.booking import schedules as schedule_svc
        from agent_server.booking.availability import parse_slot_id

        schedule_id, _ = parse_slot_id(args.slot_id)
        price = await schedule_svc.schedule_price(
            ctx.uow, schedule_id, schedule_svc.ScheduleOwner.agent(ctx.agent_id)
        )
        if price is not None and args.tool == "book-slot":
            extra = ExtraPrice(amount=price[0], currency=price[1])
    result = await meter.quote_in(
        ctx.uow,
        agent_id=ctx.agent_id,
        tool=args.tool,
        extra_price=extra,
        config=ctx.runtime.billing,
    )
    return QuoteOut(
        tool=result.tool,
        price_usd=Money.of(result.price_usd_micros, USD),
        amount=Money.of(result.amount, result.currency),
        balance=Money.of(result.balance, result.currency),
        balance_after=Money.of(result.balance_after, result.currency),
        sufficient=result.sufficient,
        free=result.free,
        free_remaining=result.free_remaining,
        rate=Money.of(result.rate, USD),
    )


Micros = Annotated[int, Field(ge=0, le=2**63 - 1)]


class SpendingLimitsOut(BaseModel):
    daily_cap_usd_micros: int | None = Field(description="null: no cap.")
    monthly_cap_usd_micros: int | None
    spent_today_usd_micros: int = Field(description="Net of refunds; UTC day.")
    spent_this_month_usd_micros: int
    day_resets_at: datetime
    month_resets_at: datetime
    balance_low_usd_micros: int = Field(description="balance.low fires below this.")
    raise_pending: bool = Field(description="A raise waits for the owner's mailed code.")
    daily_withdrawal_limit_usd_micros: int | None
    monthly_withdrawal_limit_usd_micros: int | None
    withdrawn_today_usd_micros: int
    withdrawn_this_month_usd_micros: int


@REGISTRY.tool(
    "get-spending-limits",
    title="Your spending caps",
    toolset="wallet",
    input_model=NoInput,
    output_model=SpendingLimitsOut,
    read_only=True,
    idempotent=True,
)
async def get_spending_limits(ctx: ToolContext, args: NoInput) -> SpendingLimitsOut:
    """Your owner's daily and monthly spending caps and withdrawal limits, spent and withdrawn
    so far, reset times, and the low-balance threshold (USD micros)."""
    view = await limits_svc.limits(ctx.uow, ctx.agent_id, ctx.runtime.billing)
    return SpendingLimitsOut.model_validate(view.to_dict())


class SetSpendingLimitsIn(Input):
    daily_cap_usd_micros: Micros | None = Field(default=None, description="New lower cap.")
    monthly_cap_usd_micros: Micros | None = Field(default=None, description="New lower cap.")
    balance_low_usd_micros: Micros | None = Field(default=None, description="Threshold.")
    daily_withdrawal_limit_usd_micros: Micros | None = Field(default=None, description="Lower.")
    monthly_withdrawal_limit_usd_micros: Micros | None = Field(default=None, description="Lower.")


@REGISTRY.tool(
    "set-spending-limits",
    title="Lower your spending caps",
    toolset="wallet",
    input_model=SetSpendingLimitsIn,
    output_model=SpendingLimitsOut,
    read_only=False,
    idempotent=True,
)
async def set_spending_limits(ctx: ToolContext, args: SetSpendingLimitsIn) -> SpendingLimitsOut:
    """Lower (or add) a spending cap or withdrawal limit, or set the low-balance threshold;
    omitted fields stay. Raising or removing one is refused (FORBIDDEN): only your owner can."""
    given = {
        key
        for key, name in (
            ("daily", "daily_cap_usd_micros"),
            ("monthly", "monthly_cap_usd_micros"),
            ("balance_low", "balance_low_usd_micros"),
            ("withdraw_daily", "daily_withdrawal_limit_usd_micros"),
            ("withdraw_monthly", "monthly_withdrawal_limit_usd_micros"),
        )
        if name in args.model_fields_set
    }
    if "balance_low" in given and args.balance_low_usd_micros is None:
        raise ValidationFailed.field("balance_low_usd_micros", "a USD micro-dollar amount >= 0")
    change = limits_svc.Change(
        daily=args.daily_cap_usd_micros,
        monthly=args.monthly_cap_usd_micros,
        balance_low=args.balance_low_usd_micros,
        given=frozenset(given),
        withdraw_daily=args.daily_withdrawal_limit_usd_micros,
        withdraw_monthly=args.monthly_withdrawal_limit_usd_micros,
    )
    await limits_svc.tighten(ctx.uow, ctx.agent_id, change)
    view = await limits_svc.limits(ctx.uow, ctx.agent_id, ctx.runtime.billing)
    return SpendingLimitsOut.model_validate(view.to_dict())
