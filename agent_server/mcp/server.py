"""The MCP server: our registry's tools on the SDK's ``MCPServer``, over HTTP or stdio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from mcp.types import Tool as ListedTool

from agent_server import __version__
from agent_server.gate import Caller
from agent_server.kernel.logs import rich_hidden
from agent_server.mcp.auth import ApiKeyVerifier, caller_from_token, remembered
from agent_server.mcp.pipeline import run_tool
from agent_server.mcp.registry import ToolSpec
from agent_server.mcp.tools import REGISTRY, describe_price
from agent_server.oauth.provider import http_auth as http_auth_kwargs
from agent_server.runtime import Runtime

INSTRUCTIONS = """\
Agent Server lets you find human experts and book time with them, paying per call from your
prepaid wallet. Typical flow: search-specialists (each result lists free slots with a slot_id)
→ view-profile if you need details → book-slot with that slot_id and an idempotency key you
choose (reuse the same key when you retry) → list-bookings / cancel-booking. quote tells what a
call costs before you make it; get-wallet shows balances. Times are ISO 8601; slot times are
UTC unless a field says otherwise. Prices read like "25.00 USDC"; the structured part gives
amounts as integers in base units (USD micro-dollars, USDT/USDC 10^-6, ETH gwei, BTC sat).
A tool without a Price line is free; a paid one takes max_price (USD micro-dollars: above it
the call is refused, uncharged) and its result carries a receipt. Retry a call that takes an
idempotency_key with the same key: it acts and charges once. Failed or refused calls cost
nothing; their result has isError and the structured content
{"error": {"code", "status", "message", "details", "next_step"}}, and its text says the same."""

ApiKeySource = Callable[[], str | None]


def http_api_key() -> str | None:
    """The bearer key the HTTP auth middleware verified for this request."""
    token = get_access_token()
    return token.token if token is not None else None


def http_caller() -> Caller | None:
    """The agent the HTTP auth middleware resolved from this request's key."""
    return caller_from_token(get_access_token())


class ToolServer(MCPServer[Runtime]):
    """An ``MCPServer`` whose tools/list answer is built once: it changes only with the tool
    set, which is fixed when the server is built."""

    _listed: list[ListedTool] | None = None

    async def list_tools(self) -> list[ListedTool]:
        if self._listed is None:
            self._listed = await super().list_tools()
        return self._listed


def build_mcp_server(
    runtime: Runtime,
    *,
    api_key_source: ApiKeySource,
    caller_source: Callable[[], Caller | None] | None = None,
    toolsets: Iterable[str] | None = None,
    read_only: bool = False,
    http_auth: bool = False,
    resource_url: str | None = None,
) -> MCPServer[Runtime]:
    """An ``MCPServer`` serving the selected tools through the gate and the meter."""

    verifier = ApiKeyVerifier(runtime) if http_auth else None

    async def invoke(spec: ToolSpec[Any, Any], raw: dict[str, Any], ctx: Context) -> CallToolResult:
        known = caller_source() if caller_source is not None else None
        key = api_key_source()
        forget = None if verifier is None or key is None else partial(verifier.forget, key)
        return await run_tool(
            runtime,
            spec,
            raw,
            key,
            authenticated=known,
            recheck=forget is not None and remembered(get_access_token()),
            forget_key=forget,
        )

    @asynccontextmanager
    async def lifespan(_server: MCPServer[Runtime]) -> AsyncIterator[Runtime]:
        yield runtime

    auth_kwargs: dict[str, Any] = {}
    if verifier is not None:
        # API keys and OAuth access tokens, and the OAuth endpoints when the URL allows them.
        url = resource_url or f"http://{runtime.settings.host}:{runtime.settings.port}/mcp"
        auth_kwargs = http_auth_kwargs(runtime, verifier, url)
    with rich_hidden():  # the SDK's logging set-up, see kernel.logs
        return ToolServer(
            "agent-server",
            title="Agent Server",
            instructions=INSTRUCTIONS,
            version=__version__,
            tools=REGISTRY.sdk_tools(
                invoke, toolsets, read_only=read_only, describe_price=describe_price(runtime)
            ),
            lifespan=lifespan,
            **auth_kwargs,
        )
