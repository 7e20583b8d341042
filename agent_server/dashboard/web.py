"""What every dashboard page shares: templates, the signed-in viewer, CSRF checks, errors.

``DashboardRoute`` is the route class of the dashboard's router: a page that raises one of
the product's errors (``NotFound``, ``Forbidden``, ``ValidationFailed``...) is answered with
the error page and that error's HTTP status; a visitor without a session is sent to the
sign-in page. Every answer carries headers that keep pages out of caches and frames.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from agent_server.accounts.keys import hash_secret
from agent_server.accounts.service import pepper
from agent_server.dashboard.people import Person, person_for
from agent_server.dashboard.sessions import (
    SESSION_COOKIE,
    SESSION_TTL,
    csrf_ok,
    csrf_token,
    session_email,
)
from agent_server.kernel.errors import (
    AgentServerError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
)
from agent_server.kernel.logs import get_logger
from agent_server.kernel.money import amount_text, decimal_text, usd_text
from agent_server.kernel.store.conflicts import lost_update
from agent_server.kernel.store.outage import RETRY_AFTER_SECONDS, database_unavailable
from agent_server.runtime import Runtime

log = get_logger(__name__)

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
SIGNIN_COOKIE = "as_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


# Money reads as everywhere else (``agent_server.kernel.money``): ``usd`` is micro-dollars as
# ``"25.00 USD"``, ``money`` an amount with its currency, ``coins`` the figure alone.
TEMPLATES.env.filters["usd"] = usd_text
TEMPLATES.env.filters["money"] = amount_text
TEMPLATES.env.filters["coins"] = decimal_text
TEMPLATES.env.filters["when"] = _when


class SignInRequired(Exception):
    """The page needs a session and the request has none (or an expired one)."""


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def secure_cookies(request: Request) -> bool:
    """Cookies get ``Secure`` when the dashboard is reached over https."""
    runtime = runtime_of(request)
    return request.url.scheme == "https" or runtime.settings.public_url.startswith("https://")


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, the session's cookie token, and the session's CSRF token."""

    person: Person
    token: str
    csrf: str


async def signed_in(request: Request) -> Viewer:
    """The viewer of a page that needs a session; ``SignInRequired`` without one."""
    runtime = runtime_of(request)
    token = request.cookies.get(SESSION_COOKIE)
    email = await session_email(runtime.db, runtime.settings, token)
    if email is None or token is None:
        raise SignInRequired
    async with runtime.db.uow() as uow:
        person = await person_for(uow, runtime.settings, email)
    return Viewer(person, token, csrf_token(runtime.settings, token))


async def posted_form(request: Request, viewer: Viewer) -> FormData:
    """The form of a POST whose CSRF token matches the viewer's session; ``Forbidden`` else."""
    form = await request.form()
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not csrf_ok(
        runtime_of(request).settings, viewer.token, sent if isinstance(sent, str) else None
    ):
        log.warning("dashboard.csrf_refused", path=request.url.path)
        raise Forbidden("the form expired or came from another site; reload the page and retry")
    return form


def signin_csrf(request: Request, nonce: str) -> str:
    """The CSRF token of the sign-in forms, bound to the browser's sign-in cookie."""
    settings = runtime_of(request).settings
    return hash_secret(pepper(settings), nonce, context="dashboard-signin-csrf")


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    viewer: Viewer | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    values: dict[str, Any] = {
        "viewer": viewer,
        "person": viewer.person if viewer else None,
        "csrf": viewer.csrf if viewer else "",
        "now": runtime_of(request).clock.now(),
        "partial": request.headers.get("hx-request") == "true",
        "message": MESSAGES.get(request.query_params.get("done", "")),
    }
    values.update(context)
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)


def redirect(path: str, done: str | None = None) -> RedirectResponse:
    """A 303 to ``path`` (after a POST), with a ``done`` message key to show there."""
    if done:
        path += ("&" if "?" in path else "?") + f"done={quote(done)}"
    return RedirectResponse(path, status_code=303)


MESSAGES = {
    "caps": "Spending caps saved.",
    "callback": "Callback URL saved.",
    "key-kept": (
        "That form was for a key that had already been replaced, so nothing changed: the key "
        "shown after the first regeneration works. Regenerate again only if you no longer have it."
    ),
    "address": "Deposit address ready.",
    "cancelled": "Booking cancelled; the refund is in the transactions.",
    "disputed": "Dispute opened; the slot price stays in escrow until an operator decides.",
    "resolved": "Dispute resolved; the escrow is settled.",
    "reviewed": "Review saved; the provider's rating now counts it.",
    "profile": "Profile saved.",
    "welcome": (
        "Welcome! Complete your profile, then publish a schedule so that agents can book you."
    ),
    "notifications": "Mail choices saved.",
    "schedule-created": "Schedule published.",
    "schedule-saved": "Schedule saved.",
    "schedule-deleted": "Schedule deleted.",
    "status": "Agent status changed.",
    "webhook_retry": "The event is queued again; the worker delivers it within a minute.",
    "signed-out": "You are signed out.",
}


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_TTL.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )


def _error_page(request: Request, exc: AgentServerError, viewer: Viewer | None) -> HTMLResponse:
    titles = {
        401: "Sign in",
        403: "Not allowed",
        404: "Not found",
        409: "Not possible now",
        503: "Unavailable for a moment",
    }
    return render(
        request,
        "error.html",
        {"title": titles.get(exc.status, "Something is wrong"), "error": exc},
        viewer=viewer,
        status_code=exc.status,
    )


def error_page(request: Request, exc: AgentServerError) -> HTMLResponse:
    """The error page for a request refused before it reached a page (no session read)."""
    response = _error_page(request, exc, None)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class DashboardRoute(APIRoute):
    """Turns the product's errors into error pages and adds the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                response = RedirectResponse(
                    f"/sign-in?next={quote(target, safe='')}", status_code=303
                )
                if request.headers.get("hx-request") == "true":
                    response.headers["HX-Redirect"] = "/sign-in"
            except RequestValidationError as exc:
                # A malformed id or query (``/agents/abc``): the page does not exist.
                missing = NotFound(f"no page at {request.url.path}")
                bad_query = any(e.get("loc", ("",))[0] == "query" for e in exc.errors())
                error: AgentServerError = (
                    ValidationFailed.field(
                        "query", "a filter or page number in the address is not valid"
                    )
                    if bad_query
                    else missing
                )
                response = _error_page(request, error, None)
            except AgentServerError as exc:
                try:
                    viewer: Viewer | None = await signed_in(request)
                except SignInRequired:
                    viewer = None
                response = _error_page(request, exc, viewer)
            except Exception as exc:
                conflict = lost_update(exc)
                if conflict is not None:
                    # A booking changed by another request meanwhile: nothing was written.
                    response = _error_page(request, conflict, None)
                elif database_unavailable(exc):
                    log.warning(
                        "dashboard.database_unavailable",
                        path=request.url.path,
                        error=type(exc).__name__,
                    )
                    response = _error_page(request, ServiceUnavailable(RETRY_AFTER_SECONDS), None)
                    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
                else:
                    raise
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return route
