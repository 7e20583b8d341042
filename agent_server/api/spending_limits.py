"""An owner's spending caps, withdrawal limits and low-balance threshold over REST.

    GET  /api/agent/spending-limits           caps and withdrawal limits, spent and withdrawn
                                              today and this month, threshold
    PUT  /api/agent/spending-limits           lower (applied now) or raise (a code is mailed
                                              to the owner; 202 and nothing raised yet)
    POST /api/agent/spending-limits/confirm   {"code": "123456"} from the owner's mail

The API key alone can only tighten the caps and limits: a raise needs the code the owner
receives.
The work is done by ``services.limits``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from agent_server.api.auth import ChangingAgent, CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.kernel.errors import ValidationFailed
from agent_server.services import limits as svc

router = APIRouter(tags=["spending limits"], responses=error_responses(401, 422))

Micros = Annotated[int, Field(ge=0, le=2**63 - 1)]


class LimitsResponse(BaseModel):
    daily_cap_usd_micros: int | None = Field(description="null: no cap.")
    monthly_cap_usd_micros: int | None
    spent_today_usd_micros: int = Field(description="Net of refunds, this UTC day.")
    spent_this_month_usd_micros: int
    day_resets_at: str
    month_resets_at: str
    balance_low_usd_micros: int
    raise_pending: bool = Field(description="A raise waits for the owner's mailed code.")
    daily_withdrawal_limit_usd_micros: int | None = Field(description="null: no limit.")
    monthly_withdrawal_limit_usd_micros: int | None
    withdrawn_today_usd_micros: int = Field(
        description="Withdrawals and payouts requested this UTC day, unless they ended unsent."
    )
    withdrawn_this_month_usd_micros: int
    code_sent: bool = Field(default=False, description="This request mailed a code.")


class LimitsRequest(BaseModel):
    """Fields left out stay as they are; a cap or limit of null removes it (a raise)."""

    model_config = ConfigDict(extra="forbid")

    daily_cap_usd_micros: Micros | None = None
    monthly_cap_usd_micros: Micros | None = None
    balance_low_usd_micros: Micros | None = None
    daily_withdrawal_limit_usd_micros: Micros | None = None
    monthly_withdrawal_limit_usd_micros: Micros | None = None


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=6, pattern=r"^[0-9]{6}$")


async def _view(runtime: RuntimeDep, agent_id: int, code_sent: bool = False) -> LimitsResponse:
    async with runtime.db.uow() as uow:
        view = await svc.limits(uow, agent_id, runtime.billing)
    return LimitsResponse(**view.to_dict(), code_sent=code_sent)


@router.get("/agent/spending-limits", response_model=LimitsResponse, summary="Spending limits")
async def get_limits(caller: CurrentAgent, runtime: RuntimeDep) -> LimitsResponse:
    """The caps, what was spent against them (refunds credited back) and the threshold."""
    return await _view(runtime, caller.agent_id)


@router.put(
    "/agent/spending-limits",
    response_model=LimitsResponse,
    summary="Change spending limits",
    responses={
        202: {"description": "A raise: a code was mailed to the owner."},
        **error_responses(403),
    },
)
async def put_limits(
    body: LimitsRequest, caller: ChangingAgent, runtime: RuntimeDep, response: Response
) -> LimitsResponse:
    """Lowering applies now; raising or removing a cap or limit mails a code to the owner
    and waits for it (POST /api/agent/spending-limits/confirm)."""
    names = {
        "daily_cap_usd_micros": "daily",
        "monthly_cap_usd_micros": "monthly",
        "balance_low_usd_micros": "balance_low",
        "daily_withdrawal_limit_usd_micros": "withdraw_daily",
        "monthly_withdrawal_limit_usd_micros": "withdraw_monthly",
    }
    given = frozenset(names[f] for f in body.model_fields_set)
    if "balance_low" in given and body.balance_low_usd_micros is None:
        raise ValidationFailed.field("balance_low_usd_micros", "a USD micro-dollar amount >= 0")
    change = svc.Change(
        daily=body.daily_cap_usd_micros,
        monthly=body.monthly_cap_usd_micros,
        balance_low=body.balance_low_usd_micros,
        given=given,
        withdraw_daily=body.daily_withdrawal_limit_usd_micros,
        withdraw_monthly=body.monthly_withdrawal_limit_usd_micros,
    )
    async with runtime.db.uow() as uow:
        sent = await svc.request_change(uow, runtime.settings, caller.agent_id, change)
        await uow.commit()
    if sent:
        response.status_code = 202
    return await _view(runtime, caller.agent_id, sent)


@router.post(
    "/agent/spending-limits/confirm",
    response_model=LimitsResponse,
    summary="Confirm a raise",
    responses=error_responses(403),
)
async def confirm(
    body: ConfirmRequest, caller: ChangingAgent, runtime: RuntimeDep
) -> LimitsResponse:
    """Apply the waiting raise with the code mailed to the owner (5 tries, then ask again)."""
    async with runtime.db.uow() as uow:
        error = await svc.confirm_raise(uow, runtime.settings, caller.agent_id, body.code)
        await uow.commit()
    if error is not None:
        raise error
    return await _view(runtime, caller.agent_id)
