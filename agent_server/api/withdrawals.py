"""Withdrawals and payouts over REST, and the owner's confirmation of a new address.

    POST /api/agent/withdrawals/quote              fee and total before a request
    POST /api/agent/withdrawals                    request (idempotent by idempotency_key)
    GET  /api/agent/withdrawals                    newest first, ?cursor=
    GET  /api/agent/withdrawals/{id}               one withdrawal
    POST /api/agent/withdrawals/{id}/cancel        before it is sent; the money comes back
    GET  /api/agent/withdrawal-addresses           destinations and whether they are usable
    POST /api/agent/withdrawal-addresses/{id}/confirm   {"code": "123456"} from the owner's mail

The code is mailed to the owner, never answered to the API key's holder; a confirmed address
is usable only after the cooling-off time. The work is done by ``services.withdrawals``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from agent_server.api.auth import ChangingAgent, CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.events.outbox import iso
from agent_server.kernel.money import Money
from agent_server.kernel.paging import decode_cursor, encode_cursor
from agent_server.services import withdrawals as svc
from wallets.withdrawal_models import Withdrawal, WithdrawalAddress, WithdrawalKind

router = APIRouter(tags=["withdrawals"], responses=error_responses(401, 404, 422))

MAX_AMOUNT = 2**63 - 1
PublicId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuoteRequest(Strict):
    currency: Literal["BTC", "ETH", "USDT", "USDC"]
    amount: int = Field(ge=1, le=MAX_AMOUNT, description="Base units that arrive.")


class WithdrawalRequest(QuoteRequest):
    address: str = Field(max_length=100, description="EIP-55 (EVM) or bech32 (BTC).")
    source: Literal["wallet", "earnings"] = Field(
        default="wallet", description="earnings: a payout of what your schedules earned."
    )
    idempotency_key: str = Field(min_length=8, max_length=255, pattern=r"^[A-Za-z0-9._:\-]+$")


class QuoteResponse(BaseModel):
    currency: str
    amount: Money = Field(description="What arrives at the address.")
    network_fee: Money = Field(description="The chain's part of the fee, estimated now.")
    fee: Money = Field(description="Charged on top of amount.")
    total: Money = Field(description="Amount and fee: what leaves the wallet.")
    minimum: Money = Field(description="The smallest amount accepted in this currency.")
    needs_approval: bool


class WithdrawalResponse(BaseModel):
    id: str
    kind: str
    status: str
    currency: str
    amount: Money = Field(description="What arrives at the address.")
    fee: Money = Field(description="Taken on top of the amount.")
    address: str
    needs_approval: bool
    reason: str | None = None
    tx_hash: str | None = None
    confirmations: int
    requested_at: str
    ended_at: str | None = None


class PlacedResponse(BaseModel):
    withdrawal: WithdrawalResponse
    code_sent: bool = Field(description="A new address: its code was mailed to the owner.")


class WithdrawalPage(BaseModel):
    withdrawals: list[WithdrawalResponse]
    next_cursor: str | None


class AddressResponse(BaseModel):
    id: int
    currency: str
    address: str
    confirmed: bool
    usable_after: str | None


class ConfirmRequest(Strict):
    code: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")


def _out(w: Withdrawal) -> WithdrawalResponse:
    return WithdrawalResponse.model_validate(svc.withdrawal_data(w))


def _address(a: WithdrawalAddress) -> AddressResponse:
    return AddressResponse(
        id=a.id,
        currency=a.currency,
        address=a.address,
        confirmed=a.confirmed_at is not None,
        usable_after=iso(a.usable_after) if a.usable_after else None,
    )


def _terms(runtime: RuntimeDep) -> svc.Terms:
    return svc.Terms.of(runtime.settings, runtime.billing, runtime.network_fees)


@router.post("/agent/withdrawals/quote", response_model=QuoteResponse, summary="Quote")
async def quote(body: QuoteRequest, caller: CurrentAgent, runtime: RuntimeDep) -> QuoteResponse:
    """The network fee estimated now, the fee charged and the total; nothing changes."""
    q = await svc.quote(_terms(runtime), body.currency, body.amount)
    return QuoteResponse(
        currency=q.currency,
        amount=Money.of(q.amount, q.currency),
        network_fee=Money.of(q.network_fee, q.currency),
        fee=Money.of(q.fee, q.currency),
        total=Money.of(q.total, q.currency),
        minimum=Money.of(q.minimum, q.currency),
        needs_approval=q.needs_approval,
    )


@router.post(
    "/agent/withdrawals",
    response_model=PlacedResponse,
    status_code=201,
    summary="Request a withdrawal",
    responses=error_responses(402, 403, 409),
)
async def request_withdrawal(
    body: WithdrawalRequest, caller: ChangingAgent, runtime: RuntimeDep
) -> PlacedResponse:
    """Amount and fee leave the wallet (or earnings) now; the withdrawal waits for a new
    address's confirmation and cooling-off, and for an operator above the approval limit."""
    terms = _terms(runtime)
    async with runtime.db.uow() as uow:
        placed = await svc.request(
            uow,
            terms,
            svc.Owner(agent_id=caller.agent_id),
            kind=WithdrawalKind.PAYOUT if body.source == "earnings" else WithdrawalKind.WITHDRAWAL,
            currency=body.currency,
            amount=body.amount,
            address=body.address,
            request_key=body.idempotency_key,
        )
        out = PlacedResponse(withdrawal=_out(placed.withdrawal), code_sent=placed.code_sent)
        await uow.commit()
    return out


@router.get("/agent/withdrawals", response_model=WithdrawalPage, summary="List withdrawals")
async def list_withdrawals(
    caller: CurrentAgent,
    runtime: RuntimeDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> WithdrawalPage:
    """Withdrawals and payouts, newest first."""
    async with runtime.db.uow() as uow:
        rows = await svc.list_for(
            uow,
            svc.Owner(agent_id=caller.agent_id),
            before=decode_cursor(cursor),
            limit=limit + 1,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return WithdrawalPage(
            withdrawals=[_out(w) for w in rows],
            next_cursor=encode_cursor(rows[-1].id) if more else None,
        )


@router.get(
    "/agent/withdrawals/{withdrawal_id}",
    response_model=WithdrawalResponse,
    summary="Get a withdrawal",
)
async def get_withdrawal(
    withdrawal_id: PublicId, caller: CurrentAgent, runtime: RuntimeDep
) -> WithdrawalResponse:
    async with runtime.db.uow() as uow:
        return _out(await svc.find(uow, withdrawal_id, svc.Owner(agent_id=caller.agent_id)))


@router.post(
    "/agent/withdrawals/{withdrawal_id}/cancel",
    response_model=WithdrawalResponse,
    summary="Cancel a withdrawal",
    responses=error_responses(403),
)
async def cancel_withdrawal(
    withdrawal_id: PublicId, caller: ChangingAgent, runtime: RuntimeDep
) -> WithdrawalResponse:
    """Before it is handed to the sender; amount and fee return to their source once."""
    async with runtime.db.uow() as uow:
        w = await svc.cancel(uow, svc.Owner(agent_id=caller.agent_id), withdrawal_id)
        out = _out(w)
        await uow.commit()
    return out


@router.get(
    "/agent/withdrawal-addresses",
    response_model=list[AddressResponse],
    summary="List withdrawal addresses",
)
async def list_addresses(caller: CurrentAgent, runtime: RuntimeDep) -> list[AddressResponse]:
    async with runtime.db.uow() as uow:
        return [_address(a) for a in await svc.addresses(uow, svc.Owner(agent_id=caller.agent_id))]


@router.post(
    "/agent/withdrawal-addresses/{address_id}/confirm",
    response_model=AddressResponse,
    summary="Confirm a new address",
    responses=error_responses(403),
)
async def confirm_address(
    address_id: Annotated[int, Path(ge=1, le=MAX_AMOUNT)],
    body: ConfirmRequest,
    caller: ChangingAgent,
    runtime: RuntimeDep,
) -> AddressResponse:
    """With the code mailed to the owner; a wrong code uses one of five tries. The address
    is usable after the cooling-off time."""
    async with runtime.db.uow() as uow:
        done = await svc.confirm_address(
            uow, runtime.settings, svc.Owner(agent_id=caller.agent_id), address_id, body.code
        )
        await uow.commit()
    if done.error is not None:
        raise done.error
    assert done.address is not None
    return _address(done.address)
