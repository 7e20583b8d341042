"""Every REST error in SPEC's body: ``{"error": {code, status, message, details}}``.

- ``AgentServerError`` subclasses carry their own code and status (RATE_LIMITED adds a
  ``Retry-After`` header);
- request validation becomes VALIDATION_ERROR with one ``details.fields`` entry per field;
- unknown routes and methods become NOT_FOUND (404) and METHOD_NOT_ALLOWED (405);
- a database that cannot serve right now (``store.outage``) becomes SERVICE_UNAVAILABLE
  (503, ``Retry-After``);
- a booking change that lost to a concurrent one (``store.conflicts``) becomes
  BOOKING_CONFLICT (409);
- anything else is logged with its traceback and answered with a generic INTERNAL_ERROR.
"""

from __future__ import annotations

import traceback
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.kernel.errors import (
    AgentServerError,
    RateLimited,
    ServiceUnavailable,
    ValidationFailed,
    clipped,
    field_names,
)
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store.conflicts import lost_update
from agent_server.kernel.store.outage import RETRY_AFTER_SECONDS, database_unavailable

log = get_logger(__name__)

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}
_SOURCES = ("body", "query", "path", "header", "cookie")


class ErrorInfo(BaseModel):
    code: str
    status: int
    message: str
    details: dict[str, Any]


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorInfo


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the error body, for a route's decorator."""
    return {status: {"model": ErrorResponse} for status in statuses}


def error_body(code: str, status: int, message: str, details: dict[str, Any] | None = None) -> Any:
    return {"error": {"code": code, "status": status, "message": message, "details": details or {}}}


def field_name(loc: tuple[int | str, ...]) -> str:
    """``("body", "skills", 3)`` as ``skills[3]``; the request part alone when nothing follows."""
    parts = list(loc)
    source = str(parts.pop(0)) if parts and parts[0] in _SOURCES else "body"
    name = ""
    for part in parts:
        if isinstance(part, int):
            # Array query parameters are named "tags[]": item 3 is "tags[3]".
            name = name.removesuffix("[]") + f"[{part}]"
        else:
            name += f".{part}" if name else str(part)
    return name or source


def _message(error: dict[str, Any]) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field; remove it"
    if kind == "json_invalid":
        return "is not valid JSON"
    message = str(error.get("msg", "is invalid"))
    return message.removeprefix("Value error, ")


def validation_fields(errors: Any) -> list[dict[str, str]]:
    """One ``{"field", "message"}`` per field, the first problem of each."""
    fields: dict[str, str] = {}
    for error in errors:
        loc = tuple(error.get("loc", ()))
        name = "body" if error.get("type") == "json_invalid" else field_name(loc)
        fields.setdefault(name, _message(error))
    return [{"field": name, "message": message} for name, message in fields.items()]


def error_response(exc: AgentServerError) -> JSONResponse:
    """SPEC's error body for ``exc`` with its status (and ``Retry-After`` when rate limited
    or unavailable)."""
    headers = None
    if isinstance(exc, RateLimited | ServiceUnavailable) and "retry_after" in exc.details:
        headers = {"Retry-After": str(exc.details["retry_after"])}
    return JSONResponse(exc.to_body(), status_code=exc.status, headers=headers)


async def _agent_server_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AgentServerError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = validation_fields(exc.errors())
    names = field_names([f["field"] for f in fields])
    first = f"{fields[0]['field']}: {fields[0]['message']}" if fields else "invalid input"
    message = first if len(fields) == 1 else f"{len(fields)} fields are invalid: {names}"
    return error_response(ValidationFailed(message, fields))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 400:
        # FastAPI's answer to a body it cannot decode (not UTF-8, not form data...).
        return JSONResponse(
            error_body(
                "VALIDATION_ERROR",
                422,
                f"body: {exc.detail}",
                {"fields": [{"field": "body", "message": "send a JSON object (UTF-8)"}]},
            ),
            status_code=422,
        )
    path = clipped(request.url.path)
    if status == 404:
        message = f"No such endpoint: {request.method} {path}"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {path}"
        if allowed:
            message += f"; use {allowed}"
    else:
        message = str(exc.detail)
    return JSONResponse(
        error_body(_HTTP_CODES.get(status, "HTTP_ERROR"), status, message),
        status_code=status,
        headers=exc.headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above and the catch-all on ``app``."""
    app.add_exception_handler(AgentServerError, _agent_server_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(CatchAll)


class CatchAll:
    """Turns an unhandled exception into a logged event and a generic 500 body.

    Unlike Starlette's ``ServerErrorMiddleware`` it does not re-raise, so no traceback reaches
    the caller or the server's own error output.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            raise  # no one to answer: ``RequestContext`` notes it
        except Exception as exc:
            conflict = lost_update(exc)
            if conflict is not None:
                if not started:
                    await error_response(conflict)(scope, receive, send)
                return
            if database_unavailable(exc):
                log.warning(
                    "api.database_unavailable",
                    method=scope.get("method"),
                    path=scope.get("path"),
                    error=type(exc).__name__,
                )
                if not started:
                    await error_response(ServiceUnavailable(RETRY_AFTER_SECONDS))(
                        scope, receive, send
                    )
                return
            # A plain traceback string: renderers that print local variables could
            # otherwise write request bodies and headers (codes, keys) into the log.
            log.error(
                "api.unhandled_error",
                method=scope.get("method"),
                path=scope.get("path"),
                error=type(exc).__name__,
                traceback="".join(traceback.format_exception(exc)),
            )
            if started:
                return
            response = JSONResponse(
                error_body(
                    "INTERNAL_ERROR",
                    500,
                    "Something went wrong on our side; the error was logged. Try again later.",
                ),
                status_code=500,
            )
            await response(scope, receive, send)
