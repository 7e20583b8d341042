"""A new agent's page says what to do next, in order: verify the email, deposit the amount
that activates it to its address (with a copy button), connect a client with a ready
configuration; the wallet page's QR codes have alt text and the addresses copy buttons."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from mcp_support import make_agent
from pydantic import SecretStr
from smtp_sink import SmtpSink

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.app import create_app
from agent_server.dashboard.sessions import request_code, verify_code
from agent_server.dashboard.web import SESSION_COOKIE
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime
from wallets.addresses import agent_addresses
from wallets.rates import StaticRateSource

OWNER = "owner@example.com"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
async def owner(
    db: Database, database_url: str, smtp: SmtpSink
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        smtp_url=smtp.url,
        secret_pepper=SecretStr("guide-test-pepper"),
        public_url="https://mcp.example.com",
        start_watchers=False,
        start_worker=False,
    )
    rates = StaticRateSource({"USDC": 1_000_000, "ETH": 2_500_000_000, "USDT": 1_000_000})
    runtime = Runtime(settings, db, rates=rates)
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(runtime)), base_url="http://127.0.0.1:8000"
    )
    http.settings = settings  # type: ignore[attr-defined]
    http.smtp = smtp  # type: ignore[attr-defined]
    async with http:
        yield http


async def _owned(db: Database, settings: Settings, **kwargs: object) -> int:
    agent_id, _ = await make_agent(db, settings, **kwargs)  # type: ignore[arg-type]
    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        agent.owner_email = OWNER
        await uow.commit()
    return agent_id


async def _sign_in(http: httpx.AsyncClient, db: Database) -> None:
    settings: Settings = http.settings  # type: ignore[attr-defined]
    smtp: SmtpSink = http.smtp  # type: ignore[attr-defined]
    before = len(smtp.to(OWNER))
    await request_code(db, settings, OWNER)
    while len(smtp.to(OWNER)) <= before:
        await asyncio.sleep(0.01)
    code = await asyncio.to_thread(smtp.latest_code, OWNER)
    http.cookies.set(SESSION_COOKIE, await verify_code(db, settings, OWNER, code))


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_the_next_step_follows_the_agent(owner: httpx.AsyncClient, db: Database) -> None:
    settings: Settings = owner.settings  # type: ignore[attr-defined]
    agent_id = await _owned(
        db, settings, status=AgentStatus.PENDING_DEPOSIT, verified=False, currency="ETH"
    )
    await _sign_in(owner, db)

    page = (await owner.get(f"/agents/{agent_id}")).text
    assert 'data-step="verify"' in page.split("<ol", 1)[0]
    assert "POST /api/agent/verify-email" in page

    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        agent.email_verified = True
        email = agent.email
        address = (await agent_addresses(uow, agent_id))["evm"].address
        await uow.commit()
    page = (await owner.get(f"/agents/{agent_id}")).text
    assert 'id="next-step"' in page and 'data-step="deposit"' in page.split("<ol", 1)[0]
    # 20 USD at 2,500 USD per ETH: 0.008 ETH, to the agent's own address, with a copy button.
    assert "send at least 0.008 ETH (worth 20.00 USD at today's rate)" in _text(page)
    assert f'value="{address}"' in page and 'data-copy="guide-address"' in page
    assert email in page

    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        agent.status = AgentStatus.ACTIVE.value
        await uow.commit()
    page = (await owner.get(f"/agents/{agent_id}")).text
    assert 'data-step="connect"' in page.split("<ol", 1)[0]
    config = re.search(r'<textarea id="guide-config"[^>]*>(.*?)</textarea>', page, re.S)
    assert config is not None
    document = json.loads(config.group(1).replace("&#34;", '"').replace("&quot;", '"'))
    assert document == {
        "mcpServers": {
            "agent-server": {
                "type": "http",
                "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": "Bearer YOUR_API_KEY"},
            }
        }
    }
    assert "agent-server mcp-config --client claude-code --http" in page

    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        agent.last_accessed_at = uow.clock.now()
        await uow.commit()
    assert 'id="next-step"' not in (await owner.get(f"/agents/{agent_id}")).text


async def test_wallet_addresses_have_copy_buttons_and_qr_alt_text(
    owner: httpx.AsyncClient, db: Database
) -> None:
    settings: Settings = owner.settings  # type: ignore[attr-defined]
    agent_id = await _owned(db, settings, currency="USDC")
    await _sign_in(owner, db)
    page = (await owner.get(f"/agents/{agent_id}/wallet")).text
    for currency in ("ETH", "USDT", "USDC"):
        address = re.search(rf'id="address-{currency}">([^<]+)<', page)
        assert address is not None, currency
        assert f'aria-label="QR code of the {currency} deposit address {address.group(1)}"' in page
        assert f'data-copy="address-{currency}"' in page
    assert '<script src="/static/copy.js" defer></script>' in page
