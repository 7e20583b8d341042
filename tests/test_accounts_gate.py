"""The gate in front of every MCP tool: each step, in SPEC's order, and the rate limits."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from accounts_support import outbox_code, registered, settings_for
from sqlalchemy import select

from agent_server.accounts.models import AgentStatus, RateCounter
from agent_server.accounts.service import verify_email
from agent_server.accounts.status import StatusAction, change_status
from agent_server.gate import Caller, reread, tool_limit
from agent_server.gate import admit as gate_admit
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import (
    AccountInactive,
    AgentServerError,
    EmailNotVerified,
    RateLimited,
    Unauthorized,
)
from agent_server.kernel.store import Database, make_engine
from wallets.rates import FakeRateSource, RateSource


@pytest.fixture
def settings(database_url: str) -> Settings:
    return settings_for(database_url)


async def admit(
    db: Database, key: str | None, tool: str, *, settings: Settings, rates: RateSource | None = None
) -> Caller:
    """All five steps, each call counted at once: ``gate.admit`` (steps 1-4), then the pass
    counts the call (step 5) in a transaction of its own, which commits even when the count
    is over the limit."""
    gate = await gate_admit(db, key, tool, settings=settings, rates=rates)
    async with db.uow() as uow:
        try:
            await gate.before_commit(uow)
        finally:
            await uow.commit()
    return gate.caller


async def _verify(db: Database, settings: Settings, email: str) -> None:
    await verify_email(db.uow(), settings, email, await outbox_code(db, email))


async def _status(db: Database, agent_id: int, action: StatusAction) -> None:
    async with db.uow() as uow:
        await change_status(uow, agent_id, action, actor="tester", reason="gate test")
        await uow.commit()


async def _refusal(
    db: Database, settings: Settings, key: str | None, tool: str = "quote"
) -> AgentServerError:
    with pytest.raises(AgentServerError) as caught:
        await admit(db, key, tool, settings=settings)
    return caught.value


async def _active_agent(db: Database, settings: Settings, email: str) -> str:
    agent_id, key = await registered(db, settings, email)
    await _verify(db, settings, email)
    await _status(db, agent_id, StatusAction.ACTIVATE)
    return key


async def test_unknown_missing_and_malformed_keys_are_unauthorized(
    db: Database, settings: Settings
) -> None:
    _, key = await registered(db, settings, "a@example.com")
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    for candidate in (None, "", "not-a-key", "Bearer " + key, wrong, key + "x"):
        error = await _refusal(db, settings, candidate)
        assert isinstance(error, Unauthorized)
        assert error.to_body()["error"]["code"] == "UNAUTHORIZED"
        assert "POST /api/agent/register" in error.message


async def test_a_key_hashed_under_another_pepper_is_refused(
    db: Database, settings: Settings
) -> None:
    _, key = await registered(db, settings, "a@example.com")
    other = settings_for(settings.database_url, secret_pepper="another-pepper")
    assert isinstance(await _refusal(db, other, key), Unauthorized)


async def test_suspended_is_refused_before_the_email_and_funding_checks(
    db: Database, settings: Settings
) -> None:
    agent_id, key = await registered(db, settings, "s@example.com")  # unverified, unfunded
    await _status(db, agent_id, StatusAction.SUSPEND)
    error = await _refusal(db, settings, key)
    assert isinstance(error, AccountInactive)
    assert error.details["status"] == "suspended"
    assert "reactivat" in error.message


async def test_banned_is_refused_even_when_verified_and_active(
    db: Database, settings: Settings
) -> None:
    key = await _active_agent(db, settings, "b@example.com")
    caller = await admit(db, key, "quote", settings=settings)
    await _status(db, caller.agent_id, StatusAction.BAN)
    error = await _refusal(db, settings, key)
    assert isinstance(error, AccountInactive)
    assert error.details["status"] == "banned"
    assert error.status == 403


async def test_unverified_email_is_refused_before_the_funding_check(
    db: Database, settings: Settings
) -> None:
    _, key = await registered(db, settings, "u@example.com")  # pending_deposit too
    error = await _refusal(db, settings, key)
    assert isinstance(error, EmailNotVerified)
    assert error.details["verify"] == {
        "endpoint": "POST /api/agent/verify-email",
        "body": {"email": "u@example.com", "code": "<6-digit code>"},
    }
    assert error.details["resend"]["endpoint"] == "POST /api/agent/resend-verification"


async def test_unverified_active_agent_is_still_refused(db: Database, settings: Settings) -> None:
    agent_id, key = await registered(db, settings, "ua@example.com")
    await _status(db, agent_id, StatusAction.ACTIVATE)
    assert isinstance(await _refusal(db, settings, key), EmailNotVerified)


async def test_verified_but_unfunded_agent_is_told_where_to_deposit(
    db: Database, settings: Settings
) -> None:
    _, key = await registered(db, settings, "p@example.com", currency="BTC")
    await _verify(db, settings, "p@example.com")
    error = await _refusal(db, settings, key)
    assert isinstance(error, AccountInactive)
    assert error.details["status"] == "pending_deposit"
    assert error.details["currency"] == "BTC"
    assert error.details["deposit_address"].startswith("bcrt1")
    assert error.details["deposit_address"] in error.message
    assert error.details["minimum_deposit_usd"] == "20.00"
    assert error.details["minimum_deposit"] == "0.00033334"  # at the static 60,000 USD
    rates = FakeRateSource()
    rates.set("BTC", 40_000_000_000)
    with pytest.raises(AccountInactive) as priced:
        await admit(db, key, "quote", settings=settings, rates=rates)
    assert priced.value.details["minimum_deposit"] == "0.0005"


async def test_active_verified_agent_is_admitted(db: Database, settings: Settings) -> None:
    key = await _active_agent(db, settings, "ok@example.com")
    caller = await admit(db, key, "search-specialists", settings=settings)
    assert isinstance(caller, Caller)
    assert caller.status == "active" and caller.email_verified
    assert caller.email == "ok@example.com"
    assert key.startswith(caller.key_prefix) and len(caller.key_prefix) < len(key) // 2
    with pytest.raises(AttributeError):
        caller.status = "banned"  # type: ignore[misc]


async def test_reactivation_restores_access(db: Database, settings: Settings) -> None:
    key = await _active_agent(db, settings, "r@example.com")
    caller = await admit(db, key, "quote", settings=settings)
    await _status(db, caller.agent_id, StatusAction.SUSPEND)
    assert isinstance(await _refusal(db, settings, key), AccountInactive)
    await _status(db, caller.agent_id, StatusAction.REACTIVATE)
    assert (await admit(db, key, "quote", settings=settings)).status == "active"


async def test_book_slot_is_limited_to_ten_a_minute_with_retry_after(
    db: Database, settings: Settings, clock: FakeClock
) -> None:
    key = await _active_agent(db, settings, "rl@example.com")
    clock.advance(timedelta(seconds=15))  # 15 s into a minute window
    for _ in range(10):
        await admit(db, key, "book-slot", settings=settings)
    error = await _refusal(db, settings, key, "book-slot")
    assert isinstance(error, RateLimited)
    assert error.details["retry_after"] == 45
    assert error.details["limit"] == 10
    # Other tools have their own budget.
    await admit(db, key, "get-wallet", settings=settings)
    clock.advance(timedelta(seconds=45))
    await admit(db, key, "book-slot", settings=settings)


async def test_default_limits_and_overrides() -> None:
    defaults = Settings()
    assert tool_limit(defaults, "search-specialists") == 100
    assert tool_limit(defaults, "book-slot") == 10
    assert tool_limit(defaults, "view-profile") == 60
    custom = Settings(rate_limits={"book-slot": 3}, rate_limit_default=7)
    assert tool_limit(custom, "book-slot") == 3
    assert tool_limit(custom, "search-specialists") == 100
    assert tool_limit(custom, "view-profile") == 7


async def test_search_allows_a_hundred_a_minute(db: Database, settings: Settings) -> None:
    key = await _active_agent(db, settings, "s100@example.com")
    for _ in range(100):
        await admit(db, key, "search-specialists", settings=settings)
    assert isinstance(await _refusal(db, settings, key, "search-specialists"), RateLimited)


async def test_refused_callers_do_not_use_up_the_rate_budget(
    db: Database, settings: Settings
) -> None:
    tight = settings_for(settings.database_url, rate_limits={"book-slot": 2})
    agent_id, key = await registered(db, tight, "budget@example.com")
    for _ in range(5):
        assert isinstance(await _refusal(db, tight, key, "book-slot"), EmailNotVerified)
    await _verify(db, tight, "budget@example.com")
    await _status(db, agent_id, StatusAction.ACTIVATE)
    await admit(db, key, "book-slot", settings=tight)
    await admit(db, key, "book-slot", settings=tight)
    assert isinstance(await _refusal(db, tight, key, "book-slot"), RateLimited)


async def test_rate_limit_holds_across_processes(
    db: Database, settings: Settings, database_url: str, clock: FakeClock
) -> None:
    """Two engines on one database stand for two server processes: they share one budget."""
    key = await _active_agent(db, settings, "multi@example.com")
    other = Database(make_engine(database_url), clock)
    try:
        outcomes = await asyncio.gather(
            *(
                admit(db if i % 2 else other, key, "book-slot", settings=settings)
                for i in range(16)
            ),
            return_exceptions=True,
        )
    finally:
        await other.dispose()
    admitted = [o for o in outcomes if isinstance(o, Caller)]
    limited = [o for o in outcomes if isinstance(o, RateLimited)]
    assert len(admitted) == 10
    assert len(limited) == 6
    async with db.uow() as uow:
        hits = (
            (
                await uow.session.execute(
                    select(RateCounter.hits).where(RateCounter.key.endswith(":book-slot"))
                )
            )
            .scalars()
            .all()
        )
    assert hits == [16]  # one shared counter for the tool, not one per process


async def test_rereading_a_remembered_caller_sees_the_agent_and_the_limit_as_they_are_now(
    db: Database, settings: Settings, clock: FakeClock
) -> None:
    """What a remembered HTTP request's call reads in its first statement."""
    tight = settings.model_copy(update={"rate_limits": {"search-specialists": 2}})
    key = await _active_agent(db, tight, "reread@example.com")
    caller = await admit(db, key, "search-specialists", settings=tight)
    async with db.uow() as uow:
        current, decision = await reread(uow, tight, key, caller, "search-specialists")
    assert current == caller
    assert decision.allowed and decision.hits == 1
    await admit(db, key, "search-specialists", settings=tight)
    async with db.uow() as uow:
        _current, decision = await reread(uow, tight, key, caller, "search-specialists")
    assert not decision.allowed and 1 <= decision.retry_after <= 60
    clock.advance(timedelta(minutes=1))
    async with db.uow() as uow:
        _current, decision = await reread(uow, tight, key, caller, "search-specialists")
    assert decision.allowed  # a new window

    await _status(db, caller.agent_id, StatusAction.SUSPEND)
    async with db.uow() as uow:
        current, _decision = await reread(uow, tight, key, caller, "search-specialists")
    assert current.status is AgentStatus.SUSPENDED
    with pytest.raises(Unauthorized):
        async with db.uow() as uow:
            await reread(uow, tight, key[:-1] + ("A" if key[-1] != "A" else "B"), caller, "quote")
