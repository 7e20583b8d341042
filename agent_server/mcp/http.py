"""MCP over streamable HTTP at ``/mcp``, inside the server's ASGI app.

Stateless mode (no server-side sessions), so several processes can serve behind a load
balancer. Bearer API keys go through the SDK's ``TokenVerifier``; unknown keys get 401 with
``WWW-Authenticate`` and the protected-resource metadata URL. The SDK refuses unknown Host
headers on loopback binds; ``AGENT_SERVER_ALLOWED_HOSTS``/``ALLOWED_ORIGINS`` extend that list
for deployments behind a proxy.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager

from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_server.api.errors import CatchAll
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.logs import get_logger
from agent_server.mcp.listing import ListingReplay
from agent_server.mcp.server import build_mcp_server, http_api_key, http_caller
from agent_server.oauth.routes import install_oauth_edges
from agent_server.runtime import Runtime

log = get_logger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MCP_PATH = "/mcp"


class McpFirst:
    """ASGI middleware sending ``/mcp`` requests straight to the MCP app, without matching
    them against every REST and dashboard route first (the MCP app is mounted last)."""

    def __init__(self, app: ASGIApp, mcp_app: ASGIApp) -> None:
        self.app = app
        self.mcp_app = mcp_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == MCP_PATH:
            await self.mcp_app(scope, receive, send)
            return
        await self.app(scope, receive, send)


def refused_body(error: ValidationFailed) -> Response:
    """A request body refused before parsing, answered as the SDK answers one it cannot parse:
    a JSON-RPC error with a null id (parse error, or invalid request for a body too large),
    SPEC's error body in its ``data``."""
    code = INVALID_REQUEST if error.status == 413 else PARSE_ERROR
    reply = JSONRPCError(
        jsonrpc="2.0",
        id=None,
        error=ErrorData(code=code, message=error.message, data=error.to_body()),
    )
    return Response(
        reply.model_dump_json(by_alias=True, exclude_unset=True),
        status_code=413 if error.status == 413 else 400,
        media_type="application/json",
    )


def transport_security(runtime: Runtime, bind_host: str) -> TransportSecuritySettings:
    """Which Host and Origin headers the MCP endpoint accepts."""
    settings = runtime.settings
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *settings.allowed_hosts]
    origins = [
        "http://127.0.0.1:*",
        "http://localhost:*",
        "http://[::1]:*",
        *settings.allowed_origins,
    ]
    if bind_host not in LOOPBACK_HOSTS and not settings.allowed_hosts:
        log.warning(
            "mcp.host_check_disabled",
            reason="bound to a non-loopback address without AGENT_SERVER_ALLOWED_HOSTS",
        )
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    if bind_host not in LOOPBACK_HOSTS:
        hosts.append(f"{bind_host}:*")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


def _replay_listings(app: Starlette) -> None:
    """Put ``ListingReplay`` around the MCP endpoint, inside its bearer check: a repeated
    ``tools/list`` is answered with the bytes the SDK wrote for it the first time."""
    for route in app.routes:
        if isinstance(route, Route) and route.path == MCP_PATH:
            guard = route.app
            if isinstance(guard, RequireAuthMiddleware):
                guard.app = ListingReplay(guard.app)
            else:
                route.app = ListingReplay(guard)
            return
    raise RuntimeError(f"the MCP app serves no route at {MCP_PATH}")


def mcp_http_app(
    runtime: Runtime,
    *,
    bind_host: str,
    public_url: str,
    toolsets: Iterable[str] | None = None,
    read_only: bool = False,
) -> tuple[Starlette, AbstractAsyncContextManager[None]]:
    """The MCP Starlette app (serving ``/mcp``) and the context that must wrap its lifetime."""
    server = build_mcp_server(
        runtime,
        api_key_source=http_api_key,
        caller_source=http_caller,
        toolsets=toolsets,
        read_only=read_only,
        http_auth=True,
        resource_url=f"{public_url.rstrip('/')}{MCP_PATH}",
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        json_response=True,
        transport_security=transport_security(runtime, bind_host),
        host=bind_host,
    )
    # Metadata documents as client ids, and a rate limit on registration (when OAuth is on).
    install_oauth_edges(app, runtime)
    _replay_listings(app)
    # Inside the app's own 500 handler, around its bearer check (which reads the database):
    # a database that cannot serve gets a 503 with Retry-After, not a bare 500.
    app.add_middleware(CatchAll)
    return app, server.session_manager.run()
