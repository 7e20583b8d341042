"""The REST API under ``/api``: one FastAPI application mounted into the server's app.

Routers plug in through ``ROUTER_MODULES``: a module listed there exposes
``router: fastapi.APIRouter`` whose paths are relative to ``/api`` (``"/agent/wallet"`` is
served at ``/api/agent/wallet``). To add one, write the module and add ONE line here. Routers
take the caller from ``agent_server.api.auth.CurrentAgent`` and raise the errors of
``agent_server.kernel.errors``; ``agent_server.api.errors`` turns every failure into SPEC's body.

The OpenAPI document is served at ``/api/openapi.json``, Swagger UI at ``/api/docs`` and ReDoc
at ``/api/redoc``, their scripts and styles from the installed ``fastapi-offline`` package
(under ``/api/docs-assets``): the pages work without internet access.
"""

from __future__ import annotations

import importlib

from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline

from agent_server import __version__
from agent_server.api.errors import install_error_handlers
from agent_server.runtime import Runtime

ROUTER_MODULES: tuple[str, ...] = (
    "agent_server.api.agents",
    "agent_server.api.reviews",
    "agent_server.api.bookings",
    "agent_server.api.disputes",
    "agent_server.api.wallet_history",
    "agent_server.api.wallet_balances",
    "agent_server.api.webhooks",
    "agent_server.api.withdrawals",
    "agent_server.api.spending_limits",
)


def build_api(runtime: Runtime) -> FastAPI:
    """The ``/api`` application: every router of ``ROUTER_MODULES`` and the error handlers."""
    api = FastAPIOffline(
        title="Agent Server API",
        version=__version__,
        description="Agent accounts, wallets and usage. MCP tools are served at `/mcp`.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url="/redoc",
        static_url="/docs-assets",
    )
    api.state.runtime = runtime
    for name in ROUTER_MODULES:
        router = importlib.import_module(name).router
        assert isinstance(router, APIRouter), f"{name}.router must be an APIRouter"
        api.include_router(router)
    install_error_handlers(api)
    return api
