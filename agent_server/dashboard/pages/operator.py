"""Operator pages: every agent, with suspend, ban and reactivate; the dispute queue.

Status changes go through ``agent_server.accounts.status.change_status``, as the admin CLI's
do, recorded with the operator's email as the actor and the reason they give. Disputes are
resolved through ``agent_server.services.disputes.resolve_dispute`` (refund, release or split),
recorded with the operator's email and the reason they give.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from agent_server.accounts.models import AgentStatus
from agent_server.accounts.status import StatusAction, change_status, list_agents
from agent_server.booking.disputes import RESOLUTIONS
from agent_server.dashboard.forms import parse_amount, text
from agent_server.dashboard.people import require_operator
from agent_server.dashboard.web import (
    DashboardRoute,
    posted_form,
    redirect,
    render,
    runtime_of,
    signed_in,
)
from agent_server.kernel.errors import ValidationFailed
from agent_server.services import disputes as dispute_svc

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

PER_PAGE = 50
OPERATOR_ACTIONS = (StatusAction.SUSPEND, StatusAction.BAN, StatusAction.REACTIVATE)
# Which actions each status allows (as accounts.status enforces).
ALLOWED: dict[str, tuple[str, ...]] = {
    AgentStatus.PENDING_DEPOSIT.value: ("suspend", "ban"),
    AgentStatus.ACTIVE.value: ("suspend", "ban"),
    AgentStatus.SUSPENDED.value: ("ban", "reactivate"),
    AgentStatus.BANNED.value: ("reactivate",),
}


@router.get("/operator/agents")
async def agents(
    request: Request,
    status: Annotated[str | None, Query(max_length=20)] = None,
    q: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    viewer = await signed_in(request)
    require_operator(viewer.person)
    runtime = runtime_of(request)
    wanted: AgentStatus | None = None
    if status:
        try:
            wanted = AgentStatus(status)
        except ValueError:
            raise ValidationFailed.field(
                "status", f"choose one of {', '.join(s.value for s in AgentStatus)}"
            ) from None
    async with runtime.db.uow() as uow:
        rows = await list_agents(
            uow,
            status=wanted,
            search=q.strip(),
            limit=PER_PAGE + 1,
            offset=(page - 1) * PER_PAGE,
        )
        await uow.commit()
    return render(
        request,
        "operator_agents.html",
        {
            "title": "Agents",
            "agents": rows[:PER_PAGE],
            "more": len(rows) > PER_PAGE,
            "page": page,
            "status": status or "",
            "q": q.strip(),
            "statuses": [s.value for s in AgentStatus],
            "allowed": ALLOWED,
            "section": "operator",
        },
        viewer=viewer,
    )


@router.post("/operator/agents/{agent_id}/status")
async def set_status(
    request: Request, agent_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Response:
    viewer = await signed_in(request)
    require_operator(viewer.person)
    form = await posted_form(request, viewer)
    action_name = text(form, "action")
    actions = {a.value: a for a in OPERATOR_ACTIONS}
    if action_name not in actions:
        raise ValidationFailed.field("action", "choose suspend, ban or reactivate")
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await change_status(
            uow,
            agent_id,
            actions[action_name],
            actor=f"dashboard:{viewer.person.email}"[:100],
            reason=text(form, "reason"),
        )
        await uow.commit()
    back = text(form, "back")
    target = back if back.startswith("/operator/agents") else "/operator/agents"
    return redirect(target, "status")


@router.get("/operator/disputes")
async def disputes(
    request: Request,
    status: Annotated[str, Query(max_length=20)] = "open",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The dispute queue, oldest first: each open dispute with what escrow holds for it."""
    viewer = await signed_in(request)
    require_operator(viewer.person)
    if status not in ("open", "resolved"):
        raise ValidationFailed.field("status", "choose open or resolved")
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        rows, page = await dispute_svc.dispute_queue(uow, status=status, cursor=cursor)
        await uow.commit()
    return render(
        request,
        "operator_disputes.html",
        {
            "title": "Disputes",
            "rows": rows,
            "next_cursor": page.next_cursor,
            "status": status,
            "resolutions": RESOLUTIONS,
            "section": "disputes",
        },
        viewer=viewer,
    )


@router.post("/operator/disputes/{booking_id}/resolve")
async def resolve_dispute(
    request: Request, booking_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> Response:
    """Settle a dispute: a full refund, a release to the provider, or a split whose refund
    the operator enters in the escrow's currency; recorded with the operator's email."""
    viewer = await signed_in(request)
    require_operator(viewer.person)
    form = await posted_form(request, viewer)
    resolution = text(form, "resolution")
    refund: int | None = None
    if resolution == "split":
        refund = parse_amount(text(form, "refund"), text(form, "currency"), "refund")
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await dispute_svc.resolve_dispute(
            uow,
            booking_id,
            resolution=resolution,
            refund_amount=refund,
            operator=f"dashboard:{viewer.person.email}",
            note=text(form, "note"),
            policy=runtime.billing.prices.booking,
        )
        await uow.commit()
    return redirect("/operator/disputes", "resolved")
