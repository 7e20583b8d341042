"""What an agent's owner does next: verify the email, make the deposit that activates the
account (how much, to which address), connect an MCP client with a ready configuration."""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.requests import Request

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.kernel.money import decimal_text, usd_decimal
from agent_server.kernel.store import UnitOfWork
from agent_server.runtime import Runtime
from wallets.addresses import agent_addresses
from wallets.currencies import currency_info
from wallets.rates import usd_to_base_units

KEY_PLACEHOLDER = "YOUR_API_KEY"


@dataclass(frozen=True)
class Guide:
    step: str  # "verify", "deposit", "connect" or "ready"
    verified: bool
    funded: bool
    currency: str
    activation_usd: str
    activation_amount: str | None  # in coins of ``currency`` at the current rate
    address: str | None
    endpoint: str
    config: str  # an MCP client entry for streamable HTTP
    command: str  # the CLI line that prints the same for a client


def mcp_endpoint(runtime: Runtime, request: Request) -> str:
    base = runtime.settings.public_url or str(request.base_url)
    return base.rstrip("/") + "/mcp"


async def guide_for(
    uow: UnitOfWork, runtime: Runtime, request: Request, agent: Agent, key: str | None = None
) -> Guide:
    currency = (agent.currency or "USDT").upper()
    info = currency_info(currency)
    activation = runtime.settings.activation_usd_micros
    try:
        rate = runtime.rates.usd_micros_per_coin(currency)
        coins: str | None = decimal_text(usd_to_base_units(activation, currency, rate), currency)
    except Exception:  # no rate now: the USD figure still says how much
        coins = None
    record = (await agent_addresses(uow, agent.id)).get(str(info.chain))
    endpoint = mcp_endpoint(runtime, request)
    shown_key = key or KEY_PLACEHOLDER
    config = json.dumps(
        {
            "mcpServers": {
                "agent-server": {
                    "type": "http",
                    "url": endpoint,
                    "headers": {"Authorization": f"Bearer {shown_key}"},
                }
            }
        },
        indent=2,
    )
    command = (
        f"agent-server mcp-config --client claude-code --http --url {endpoint} "
        f"--api-key {shown_key}"
    )
    funded = agent.status != AgentStatus.PENDING_DEPOSIT.value
    if not agent.email_verified:
        step = "verify"
    elif not funded:
        step = "deposit"
    elif agent.last_accessed_at is None:
        step = "connect"
    else:
        step = "ready"
    return Guide(
        step=step,
        verified=agent.email_verified,
        funded=funded,
        currency=currency,
        activation_usd=usd_decimal(activation),
        activation_amount=coins,
        address=record.address if record is not None else None,
        endpoint=endpoint,
        config=config,
        command=command,
    )
