"""``install_dashboard(app, runtime)``: the dashboard's pages and static files on the server's
app. Call it before mounting the MCP app at ``/``, which answers whatever is left."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from agent_server.dashboard.pages import (
    consent,
    console,
    operator,
    owner,
    reviews,
    signin,
    specialist,
    specialist_account,
    withdrawals,
)
from agent_server.dashboard.web import HERE
from agent_server.runtime import Runtime


def install_dashboard(app: FastAPI, runtime: Runtime) -> None:
    """Add the dashboard to ``app`` (whose ``state.runtime`` the pages read)."""
    app.state.runtime = runtime
    for module in (
        signin,
        owner,
        reviews,
        specialist,
        specialist_account,
        operator,
        console,
        consent,
        withdrawals,
    ):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
