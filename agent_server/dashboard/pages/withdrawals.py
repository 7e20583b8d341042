"""Withdrawals and payouts on the dashboard.

* Owners of an agent (``/agents/{id}/withdrawals``) and specialists (``/specialist/payouts``):
  a quote, then a request; the list with cancel; their addresses, each new one confirmed here
  with the code mailed to them. An agent's owner also closes the agent's account here.
* Operators (``/operator/withdrawals``): the withdrawals waiting for approval, approved or
  rejected with a reason, and the recent decisions with who, when and why.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from agent_server.dashboard.forms import field_errors, parse_amount, text
from agent_server.dashboard.people import (
    changeable_agent,
    own_specialist,
    owned_agent,
    require_operator,
)
from agent_server.dashboard.web import (
    DashboardRoute,
    Viewer,
    posted_form,
    redirect,
    render,
    runtime_of,
    signed_in,
)
from agent_server.kernel.errors import AgentServerError, NotFound, ValidationFailed
from agent_server.kernel.money import decimal_text
from agent_server.services import withdrawals as svc
from agent_server.services.closing import Remaining, close_account
from wallets.currencies import CURRENCIES
from wallets.withdrawal_models import OPEN_STATUSES, WithdrawalKind

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
PublicId = Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")]
NOTICES = {
    "requested": "Withdrawal requested; the amount and fee left the balance.",
    "code": "A confirmation code for the new address was mailed to you.",
    "confirmed": "Address confirmed; it can be used once the cooling-off time has passed.",
    "cancelled": "Withdrawal cancelled; the amount and fee are back.",
    "approved": "Withdrawal approved.",
    "rejected": "Withdrawal rejected; the money went back.",
}


async def _page(
    request: Request,
    viewer: Viewer,
    owner: svc.Owner,
    base: str,
    context: dict[str, Any],
    *,
    quote: svc.Quote | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        rows = await svc.list_for(uow, owner, before=None, limit=50)
        addresses = await svc.addresses(uow, owner)
        await uow.commit()
    done = request.query_params.get("done", "")
    return render(
        request,
        "withdrawals.html",
        {
            **context,
            "base": base,
            "rows": rows,
            "addresses": addresses,
            "open_statuses": [s.value for s in OPEN_STATUSES],
            "currencies": list(CURRENCIES),
            "quote": quote,
            "errors": errors or {},
            "values": {"currency": "USDC", "amount": "", "address": "", **(values or {})},
            "notice": NOTICES.get(done),
            "now": runtime.clock.now(),
            "amount_text": decimal_text,
        },
        viewer=viewer,
        status_code=status_code,
    )


async def _submit(
    request: Request,
    viewer: Viewer,
    owner: svc.Owner,
    base: str,
    context: dict[str, Any],
    kind: WithdrawalKind,
) -> Response:
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    values = {k: text(form, k) for k in ("currency", "amount", "address", "source")}
    if owner.specialist_id is not None:
        kind = WithdrawalKind.PAYOUT
    elif values["source"] == "earnings":
        kind = WithdrawalKind.PAYOUT
    terms = svc.Terms.of(runtime.settings, runtime.billing, runtime.network_fees)
    try:
        currency = values["currency"] if values["currency"] in CURRENCIES else ""
        if not currency:
            raise ValidationFailed.field("currency", f"choose one of {', '.join(CURRENCIES)}")
        amount = parse_amount(values["amount"], currency, "amount")
        quote = await svc.quote(terms, currency, amount)
        if text(form, "action") != "request":
            return await _page(request, viewer, owner, base, context, quote=quote, values=values)
        async with runtime.db.uow() as uow:
            placed = await svc.request(
                uow,
                terms,
                owner,
                kind=kind,
                currency=currency,
                amount=amount,
                address=values["address"],
                request_key=text(form, "request_key") or None,
                priced=quote,
            )
            await uow.commit()
    except (ValidationFailed, NotFound) as exc:
        errors = field_errors(exc) if isinstance(exc, ValidationFailed) else {}
        errors = errors or {"address": exc.message}
        return await _page(
            request, viewer, owner, base, context, errors=errors, values=values, status_code=422
        )
    except AgentServerError as exc:  # InsufficientFunds, IdempotencyMismatch: on the form
        return await _page(
            request,
            viewer,
            owner,
            base,
            context,
            errors={"amount": exc.message},
            values=values,
            status_code=422,
        )
    return redirect(base, "code" if placed.code_sent else "requested")


async def _cancel(
    request: Request, viewer: Viewer, owner: svc.Owner, base: str, wid: str
) -> Response:
    await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await svc.cancel(uow, owner, wid)
        await uow.commit()
    return redirect(base, "cancelled")


async def _confirm(
    request: Request,
    viewer: Viewer,
    owner: svc.Owner,
    base: str,
    context: dict[str, Any],
    address_id: int,
) -> Response:
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        done = await svc.confirm_address(
            uow, runtime.settings, owner, address_id, text(form, "code")
        )
        await uow.commit()
    if done.error is not None:
        return await _page(
            request,
            viewer,
            owner,
            base,
            context,
            errors={f"code-{address_id}": done.error.details["fields"][0]["message"]},
            status_code=422,
        )
    return redirect(base, "confirmed")


# --- an agent's owner -----------------------------------------------------------------------


async def _agent(request: Request, agent_id: int, *, change: bool) -> tuple[Viewer, dict[str, Any]]:
    viewer = await signed_in(request)
    async with runtime_of(request).db.uow() as uow:
        agent = await (changeable_agent if change else owned_agent)(uow, viewer.person, agent_id)
        await uow.commit()
    return viewer, {"title": f"{agent.name}: withdrawals", "agent": agent, "tab": "withdrawals"}


@router.get("/agents/{agent_id}/withdrawals")
async def agent_withdrawals(request: Request, agent_id: Id) -> Response:
    viewer, context = await _agent(request, agent_id, change=False)
    owner = svc.Owner(agent_id=agent_id)
    return await _page(request, viewer, owner, f"/agents/{agent_id}/withdrawals", context)


@router.post("/agents/{agent_id}/withdrawals")
async def agent_request(request: Request, agent_id: Id) -> Response:
    viewer, context = await _agent(request, agent_id, change=True)
    owner = svc.Owner(agent_id=agent_id)
    base = f"/agents/{agent_id}/withdrawals"
    return await _submit(request, viewer, owner, base, context, WithdrawalKind.WITHDRAWAL)


@router.post("/agents/{agent_id}/withdrawals/{withdrawal_id}/cancel")
async def agent_cancel(request: Request, agent_id: Id, withdrawal_id: PublicId) -> Response:
    viewer, _ = await _agent(request, agent_id, change=True)
    base = f"/agents/{agent_id}/withdrawals"
    return await _cancel(request, viewer, svc.Owner(agent_id=agent_id), base, withdrawal_id)


@router.post("/agents/{agent_id}/withdrawal-addresses/{address_id}/confirm")
async def agent_confirm(request: Request, agent_id: Id, address_id: Id) -> Response:
    viewer, context = await _agent(request, agent_id, change=True)
    owner = svc.Owner(agent_id=agent_id)
    base = f"/agents/{agent_id}/withdrawals"
    return await _confirm(request, viewer, owner, base, context, address_id)


@router.post("/agents/{agent_id}/close")
async def close_agent(request: Request, agent_id: Id) -> Response:
    """Close the agent's account: refused while money is left, unless the owner ticks that
    they give it up."""
    viewer, context = await _agent(request, agent_id, change=True)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    remaining: Remaining = "forfeit" if text(form, "forfeit") == "yes" else None

    try:
        # The signed-in owner's explicit choice (the ticked box) is the confirmation.
        await close_account(runtime.db.uow(), agent_id, remaining, owner_confirmed=True)
    except ValidationFailed as exc:
        owner = svc.Owner(agent_id=agent_id)
        base = f"/agents/{agent_id}/withdrawals"
        errors = {"close": exc.details["fields"][0]["message"]}
        return await _page(request, viewer, owner, base, context, errors=errors, status_code=422)
    return redirect("/", None)


# --- a specialist ---------------------------------------------------------------------------


async def _specialist(request: Request) -> tuple[Viewer, svc.Owner, dict[str, Any]]:
    viewer = await signed_in(request)
    async with runtime_of(request).db.uow() as uow:
        specialist = await own_specialist(uow, viewer.person)
        await uow.commit()
    context = {"title": "Your payouts", "section": "payouts", "specialist": specialist}
    return viewer, svc.Owner(specialist_id=specialist.id), context


@router.get("/specialist/payouts")
async def specialist_payouts(request: Request) -> Response:
    viewer, owner, context = await _specialist(request)
    return await _page(request, viewer, owner, "/specialist/payouts", context)


@router.post("/specialist/payouts")
async def specialist_request(request: Request) -> Response:
    viewer, owner, context = await _specialist(request)
    return await _submit(
        request, viewer, owner, "/specialist/payouts", context, WithdrawalKind.PAYOUT
    )


@router.post("/specialist/payouts/{withdrawal_id}/cancel")
async def specialist_cancel(request: Request, withdrawal_id: PublicId) -> Response:
    viewer, owner, _ = await _specialist(request)
    return await _cancel(request, viewer, owner, "/specialist/payouts", withdrawal_id)


@router.post("/specialist/payout-addresses/{address_id}/confirm")
async def specialist_confirm(request: Request, address_id: Id) -> Response:
    viewer, owner, context = await _specialist(request)
    return await _confirm(request, viewer, owner, "/specialist/payouts", context, address_id)


# --- operators ------------------------------------------------------------------------------


@router.get("/operator/withdrawals")
async def approval_queue(request: Request) -> Response:
    viewer = await signed_in(request)
    require_operator(viewer.person)
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        rows = await svc.approval_queue(uow)
        await uow.commit()
    return render(
        request,
        "operator_withdrawals.html",
        {
            "title": "Withdrawals",
            "rows": rows,
            "notice": NOTICES.get(request.query_params.get("done", "")),
            "amount_text": decimal_text,
        },
        viewer=viewer,
    )


@router.post("/operator/withdrawals/{withdrawal_id}/{decision}")
async def decide(request: Request, withdrawal_id: PublicId, decision: str) -> Response:
    viewer = await signed_in(request)
    require_operator(viewer.person)
    form = await posted_form(request, viewer)
    if decision not in ("approve", "reject"):
        raise NotFound("no such decision")
    runtime = runtime_of(request)
    step = svc.approve if decision == "approve" else svc.reject
    async with runtime.db.uow() as uow:
        await step(
            uow, withdrawal_id, operator=f"dashboard:{viewer.person.email}", note=text(form, "note")
        )
        await uow.commit()
    return redirect("/operator/withdrawals", "approved" if decision == "approve" else "rejected")
