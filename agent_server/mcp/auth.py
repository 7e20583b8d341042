"""Bearer API keys for the MCP HTTP endpoint, checked through the SDK's ``TokenVerifier``."""

from __future__ import annotations

from dataclasses import asdict

from mcp.server.auth.provider import AccessToken

from agent_server.accounts.models import AgentStatus
from agent_server.errors import Unauthorized
from agent_server.gate import Caller, authenticate
from agent_server.runtime import Runtime

# Where the verified caller travels with the access token to the tool call.
CALLER_CLAIM = "agent_server_caller"


class ApiKeyVerifier:
    """Accepts a bearer token when it is a live agent API key (any status).

    Status, email and funding are the gate's business: a known but unverified agent reaches
    the tools and gets EMAIL_NOT_VERIFIED there, with instructions, instead of a bare 401.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            async with self.runtime.db.engine.connect() as conn:
                caller = await authenticate(conn, self.runtime.settings, token)
        except Unauthorized:
            return None
        return AccessToken(
            token=token,
            client_id=f"agent-{caller.agent_id}",
            scopes=[],
            claims={CALLER_CLAIM: asdict(caller)},
        )


def caller_from_token(token: AccessToken | None) -> Caller | None:
    """The caller the verifier resolved for this request's bearer token, if any."""
    if token is None or not token.claims or CALLER_CLAIM not in token.claims:
        return None
    data = dict(token.claims[CALLER_CLAIM])
    data["status"] = AgentStatus(data["status"])
    return Caller(**data)
