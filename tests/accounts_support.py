"""Helpers shared by the account tests: the app over HTTP, sign-ups, codes from the outbox."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from smtp_sink import SmtpSink
from sqlalchemy import select

from agent_server.accounts.schemas import RegisterAgent
from agent_server.accounts.status import StatusAction, change_status
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from agent_server.mail import OutboxMail
from agent_server.runtime import Runtime
from agent_server.services.registration import register_agent

PEPPER = "test-pepper-0123456789"


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_pepper": SecretStr(PEPPER),
        "register_per_ip_per_hour": 1000,
        "email_checks_per_ip_per_hour": 1000,
        # No chain watchers or webhook worker: these tests drive accounts only.
        "start_watchers": False,
        "start_worker": False,
    }
    values.update(overrides)
    return Settings(**values)


def wrong_code(code: str) -> str:
    """A six-digit code that is not ``code``."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Api:
    """The whole app over HTTP (httpx's ASGI transport), its runtime and its mail server."""

    client: httpx.AsyncClient
    runtime: Runtime
    smtp: SmtpSink | None
    clock: FakeClock
    app: Any

    def from_address(self, host: str) -> httpx.AsyncClient:
        """Another client of the same app, calling from ``host``."""
        transport = httpx.ASGITransport(app=self.app, client=(host, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    async def register(self, email: str = "bot@example.com", **fields: Any) -> httpx.Response:
        return await self.client.post(
            "/api/agent/register", json={"name": "Booking Bot", "email": email, **fields}
        )

    def code_for(self, email: str) -> str:
        assert self.smtp is not None
        return self.smtp.latest_code(email)

    async def verify(self, email: str, code: str) -> httpx.Response:
        return await self.client.post(
            "/api/agent/verify-email", json={"email": email, "code": code}
        )

    async def resend(self, email: str) -> httpx.Response:
        return await self.client.post("/api/agent/resend-verification", json={"email": email})

    async def signup(self, email: str, *, verify: bool = True, **fields: Any) -> tuple[int, str]:
        """Register (and verify) an agent; its id and API key."""
        response = await self.register(email, **fields)
        assert response.status_code == 201, response.text
        body = response.json()
        if verify:
            verified = await self.verify(email, self.code_for(email))
            assert verified.status_code == 200, verified.text
        return int(body["agent_id"]), str(body["api_key"])

    async def set_status(self, agent_id: int, action: str, reason: str = "test") -> None:
        async with self.runtime.db.uow() as uow:
            await change_status(uow, agent_id, StatusAction(action), actor="tester", reason=reason)
            await uow.commit()


@asynccontextmanager
async def api_for(
    database_url: str, clock: FakeClock, smtp: SmtpSink | None, **overrides: Any
) -> AsyncIterator[Api]:
    if smtp is not None:
        overrides.setdefault("smtp_url", smtp.url)
    from agent_server.app import create_app

    settings = settings_for(database_url, **overrides)
    runtime = Runtime(settings=settings, db=Database(make_engine(database_url), clock))
    app = create_app(runtime)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client, runtime, smtp, clock, app)
    await runtime.close()


async def outbox_code(db: Database, email: str) -> str:
    """The code in the newest outbox mail to ``email`` (mail without SMTP)."""
    async with db.uow() as uow:
        body = (
            await uow.session.execute(
                select(OutboxMail.body)
                .where(OutboxMail.to_addr == email)
                .order_by(OutboxMail.id.desc())
                .limit(1)
            )
        ).scalar_one()
    match = re.search(r"\b(\d{6})\b", body)
    assert match
    return match.group(1)


async def registered(
    db: Database, settings: Settings, email: str, **fields: Any
) -> tuple[int, str]:
    """An agent registered through the service (mail to the outbox); its id and key."""
    result = await register_agent(
        db.uow(), settings, RegisterAgent(name="Agent", email=email, **fields)
    )
    return result.agent.id, result.api_key
