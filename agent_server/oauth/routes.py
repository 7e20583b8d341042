"""What the server adds around the SDK's OAuth endpoints (``install_oauth_edges``):

- ``/.well-known/oauth-authorization-server`` also says ``client_id_metadata_document_supported``
  and lists ``none`` among the token endpoint's auth methods (public clients with PKCE, as
  registration and metadata documents already allow);
- ``GET /authorize`` with a client ID metadata document that cannot be used answers 400
  ``invalid_request`` saying why (not found, not JSON, another ``client_id``...), where the SDK
  alone would only say the client is unknown;
- ``POST /register`` counts against ``AGENT_SERVER_OAUTH_REGISTER_PER_IP_PER_HOUR`` per client
  address: beyond it, 429 with ``Retry-After`` and nothing registered.

OAuth endpoints answer in OAuth's error shape (``error``, ``error_description``), not the REST
error body, since OAuth clients read them.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_server.accounts.service import limit_ip
from agent_server.kernel.errors import RateLimited
from agent_server.oauth.client_documents import ClientDocumentError, documents_for, is_document_url
from agent_server.runtime import Runtime

METADATA_PATH = "/.well-known/oauth-authorization-server"
AUTHORIZE_PATH = "/authorize"
REGISTER_PATH = "/register"
_NO_STORE = {"Cache-Control": "no-store"}


def install_oauth_edges(app: Starlette, runtime: Runtime) -> None:
    """Wrap the SDK's OAuth routes of ``app`` (none when OAuth is off: nothing changes)."""
    routes = app.router.routes
    for index, route in enumerate(routes):
        if not isinstance(route, Route):
            continue
        wrapped: ASGIApp
        if route.path == METADATA_PATH:
            wrapped = MetadataExtras(route.app)
        elif route.path == AUTHORIZE_PATH:
            wrapped = DocumentCheck(route.app, runtime)
        elif route.path == REGISTER_PATH:
            wrapped = RegistrationLimit(route.app, runtime)
        else:
            continue
        methods = sorted(route.methods or ())
        routes[index] = Route(route.path, endpoint=wrapped, methods=methods or None)


class MetadataExtras:
    """The SDK's authorization-server metadata with what this server also supports."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []

        async def keep(message: Message) -> None:
            messages.append(message)

        await self.app(scope, receive, keep)
        start = messages[0] if messages else None
        body = b"".join(m.get("body", b"") for m in messages[1:])
        if start is None or start.get("status") != 200:
            for message in messages:
                await send(message)
            return
        metadata: dict[str, Any] = json.loads(body)
        metadata["client_id_metadata_document_supported"] = True
        methods = list(metadata.get("token_endpoint_auth_methods_supported") or [])
        if "none" not in methods:
            metadata["token_endpoint_auth_methods_supported"] = [*methods, "none"]
        content = json.dumps(metadata).encode()
        headers = [
            (name, value) for name, value in start.get("headers", []) if name != b"content-length"
        ]
        headers.append((b"content-length", str(len(content)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": content})


class DocumentCheck:
    """``/authorize``: a client ID metadata document is read first, and refused clearly."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            client_id = Request(scope).query_params.get("client_id") or ""
            if is_document_url(client_id):
                try:
                    await documents_for(self.runtime).load(client_id)
                except ClientDocumentError as exc:
                    reply = JSONResponse(
                        {
                            "error": "invalid_request",
                            "error_description": (
                                f"client_id: the client ID metadata document at {client_id} {exc}"
                            ),
                        },
                        status_code=400,
                        headers=_NO_STORE,
                    )
                    await reply(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class RegistrationLimit:
    """``/register``: at most ``oauth_register_per_ip_per_hour`` registrations per address."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            request = Request(scope)
            try:
                await limit_ip(
                    self.runtime.db,
                    "OAuth client registration",
                    request.client.host if request.client else None,
                    self.runtime.settings.oauth_register_per_ip_per_hour,
                )
            except RateLimited as exc:
                retry_after = str(exc.details.get("retry_after", 3600))
                reply = JSONResponse(
                    {"error": "rate_limited", "error_description": exc.message},
                    status_code=429,
                    headers={**_NO_STORE, "Retry-After": retry_after},
                )
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)
