"""The ASGI application served by ``agent-server serve``: REST, MCP, dashboard, health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from starlette.types import ASGIApp, Scope

from agent_server import __version__
from agent_server.api import build_api
from agent_server.api.body_limits import BodyLimits
from agent_server.api.calendar_feed import calendar_app
from agent_server.api.errors import CatchAll, error_response
from agent_server.api.metrics import metrics_endpoint
from agent_server.api.middleware import RequestContext
from agent_server.booking.search.profiles import warm_profile_index
from agent_server.dashboard.routes import install_dashboard
from agent_server.dashboard.web import error_page
from agent_server.events.mail_delivery import start_mail_sender
from agent_server.events.worker import start_worker
from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.heap import settle_after_start
from agent_server.kernel.logs import get_logger
from agent_server.kernel.metrics import RequestMetrics
from agent_server.kernel.recursion import restore_recursion_limit
from agent_server.kernel.store.migrate import current_revision, head_revision
from agent_server.maintenance import start_maintenance
from agent_server.mcp.http import MCP_PATH, McpFirst, mcp_http_app, refused_body
from agent_server.runtime import Runtime
from agent_server.services.clock import start_clock
from agent_server.services.deposits import DEPOSIT_FOLLOW_UP
from agent_server.services.withdrawal_jobs import start_withdrawal_jobs
from agent_server.services.withdrawal_sender import start_withdrawal_sender
from wallets.embedded import start_embedded_chain_and_watcher

log = get_logger(__name__)

# Paths whose errors are SPEC's JSON body whoever asks; /mcp answers JSON-RPC errors.
JSON_PATHS = ("/api/", "/calendar/", "/.well-known/", "/healthz", "/readyz", "/metrics")


def refused(scope: Scope, error: ValidationFailed) -> ASGIApp:
    """The answer to a request body refused before parsing, in its surface's language: a
    browser (or htmx) on the dashboard gets the error page, any other client SPEC's body."""
    request = Request(scope)
    if request.url.path == MCP_PATH:
        return refused_body(error)
    browser = "text/html" in request.headers.get("accept", "") or "hx-request" in request.headers
    if request.url.path.startswith(JSON_PATHS) or not browser:
        return error_response(error)
    return error_page(request, error)


async def not_found(request: Request, _exc: Exception) -> Response:
    """A URL nothing answers: the dashboard's page for a browser, SPEC's body for any other
    client (what the MCP app, mounted last, leaves unanswered)."""
    error = NotFound(
        f"Nothing is at {request.url.path[:200]}: check the address, or start from the "
        "overview at /."
    )
    browser = "text/html" in request.headers.get("accept", "")
    if request.url.path.startswith(JSON_PATHS) or not browser:
        return error_response(error)
    return error_page(request, error)


def listening_url(host: str, port: int) -> str:
    """The base URL of a server listening on ``host``:``port``."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def create_app(
    runtime: Runtime,
    *,
    bind_host: str | None = None,
    port: int | None = None,
    toolsets: Iterable[str] | None = None,
    read_only: bool = False,
    settle: bool = False,
) -> FastAPI:
    """Build the whole HTTP surface around one runtime.

    ``bind_host`` and ``port`` are where the server listens (the host decides which Host
    headers the MCP endpoint accepts; without ``AGENT_SERVER_PUBLIC_URL`` both name the URL in
    the OAuth metadata and the 401's ``WWW-Authenticate``); ``toolsets`` and ``read_only``
    choose the MCP tools served. ``settle``: once started, freeze what start-up left for the
    garbage collector (``kernel.heap``), for a process that serves this app for its life.
    """
    # Whatever the imports did, request bodies are parsed under the default limit.
    restore_recursion_limit()
    host = bind_host or runtime.settings.host
    public_url = runtime.settings.public_url or listening_url(
        host, runtime.settings.port if port is None else port
    )
    mcp_app, mcp_lifetime = mcp_http_app(
        runtime, bind_host=host, public_url=public_url, toolsets=toolsets, read_only=read_only
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("server.start", version=__version__)
        try:
            async with (
                mcp_lifetime,
                start_embedded_chain_and_watcher(runtime, follow_up=DEPOSIT_FOLLOW_UP),
                start_worker(runtime),
                start_mail_sender(runtime),
                start_maintenance(runtime),
                start_clock(runtime),
                start_withdrawal_sender(runtime),
                start_withdrawal_jobs(runtime),
            ):
                if settle:  # the process serves this app for its life (``kernel.heap``)
                    await warm_profile_index(runtime.db)
                    settle_after_start()
                yield
        finally:
            await runtime.close()
            log.info("server.stop")

    app = FastAPI(
        title="Agent Server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            async with runtime.db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            current = await current_revision(runtime.db.engine)
        except Exception as exc:  # the database is down or unreachable
            log.warning("readyz.database_unreachable", error=type(exc).__name__)
            return JSONResponse(
                {"status": "unavailable", "database": "unreachable"}, status_code=503
            )
        head = head_revision()
        if current != head:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": "migrations pending",
                    "current": current,
                    "head": head,
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "database": "ok", "revision": current})

    app.add_route("/metrics", metrics_endpoint(runtime), include_in_schema=False)
    app.mount("/api", build_api(runtime))
    install_dashboard(app, runtime)  # pages and /static, ahead of the MCP catch-all
    app.mount("/calendar", calendar_app(runtime))
    # Last: the MCP app answers /mcp and its protected-resource metadata, and what nothing
    # answers gets the branded 404.
    mcp_app.add_exception_handler(404, not_found)
    mcp_app.state.runtime = runtime  # the 404 page reads the clock as every page does
    app.mount("/", mcp_app)
    app.add_middleware(McpFirst, mcp_app=mcp_app)
    # Before any parser (REST, forms, MCP) sees a body: bounded size and JSON nesting.
    app.add_middleware(
        BodyLimits,
        max_bytes=runtime.settings.max_body_bytes,
        max_json_depth=runtime.settings.max_json_depth,
        refuse=refused,
    )
    # Around everything (the MCP endpoint's bearer check reads the database too): no
    # exception reaches the client as a bare 500 or a traceback.
    app.add_middleware(CatchAll)
    app.add_middleware(RequestContext)
    app.add_middleware(RequestMetrics)
    return app
