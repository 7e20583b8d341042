"""The OAuth consent page: an MCP client asks to act as one of the signed-in owner's agents.

``/authorize`` sends the browser here with the request's handle. Without a session the owner
first signs in with the mailed code (the dashboard's sign-in, which comes back here), then
picks the agent, or denies. The answer redirects to the client's registered redirect URI, so
the page's ``form-action`` allows that origin besides this site.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from agent_server.dashboard.forms import text
from agent_server.dashboard.web import (
    SECURITY_HEADERS,
    DashboardRoute,
    posted_form,
    render,
    runtime_of,
    signed_in,
)
from agent_server.kernel.errors import ValidationFailed
from agent_server.oauth import consent
from agent_server.oauth.provider import CONSENT_PATH

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


def _allow_redirect(response: Response, pending: consent.Pending) -> Response:
    policy = SECURITY_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {pending.redirect_origin}"
    )
    response.headers["Content-Security-Policy"] = policy
    return response


@router.get(CONSENT_PATH)
async def consent_page(
    request: Request, handle: Annotated[str | None, Query(alias="request", max_length=100)] = None
) -> Response:
    runtime = runtime_of(request)
    pending = await consent.pending(runtime.db, runtime.settings, handle)
    viewer = await signed_in(request)
    page = render(
        request,
        "oauth_consent.html",
        {"title": "Connect a client", "pending": pending, "handle": handle, "errors": {}},
        viewer=viewer,
    )
    return _allow_redirect(page, pending)


@router.post(CONSENT_PATH)
async def consent_answer(request: Request) -> Response:
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    runtime = runtime_of(request)
    handle = text(form, "request")
    if text(form, "decision") == "deny":
        target = await consent.deny(runtime.db, runtime.settings, handle, viewer.person)
        return RedirectResponse(target, status_code=303)
    raw = text(form, "agent_id")
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise ValidationFailed.field("agent_id", "choose one of your agents")
    target = await consent.approve(runtime.db, runtime.settings, handle, viewer.person, int(raw))
    return RedirectResponse(target, status_code=303)
