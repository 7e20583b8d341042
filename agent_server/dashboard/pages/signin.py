"""Sign-in and a specialist's sign-up by a mailed code, sign-out, and the home page."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response
from fastapi.responses import RedirectResponse

from agent_server.api.auth import client_ip
from agent_server.dashboard.forms import text
from agent_server.dashboard.sessions import (
    SESSION_COOKIE,
    end_session,
    request_code,
    request_signup,
    verify_code,
)
from agent_server.dashboard.web import (
    CSRF_FIELD,
    SIGNIN_COOKIE,
    DashboardRoute,
    SignInRequired,
    Viewer,
    posted_form,
    redirect,
    render,
    runtime_of,
    secure_cookies,
    set_session_cookie,
    signed_in,
    signin_csrf,
)
from agent_server.kernel.errors import Forbidden, RateLimited, ValidationFailed
from agent_server.mail import send_quietly

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)


def _safe_next(target: str | None) -> str:
    """Only paths of this site (never ``//host`` or ``https://...``) are followed after sign-in."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _signin_page(
    request: Request,
    template: str,
    context: dict[str, object],
    *,
    status_code: int = 200,
) -> Response:
    nonce = request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        template,
        {**context, "signin_csrf": signin_csrf(request, nonce)},
        status_code=status_code,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
        path="/",
    )
    return response


async def _signin_form(request: Request) -> dict[str, str]:
    form = await request.form()
    nonce = request.cookies.get(SIGNIN_COOKIE)
    sent = form.get(CSRF_FIELD)
    if (
        not nonce
        or not isinstance(sent, str)
        or not hmac.compare_digest(signin_csrf(request, nonce), sent)
    ):
        raise Forbidden("the sign-in form expired; reload the page and try again")
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.get("/")
async def home(request: Request) -> Response:
    try:
        viewer = await signed_in(request)
    except SignInRequired:
        return _signin_page(request, "signin.html", {"email": "", "next": "/", "errors": {}})
    return render(request, "home.html", {"title": "Overview"}, viewer=viewer)


@router.get("/sign-in")
async def sign_in_page(
    request: Request, next: Annotated[str | None, Query(max_length=500)] = None
) -> Response:
    return _signin_page(
        request, "signin.html", {"email": "", "next": _safe_next(next), "errors": {}}
    )


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await _signin_form(request)
    runtime = runtime_of(request)
    email = text(form, "email")
    target = _safe_next(form.get("next"))
    mail = BackgroundTasks()
    try:
        sent = await request_code(
            runtime.db,
            runtime.settings,
            email,
            client_ip=client_ip(request),
            mail_later=lambda m: mail.add_task(send_quietly, runtime.settings, runtime.db, m),
        )
    except ValidationFailed as exc:
        return _signin_page(
            request,
            "signin.html",
            {
                "email": email,
                "next": target,
                "errors": {"email": exc.details["fields"][0]["message"]},
            },
            status_code=422,
        )
    except RateLimited as exc:
        return _signin_page(
            request,
            "signin.html",
            {"email": email, "next": target, "errors": {"email": exc.message}},
            status_code=429,
        )
    # The mail goes out after the answer, so the answer's timing tells nothing either.
    response = _signin_page(
        request, "signin_code.html", {"email": sent.email, "next": target, "errors": {}}
    )
    response.background = mail
    return response


@router.get("/sign-up")
async def sign_up_page(request: Request) -> Response:
    return _signin_page(request, "signup.html", {"name": "", "email": "", "errors": {}})


@router.post("/sign-up")
async def sign_up(request: Request) -> Response:
    """A specialist signs up: name and email, then the mailed code (``/sign-in/code``) opens
    a session on the new profile."""
    form = await _signin_form(request)
    runtime = runtime_of(request)
    name, email = text(form, "name"), text(form, "email")
    mail = BackgroundTasks()
    try:
        sent = await request_signup(
            runtime.db,
            runtime.settings,
            name,
            email,
            client_ip=client_ip(request),
            mail_later=lambda m: mail.add_task(send_quietly, runtime.settings, runtime.db, m),
        )
    except (ValidationFailed, RateLimited) as exc:
        errors = (
            {str(f["field"]): str(f["message"]) for f in exc.details["fields"]}
            if isinstance(exc, ValidationFailed)
            else {"email": exc.message}
        )
        return _signin_page(
            request,
            "signup.html",
            {"name": name, "email": email, "errors": errors},
            status_code=exc.status,
        )
    response = _signin_page(
        request,
        "signin_code.html",
        {"email": sent.email, "next": "/specialist?done=welcome", "errors": {}, "signup": True},
    )
    response.background = mail
    return response


@router.post("/sign-in/code")
async def sign_in_code(request: Request) -> Response:
    form = await _signin_form(request)
    runtime = runtime_of(request)
    email = text(form, "email")
    target = _safe_next(form.get("next"))
    try:
        token = await verify_code(
            runtime.db, runtime.settings, email, text(form, "code"), client_ip=client_ip(request)
        )
    except ValidationFailed as exc:
        return _signin_page(
            request,
            "signin_code.html",
            {
                "email": email,
                "next": target,
                "errors": {"code": exc.details["fields"][0]["message"]},
            },
            status_code=422,
        )
    except RateLimited as exc:
        return _signin_page(
            request,
            "signin_code.html",
            {"email": email, "next": target, "errors": {"code": exc.message}},
            status_code=429,
        )
    response = RedirectResponse(target, status_code=303)
    set_session_cookie(request, response, token)
    response.delete_cookie(SIGNIN_COOKIE, path="/")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    viewer: Viewer = await signed_in(request)
    await posted_form(request, viewer)
    runtime = runtime_of(request)
    await end_session(runtime.db, runtime.settings, viewer.token)
    response = redirect("/sign-in", "signed-out")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response
