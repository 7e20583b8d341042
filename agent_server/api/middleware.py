"""ASGI middleware binding a request id and the W3C traceparent to every log line, and
writing one line per request: method, path, status and duration."""

from __future__ import annotations

import secrets
import time

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.kernel.logs import (
    bind_request,
    clear_request,
    get_logger,
    parse_or_make_traceparent,
)

log = get_logger(__name__)

# Probes that a load balancer sends every few seconds: logged only when they fail.
_PROBES = ("/healthz", "/readyz")
# A path that is itself a secret (an iCal feed's token) is logged without it.
_SECRET_PATHS = ("/calendar/feed/",)


def logged_path(path: str) -> str:
    """The request path as a log line may show it."""
    for prefix in _SECRET_PATHS:
        if path.startswith(prefix):
            return f"{prefix}***"
    return path


class RequestContext:
    """Accepts or creates ``X-Request-Id`` and ``traceparent``; echoes both on the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id", "")[:64] or secrets.token_hex(8)
        if not request_id.replace("-", "").isalnum():
            request_id = secrets.token_hex(8)
        traceparent = parse_or_make_traceparent(headers.get("traceparent"))
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["traceparent"] = traceparent
        bind_request(request_id, traceparent)
        started = time.perf_counter()
        status = 0

        async def send_with_ids(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"traceparent", traceparent.encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        except ClientDisconnect:
            # The client went away before its request was read: there is no one to answer
            # and nothing failed here, so no error (and no traceback) in the log.
            log.info("request.client_disconnected", path=logged_path(scope.get("path", "")))
        finally:
            path = scope.get("path", "")
            quiet = path in _PROBES and 0 < status < 400
            (log.debug if quiet else log.info)(
                "http.request",
                method=scope.get("method", ""),
                path=logged_path(path),
                status=status or None,  # None: no answer was sent
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
            clear_request()
