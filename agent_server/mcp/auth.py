"""Bearer API keys for the MCP HTTP endpoint, checked through the SDK's ``TokenVerifier``."""

from __future__ import annotations

from mcp.server.auth.provider import AccessToken

from agent_server.errors import Unauthorized
from agent_server.gate import authenticate
from agent_server.runtime import Runtime


class ApiKeyVerifier:
    """Accepts a bearer token when it is a live agent API key (any status).

    Status, email and funding are the gate's business: a known but unverified agent reaches
    the tools and gets EMAIL_NOT_VERIFIED there, with instructions, instead of a bare 401.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            async with self.runtime.db.uow() as uow:
                caller = await authenticate(uow, self.runtime.settings, token)
        except Unauthorized:
            return None
        return AccessToken(token=token, client_id=f"agent-{caller.agent_id}", scopes=[])
