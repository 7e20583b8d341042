"""Dependencies every REST router uses: the runtime, and the agent behind the bearer key.

    from agent_server.api.auth import CurrentAgent, RuntimeDep

    @router.get("/agent/wallet")
    async def wallet(caller: CurrentAgent, runtime: RuntimeDep) -> ...:
        ...  # caller.agent_id is authenticated; its status is not checked here

``current_agent`` answers UNAUTHORIZED for a missing, malformed, unknown, regenerated or
deleted key. It does not apply the MCP gate's status, email and rate checks: account
endpoints must work for agents that are still pending, unverified or suspended.
``ChangingAgent`` is the caller of a route that changes the account (a secret, a token, a
deposit currency, limits, withdrawals): ACCOUNT_INACTIVE for a banned agent, whose owner may
read but change nothing, as on the dashboard.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from agent_server.accounts.status import refuse_status_if_read_only
from agent_server.gate import Caller, authenticate
from agent_server.runtime import Runtime

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="The agent's API key: `Authorization: Bearer as_live_...`",
)


def get_runtime(request: Request) -> Runtime:
    """The runtime the API was built with."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def client_ip(request: Request) -> str | None:
    """The caller's address (behind a proxy, as uvicorn's proxy headers resolve it)."""
    return request.client.host if request.client else None


async def current_agent(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Caller:
    """The agent whose API key is in the ``Authorization: Bearer`` header."""
    runtime = get_runtime(request)
    async with runtime.db.uow() as uow:
        return await authenticate(
            uow, runtime.settings, credentials.credentials if credentials else None
        )


async def changing_agent(caller: Annotated[Caller, Depends(current_agent)]) -> Caller:
    """The caller, unless banned: then ACCOUNT_INACTIVE and nothing changes."""
    refuse_status_if_read_only(caller.agent_id, caller.status)
    return caller


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CurrentAgent = Annotated[Caller, Depends(current_agent)]
ChangingAgent = Annotated[Caller, Depends(changing_agent)]
