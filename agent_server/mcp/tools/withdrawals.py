"""Money out over MCP: request (or quote), list and cancel withdrawals and payouts."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.money import Money
from agent_server.kernel.paging import decode_cursor, encode_cursor
from agent_server.mcp.pipeline import LookupContext, ToolContext
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import Input, Paid
from agent_server.services import withdrawals as svc
from wallets.destinations import check_destination
from wallets.rates import base_units_to_usd
from wallets.withdrawal_models import Withdrawal, WithdrawalKind


class WithdrawalOut(BaseModel):
    id: str
    kind: str
    status: str
    currency: str
    amount: Money = Field(description="What arrives at the address.")
    fee: Money = Field(description="Taken on top of the amount.")
    address: str
    tx_hash: str | None = None


def withdrawal_out(w: Withdrawal) -> WithdrawalOut:
    return WithdrawalOut(
        id=w.public_id,
        kind=w.kind,
        status=w.status,
        currency=w.currency,
        amount=Money.of(w.amount, w.currency),
        fee=Money.of(w.fee, w.currency),
        address=w.address,
        tx_hash=w.tx_hash,
    )


class RequestIn(Input):
    currency: Literal["BTC", "ETH", "USDT", "USDC"]
    amount: Annotated[int, Field(ge=1, le=2**63 - 1, description="Base units to arrive.")]
    address: Annotated[str, Field(max_length=100, description="EIP-55 or bech32.")]
    source: Annotated[Literal["wallet", "earnings"], Field(description="earnings: a payout.")] = (
        "wallet"
    )
    quote_only: Annotated[bool, Field(description="Only show fee and total.")] = False
    idempotency_key: Annotated[
        str | None,
        Field(
            min_length=8,
            max_length=255,
            pattern=r"^[A-Za-z0-9._:\-]+$",
            description="Needed to send; a retry with it sends once.",
        ),
    ] = None


class RequestOut(Paid):
    fee: Money
    network_fee: Money = Field(description="The chain's part of the fee, estimated.")
    total: Money = Field(description="Amount and fee: what leaves your wallet.")
    withdrawal: WithdrawalOut | None = None
    code_sent: bool = Field(default=False, description="New address: owner got a code.")


async def _fee_usd(ctx: LookupContext, args: RequestIn) -> int | None:
    """The fee of the withdrawal asked for, in USD micro-dollars (what max_price limits)."""
    if args.quote_only:
        return None
    rt = ctx.runtime
    q = await svc.quote(
        svc.Terms.of(rt.settings, rt.billing, rt.network_fees), args.currency, args.amount
    )
    return base_units_to_usd(q.fee, q.currency, q.rate_usd_micros)


def _terms(ctx: ToolContext) -> svc.Terms:
    rt = ctx.runtime
    return svc.Terms.of(rt.settings, rt.billing, rt.network_fees)


@REGISTRY.tool(
    "request-withdrawal",
    title="Withdraw",
    toolset="wallet",
    input_model=RequestIn,
    output_model=RequestOut,
    read_only=False,
    idempotent=True,
    open_world=True,
    own_price=_fee_usd,
)
async def request_withdrawal(ctx: ToolContext, args: RequestIn) -> RequestOut:
    """Send coins from your wallet (or earnings) to an address; fee on top. A new address
    waits for the owner's emailed code and a cooling-off time; large ones for approval."""
    terms = _terms(ctx)
    check_destination(args.currency, args.address, btc_network=terms.settings.btc_network)
    q = await svc.quote(terms, args.currency, args.amount)
    if args.quote_only:
        return RequestOut(
            fee=Money.of(q.fee, q.currency),
            network_fee=Money.of(q.network_fee, q.currency),
            total=Money.of(q.total, q.currency),
        )
    if args.idempotency_key is None:
        raise ValidationFailed.field("idempotency_key", "required unless quote_only is true")
    placed = await svc.request(
        ctx.uow,
        terms,
        svc.Owner(agent_id=ctx.agent_id),
        kind=WithdrawalKind.PAYOUT if args.source == "earnings" else WithdrawalKind.WITHDRAWAL,
        currency=args.currency,
        amount=args.amount,
        address=args.address,
        request_key=args.idempotency_key,
        priced=q,
    )
    w = placed.withdrawal
    return RequestOut(
        fee=Money.of(w.fee, w.currency),
        network_fee=Money.of(w.network_fee_estimate, w.currency),
        total=Money.of(w.amount + w.fee, w.currency),
        withdrawal=withdrawal_out(w),
        code_sent=placed.code_sent,
    )


class ListIn(Input):
    cursor: Annotated[str | None, Field(max_length=200, description="next_cursor.")] = None


class ListOut(Paid):
    withdrawals: list[WithdrawalOut]
    next_cursor: str | None


@REGISTRY.tool(
    "list-withdrawals",
    title="Your withdrawals",
    toolset="wallet",
    input_model=ListIn,
    output_model=ListOut,
    read_only=True,
    idempotent=True,
)
async def list_withdrawals(ctx: ToolContext, args: ListIn) -> ListOut:
    """Your withdrawals and payouts, newest first, with status and tx hash."""
    limit = 20
    rows = await svc.list_for(
        ctx.uow,
        svc.Owner(agent_id=ctx.agent_id),
        before=decode_cursor(args.cursor),
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return ListOut(
        withdrawals=[withdrawal_out(w) for w in rows],
        next_cursor=encode_cursor(rows[-1].id) if more else None,
    )


class CancelIn(Input):
    withdrawal_id: Annotated[str, Field(max_length=40, description="wd_...")]


class CancelOut(Paid):
    withdrawal: WithdrawalOut


@REGISTRY.tool(
    "cancel-withdrawal",
    title="Cancel a withdrawal",
    toolset="wallet",
    input_model=CancelIn,
    output_model=CancelOut,
    read_only=False,
    destructive=True,
    idempotent=False,
)
async def cancel_withdrawal(ctx: ToolContext, args: CancelIn) -> CancelOut:
    """Cancel a withdrawal not yet sent; amount and fee return to their source."""
    w = await svc.cancel(ctx.uow, svc.Owner(agent_id=ctx.agent_id), args.withdrawal_id)
    return CancelOut(withdrawal=withdrawal_out(w))
