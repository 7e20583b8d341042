"""Dashboard sign-in on both backends: mailed codes (hashed, expiring, limited tries), sessions
kept server-side and ended by sign-out, CSRF tokens bound to the session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from pydantic import SecretStr
from smtp_sink import SmtpSink
from sqlalchemy import select

from agent_server.accounts.models import Agent, AgentStatus
from agent_server.booking.models import Specialist
from agent_server.dashboard.models import DashboardSession, SignInCode
from agent_server.dashboard.people import owned_agent, person_for
from agent_server.dashboard.sessions import (
    CODES_PER_HOUR,
    csrf_ok,
    csrf_token,
    end_session,
    request_code,
    request_signup,
    session_email,
    verify_code,
)
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import NotFound, RateLimited, ValidationFailed
from agent_server.kernel.store import Database


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


def settings_for(db_url: str, smtp: SmtpSink) -> Settings:
    return Settings(
        database_url=db_url,
        smtp_url=smtp.url,
        secret_pepper=SecretStr("dashboard-test-pepper"),
        operator_emails=["Ops@Example.com"],
        start_watchers=False,
        start_worker=False,
    )


async def add_agent(db: Database, email: str, owner_email: str | None = None) -> int:
    async with db.uow() as uow:
        now = uow.clock.now()
        agent = Agent(
            name=f"agent {email}",
            email=email,
            owner_email=owner_email,
            email_verified=True,
            status=AgentStatus.ACTIVE.value,
            api_key_hash=f"hash-{email}",
            api_key_prefix="as_live_test",
            profile={},
            created_at=now,
            updated_at=now,
        )
        uow.session.add(agent)
        await uow.commit()
        return agent.id


def code_error(exc: pytest.ExceptionInfo[ValidationFailed]) -> str:
    return str(exc.value.details["fields"][0]["message"])


async def test_a_mailed_code_opens_a_session_and_is_stored_only_as_a_hash(
    db: Database, database_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(database_url, smtp)
    await add_agent(db, "bot-one@agents.example", owner_email="owner@example.com")
    await request_code(db, settings, "  Owner@Example.com ")
    code = await asyncio.to_thread(smtp.latest_code, "owner@example.com")
    async with db.uow() as uow:
        rows = list((await uow.session.execute(select(SignInCode))).scalars())
        await uow.commit()
    assert len(rows) == 1 and code not in rows[0].code_hash and len(rows[0].code_hash) == 64
    token = await verify_code(db, settings, "owner@example.com", code)
    assert await session_email(db, settings, token) == "owner@example.com"
    async with db.uow() as uow:
        stored = list((await uow.session.execute(select(DashboardSession))).scalars())
        await uow.commit()
    assert [s.token_hash for s in stored] != [token] and token not in stored[0].token_hash
    # A used code opens nothing a second time.
    with pytest.raises(ValidationFailed):
        await verify_code(db, settings, "owner@example.com", code)


async def test_wrong_codes_use_up_five_tries_then_the_code_is_locked(
    db: Database, database_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(database_url, smtp)
    await add_agent(db, "tries@agents.example")
    await request_code(db, settings, "tries@agents.example")
    code = await asyncio.to_thread(smtp.latest_code, "tries@agents.example")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    messages = []
    for _ in range(5):
        with pytest.raises(ValidationFailed) as exc:
            await verify_code(db, settings, "tries@agents.example", wrong)
        messages.append(code_error(exc))
    assert messages[0] == "wrong code; 4 tries left"
    assert "locked" in messages[-1]
    with pytest.raises(ValidationFailed) as exc:
        await verify_code(db, settings, "tries@agents.example", code)
    assert "locked" in code_error(exc)


async def test_codes_expire_after_15_minutes_and_a_new_one_replaces_the_old(
    db: Database, database_url: str, smtp: SmtpSink, clock: FakeClock
) -> None:
    settings = settings_for(database_url, smtp)
    await add_agent(db, "late@agents.example")
    await request_code(db, settings, "late@agents.example")
    first = await asyncio.to_thread(smtp.latest_code, "late@agents.example")
    clock.advance(timedelta(minutes=15, seconds=1))
    with pytest.raises(ValidationFailed) as exc:
        await verify_code(db, settings, "late@agents.example", first)
    assert "expired" in code_error(exc)
    before = len(smtp.to("late@agents.example"))
    await request_code(db, settings, "late@agents.example")
    while len(smtp.to("late@agents.example")) == before:
        await asyncio.sleep(0.01)
    second = await asyncio.to_thread(smtp.latest_code, "late@agents.example")
    if second != first:
        with pytest.raises(ValidationFailed):
            await verify_code(db, settings, "late@agents.example", first)
    assert await verify_code(db, settings, "late@agents.example", second)


async def test_unknown_emails_get_no_mail_and_codes_per_hour_are_limited(
    db: Database, database_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(database_url, smtp)
    answer = await request_code(db, settings, "nobody@example.com")
    assert answer.email == "nobody@example.com"
    await asyncio.sleep(0.2)
    assert smtp.to("nobody@example.com") == []
    with pytest.raises(ValidationFailed):
        await request_code(db, settings, "not an email")
    await add_agent(db, "busy@agents.example")
    for _ in range(CODES_PER_HOUR):
        await request_code(db, settings, "busy@agents.example")
    with pytest.raises(RateLimited):
        await request_code(db, settings, "busy@agents.example")


async def test_sessions_expire_and_sign_out_ends_them(
    db: Database, database_url: str, smtp: SmtpSink, clock: FakeClock
) -> None:
    settings = settings_for(database_url, smtp)
    await request_code(db, settings, "ops@example.com")  # an operator, by settings
    code = await asyncio.to_thread(smtp.latest_code, "ops@example.com")
    token = await verify_code(db, settings, "ops@example.com", code)
    csrf = csrf_token(settings, token)
    assert csrf_ok(settings, token, csrf)
    tampered = csrf[:-1] + ("1" if csrf[-1] == "0" else "0")
    assert not csrf_ok(settings, token, None) and not csrf_ok(settings, token, tampered)
    assert not csrf_ok(settings, token + "x", csrf)
    clock.advance(timedelta(hours=11))
    assert await session_email(db, settings, token) == "ops@example.com"
    await end_session(db, settings, token)
    assert await session_email(db, settings, token) is None
    await request_code(db, settings, "ops@example.com")
    while len(smtp.to("ops@example.com")) < 2:
        await asyncio.sleep(0.01)
    code = await asyncio.to_thread(smtp.latest_code, "ops@example.com")
    token = await verify_code(db, settings, "ops@example.com", code)
    clock.advance(timedelta(hours=12, seconds=1))
    assert await session_email(db, settings, token) is None


async def test_people_see_only_their_own_agents_and_profile(
    db: Database, database_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(database_url, smtp)
    own_a = await add_agent(db, "a1@agents.example", owner_email="ann@example.com")
    own_b = await add_agent(db, "ann@example.com")  # the agent's own email is hers too
    other = await add_agent(db, "b1@agents.example", owner_email="ben@example.com")
    async with db.uow() as uow:
        now = uow.clock.now()
        uow.session.add(
            Specialist(
                name="Ann Expert",
                timezone="UTC",
                email="Ann@Example.com",
                created_at=now,
                updated_at=now,
            )
        )
        await uow.commit()
    async with db.uow() as uow:
        ann = await person_for(uow, settings, "ann@example.com")
        assert [a.id for a in ann.agents] == [own_a, own_b]
        assert ann.specialist_id is not None and not ann.operator
        assert (await owned_agent(uow, ann, own_a)).id == own_a
        with pytest.raises(NotFound):
            await owned_agent(uow, ann, other)
        ops = await person_for(uow, settings, "ops@example.com")
        assert ops.operator and ops.agents == () and ops.specialist_id is None


async def test_a_sign_up_code_creates_one_profile_and_signs_in_an_existing_one(
    db: Database, database_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(database_url, smtp)
    await request_signup(db, settings, "  Nina   Neu ", "Nina@Example.com")
    code = await asyncio.to_thread(smtp.latest_code, "nina@example.com")
    token = await verify_code(db, settings, "nina@example.com", code)
    async with db.uow() as uow:
        person = await person_for(uow, settings, "nina@example.com")
        specialist = await uow.session.get(Specialist, person.specialist_id)
        assert specialist is not None
        assert (specialist.name, specialist.email, specialist.timezone) == (
            "Nina Neu",
            "nina@example.com",
            "UTC",
        )
        await uow.commit()
    assert await session_email(db, settings, token) == "nina@example.com"
    # Signing up again with the same email, under another name, signs in to that profile.
    mails = len(smtp.to("nina@example.com"))
    await request_signup(db, settings, "Someone Else", "nina@example.com")
    while len(smtp.to("nina@example.com")) == mails:
        await asyncio.sleep(0.01)
    again = smtp.to("nina@example.com")[-1].get_payload(decode=True)
    assert b"already has a specialist profile" in again  # type: ignore[operator]
    code = await asyncio.to_thread(smtp.latest_code, "nina@example.com")
    await verify_code(db, settings, "nina@example.com", code)
    async with db.uow() as uow:
        names = list(
            (
                await uow.session.execute(
                    select(Specialist.name).where(Specialist.email == "nina@example.com")
                )
            ).scalars()
        )
        await uow.commit()
    assert names == ["Nina Neu"]


async def test_sign_up_needs_a_name_and_counts_against_the_code_limit(
    db: Database, database_url: str, smtp: SmtpSink
) -> None:
    settings = settings_for(database_url, smtp)
    with pytest.raises(ValidationFailed) as exc:
        await request_signup(db, settings, " \t", "name@example.com")
    assert exc.value.details["fields"][0]["field"] == "name"
    with pytest.raises(ValidationFailed) as exc:
        await request_signup(db, settings, "Bad\x00Name", "name@example.com")
    assert exc.value.details["fields"][0]["field"] == "name"
    for _ in range(CODES_PER_HOUR):
        await request_code(db, settings, "limit@example.com")
    with pytest.raises(RateLimited):
        await request_signup(db, settings, "Lim It", "limit@example.com")
    async with db.uow() as uow:
        assert await uow.session.scalar(select(Specialist.id)) is None
        await uow.commit()
