"""Concurrent sign-up requests: the database settles every race."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from accounts_support import outbox_code, registered, settings_for
from sqlalchemy import func, select

from agent_server.accounts.models import Agent, EmailCode
from agent_server.accounts.schemas import RegisterAgent
from agent_server.accounts.service import resend_verification, verify_email
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import RateLimited, ValidationFailed
from agent_server.kernel.store import Database, make_engine
from agent_server.services.registration import register_agent


@pytest.fixture
def settings(database_url: str) -> Settings:
    return settings_for(database_url)


@pytest.fixture
async def other(database_url: str, clock: FakeClock) -> AsyncIterator[Database]:
    """A second engine on the same database, standing for a second server process."""
    database = Database(make_engine(database_url), clock)
    yield database
    await database.dispose()


async def test_one_email_registers_once_under_concurrency(
    db: Database, other: Database, settings: Settings
) -> None:
    attempts = [
        register_agent(
            (db if i % 2 else other).uow(),
            settings,
            RegisterAgent(name=f"twin {i}", email="twin@example.com"),
        )
        for i in range(6)
    ]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, ValidationFailed)]
    assert len(refused) == 5, outcomes
    assert all(r.details["fields"][0]["field"] == "email" for r in refused)
    async with db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Agent)) == 1


async def test_concurrent_wrong_guesses_still_lock_after_five(
    db: Database, other: Database, settings: Settings
) -> None:
    await registered(db, settings, "guess@example.com")
    code = await outbox_code(db, "guess@example.com")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    guesses = [
        verify_email((db if i % 2 else other).uow(), settings, "guess@example.com", wrong)
        for i in range(9)
    ]
    outcomes = await asyncio.gather(*guesses, return_exceptions=True)
    assert all(isinstance(o, ValidationFailed) for o in outcomes)
    async with db.uow() as uow:
        assert await uow.session.scalar(select(EmailCode.attempts)) == 5
    with pytest.raises(ValidationFailed):
        await verify_email(db.uow(), settings, "guess@example.com", code)


async def test_concurrent_resends_send_at_most_three(
    db: Database, other: Database, settings: Settings
) -> None:
    await registered(db, settings, "burst@example.com")
    resends = [
        resend_verification((db if i % 2 else other).uow(), settings, "burst@example.com")
        for i in range(7)
    ]
    outcomes = await asyncio.gather(*resends, return_exceptions=True)
    assert sum(isinstance(o, RateLimited) for o in outcomes) == 4
    async with db.uow() as uow:
        reasons = (await uow.session.execute(select(EmailCode.reason))).scalars().all()
        live = await uow.session.scalar(
            select(func.count())
            .select_from(EmailCode)
            .where(EmailCode.superseded_at.is_(None), EmailCode.used_at.is_(None))
        )
    assert sorted(reasons) == ["registration", "resend", "resend", "resend"]
    assert live == 1
