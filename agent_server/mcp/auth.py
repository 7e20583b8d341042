"""Bearer API keys for the MCP HTTP endpoint, checked through the SDK's ``TokenVerifier``.

A key read from the database is remembered for ``KNOWN_KEY_SECONDS`` (by its HMAC digest,
active agents only), so the next requests with it pass the HTTP layer without a read of their
own. Such a request is marked: the tool call's first transaction reads the agent again (one
statement inside a transaction it runs anyway), so a revoked key, a suspension or a ban takes
effect on the very next call, and the key is forgotten. A request that makes no call
(``tools/list``) is refused once the memory runs out, so the window is kept to a second: one
read a second per busy key.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

from mcp.server.auth.provider import AccessToken

from agent_server.accounts.keys import looks_like_api_key
from agent_server.accounts.models import AgentStatus
from agent_server.accounts.service import hash_api_key
from agent_server.gate import Caller, authenticate
from agent_server.kernel.errors import Unauthorized
from agent_server.runtime import Runtime

# Where the verified caller travels with the access token to the tool call.
CALLER_CLAIM = "agent_server_caller"
# True when the caller was remembered from an earlier request rather than read now.
REMEMBERED_CLAIM = "agent_server_remembered"

KNOWN_KEY_SECONDS = 1.0
KNOWN_KEYS = 10_000


class ApiKeyVerifier:
    """Accepts a bearer token when it is a live agent API key (any status).

    Status, email and funding are the gate's business: a known but unverified agent reaches
    the tools and gets EMAIL_NOT_VERIFIED there, with instructions, instead of a bare 401.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # digest -> (trusted until, monotonic seconds; the caller's claims)
        self._known: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def _digest(self, token: str) -> str:
        return hash_api_key(self.runtime.settings, token)

    def forget(self, token: str) -> None:
        """Stop trusting ``token`` without a read (it was revoked, or its agent changed)."""
        self._known.pop(self._digest(token), None)

    async def verify_token(self, token: str) -> AccessToken | None:
        if not looks_like_api_key(token):
            return None
        digest = self._digest(token)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[0] > now:
            return _token(token, known[1], remembered=True)
        try:
            async with self.runtime.db.engine.connect() as conn:
                caller = await authenticate(conn, self.runtime.settings, token)
        except Unauthorized:
            self._known.pop(digest, None)
            return None
        claims = asdict(caller)
        if caller.status is AgentStatus.ACTIVE and caller.email_verified:
            self._known[digest] = (now + KNOWN_KEY_SECONDS, claims)
            self._known.move_to_end(digest)
            while len(self._known) > KNOWN_KEYS:
                self._known.popitem(last=False)
        else:
            self._known.pop(digest, None)
        return _token(token, claims, remembered=False)


def _token(token: str, caller: dict[str, Any], *, remembered: bool) -> AccessToken:
    return AccessToken(
        token=token,
        client_id=f"agent-{caller['agent_id']}",
        scopes=[],
        claims={CALLER_CLAIM: caller, REMEMBERED_CLAIM: remembered},
    )


def caller_from_token(token: AccessToken | None) -> Caller | None:
    """The caller the verifier resolved for this request's bearer token, if any."""
    if token is None or not token.claims or CALLER_CLAIM not in token.claims:
        return None
    data = dict(token.claims[CALLER_CLAIM])
    data["status"] = AgentStatus(data["status"])
    return Caller(**data)


def remembered(token: AccessToken | None) -> bool:
    """Whether the verifier took this request's caller from memory rather than a read."""
    return bool(token is not None and token.claims and token.claims.get(REMEMBERED_CLAIM))
