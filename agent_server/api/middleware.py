"""ASGI middleware binding a request id and the W3C traceparent to every log line."""

from __future__ import annotations

import secrets

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.logs import (
    bind_request,
    clear_request,
    get_logger,
    parse_or_make_traceparent,
)

log = get_logger(__name__)


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

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
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
            log.info("request.client_disconnected", path=scope.get("path", ""))
        finally:
            clear_request()
