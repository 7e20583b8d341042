"""The ASGI application served by ``agent-server serve``: REST, MCP, dashboard, health."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from agent_server import __version__
from agent_server.api.middleware import RequestContext
from agent_server.logs import get_logger
from agent_server.runtime import Runtime
from agent_server.store.migrate import current_revision, head_revision

log = get_logger(__name__)


def create_app(runtime: Runtime) -> FastAPI:
    """Build the whole HTTP surface around one runtime."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("server.start", version=__version__)
        try:
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

    app.add_middleware(RequestContext)
    return app
