"""Helpers for the MCP tests: agents with real API keys in a chosen state, and tool calls."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from mcp import Client
from mcp.types import CallToolResult

from agent_server.accounts.keys import new_api_key, shown_prefix
from agent_server.accounts.models import Agent, AgentStatus
from agent_server.accounts.service import hash_api_key
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from billing.wallet_funds import adjust_balance
from wallets.addresses import deposit_address_for

CLI = str(Path(sys.executable).parent / "agent-server")

SPEC_TOOLS = {
    "search-specialists",
    "view-profile",
    "create-schedule",
    "book-slot",
    "get-availability",
    "list-bookings",
    "cancel-booking",
    "reschedule-booking",
    "get-booking",
    "accept-booking",
    "reject-booking",
    "complete-booking",
    "leave-review",
    "open-dispute",
    "list-schedules",
    "update-schedule",
    "delete-schedule",
    "get-wallet",
    "get-deposit-address",
    "list-transactions",
    "get-usage",
    "quote",
    "get-spending-limits",
    "set-spending-limits",
    "request-withdrawal",
    "list-withdrawals",
    "cancel-withdrawal",
}


async def make_agent(
    db: Database,
    settings: Settings,
    *,
    status: AgentStatus = AgentStatus.ACTIVE,
    verified: bool = True,
    currency: str = "USDC",
    funds: int = 0,
) -> tuple[int, str]:
    """An agent with a real API key in the given state; (agent id, key)."""
    key = new_api_key()
    async with db.uow() as uow:
        now = uow.clock.now()
        agent = Agent(
            name="Test agent",
            email=f"agent-{secrets.token_hex(6)}@example.com",
            email_verified=verified,
            status=status.value,
            api_key_hash=hash_api_key(settings, key),
            api_key_prefix=shown_prefix(key),
            currency=currency,
            profile={},
            created_at=now,
            updated_at=now,
        )
        uow.session.add(agent)
        await uow.flush()
        # As registration does: the agent's deposit address for its currency.
        await deposit_address_for(uow, agent.id, currency)
        if funds:
            await adjust_balance(
                uow, agent_id=agent.id, currency=currency, amount=funds, reason="test funding"
            )
        await uow.commit()
        return agent.id, key


def body(result: CallToolResult) -> dict[str, Any]:
    """The structured content of a result (errors included)."""
    assert result.structured_content is not None, result.content
    return dict(result.structured_content)


def error_code(result: CallToolResult) -> str:
    assert result.is_error, f"expected an error, got {result.structured_content}"
    return str(body(result)["error"]["code"])


async def call_ok(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {result.content}"
    data = body(result)
    # The text block is what a model reads: a rendering with the receipt's call id first.
    text = result.content[0].text  # type: ignore[union-attr]
    assert text and not text.startswith("{"), text
    if data.get("receipt"):
        assert data["receipt"]["call_id"] in text.splitlines()[0], text
    return data


def start_serve(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """``agent-server serve`` on 127.0.0.1:``port`` with ``env``, its output in ``log``,
    once its ``/readyz`` answers (bounded)."""
    proc = subprocess.Popen(
        [CLI, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.2)
