"""Sign-up over HTTP against the whole app, with codes read from a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from accounts_support import Api, api_for, bearer, wrong_code
from smtp_sink import SmtpSink
from sqlalchemy import select

from agent_server.accounts.models import AgentStatusChange, EmailCode
from agent_server.accounts.service import CODE_REFUSED, RESENT
from agent_server.gate import admit
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import MAX_ECHO_CHARS, AccountInactive


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
async def api(database_url: str, clock: FakeClock, smtp: SmtpSink) -> AsyncIterator[Api]:
    async with api_for(database_url, clock, smtp) as api:
        yield api


def _error(response_json: dict[str, object]) -> dict[str, object]:
    error = response_json["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "status", "message", "details"}
    return error


async def test_the_whole_sign_up_flow(api: Api) -> None:
    registered = await api.register("Bot@Example.com", currency="ETH", skills=["scheduling"])
    assert registered.status_code == 201
    body = registered.json()
    key = body["api_key"]
    assert key.startswith("as_live_") and len(key) >= len("as_live_") + 43
    assert body["status"] == "pending_deposit"
    assert body["email_verified"] is False
    wallet = body["wallet"]
    assert wallet["currency"] == "ETH"
    assert wallet["deposit_address"].startswith("0x") and len(wallet["deposit_address"]) == 42
    assert wallet["minimum_deposit"] == "0.00666667"  # 20 USD at 3,000 USD/ETH, rounded up
    assert wallet["minimum_deposit_usd"] == "20.00"

    # The code went out by SMTP to the normalised address.
    [message] = api.smtp.to("bot@example.com")  # type: ignore[union-attr]
    assert "verification code" in message["Subject"].lower()
    code = api.code_for("bot@example.com")

    me = await api.client.get("/api/agent/me", headers=bearer(key))
    assert me.status_code == 200
    profile = me.json()["agent"]
    assert profile["email_verified"] is False
    assert profile["api_key_prefix"] == key[: len(profile["api_key_prefix"])]
    assert key not in me.text
    assert profile["wallet"]["deposit_address"] == wallet["deposit_address"]

    verified = await api.verify("bot@example.com", code)
    assert verified.status_code == 200
    assert verified.json() == {
        "agent_id": body["agent_id"],
        "email_verified": True,
        "status": "pending_deposit",
        "message": "Email verified successfully.",
    }
    # Verifying again is harmless.
    assert (await api.verify("bot@example.com", code)).status_code == 200

    # Not funded yet: the gate points at the deposit address.
    with pytest.raises(AccountInactive) as refused:
        await admit(api.runtime.db, key, "search-specialists", settings=api.runtime.settings)
    assert refused.value.details["deposit_address"] == wallet["deposit_address"]

    await api.set_status(body["agent_id"], "activate", "first deposit")
    admitted = await admit(api.runtime.db, key, "search-specialists", settings=api.runtime.settings)
    assert admitted.caller.agent_id == body["agent_id"]

    me = (await api.client.get("/api/agent/me", headers=bearer(key))).json()["agent"]
    assert me["status"] == "active" and me["email_verified"] is True


async def test_regenerated_key_refuses_the_old_one(api: Api) -> None:
    agent_id, old = await api.signup("rot@example.com")
    rotated = await api.client.post("/api/agent/regenerate-key", headers=bearer(old))
    assert rotated.status_code == 200
    new = rotated.json()["api_key"]
    assert new != old and new.startswith(rotated.json()["api_key_prefix"])
    refused = await api.client.get("/api/agent/me", headers=bearer(old))
    assert refused.status_code == 401
    assert _error(refused.json())["code"] == "UNAUTHORIZED"
    assert (
        await api.client.post("/api/agent/regenerate-key", headers=bearer(old))
    ).status_code == 401
    me = await api.client.get("/api/agent/me", headers=bearer(new))
    assert me.status_code == 200 and me.json()["agent"]["id"] == agent_id
    assert me.json()["agent"]["api_key_prefix"] == rotated.json()["api_key_prefix"]


async def test_missing_or_wrong_authorization_is_401(api: Api) -> None:
    await api.signup("auth@example.com", verify=False)
    for headers in ({}, {"Authorization": "Basic abc"}, bearer("as_live_" + "A" * 43)):
        response = await api.client.get("/api/agent/me", headers=headers)
        assert response.status_code == 401
        assert _error(response.json())["code"] == "UNAUTHORIZED"


async def test_a_wrong_code_is_refused_and_counts_a_try(api: Api) -> None:
    await api.signup("wrong@example.com", verify=False)
    code = api.code_for("wrong@example.com")
    response = await api.verify("wrong@example.com", wrong_code(code))
    assert response.status_code == 422
    error = _error(response.json())
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"]["fields"] == [  # type: ignore[index]
        {"field": "code", "message": CODE_REFUSED}
    ]
    assert "resend-verification" in CODE_REFUSED and "5 tries" in CODE_REFUSED
    assert len(CODE_REFUSED) <= MAX_ECHO_CHARS
    assert (await api.verify("wrong@example.com", code)).status_code == 200


async def test_five_wrong_tries_lock_the_code(api: Api) -> None:
    await api.signup("lock@example.com", verify=False)
    code = api.code_for("lock@example.com")
    for _ in range(5):
        response = await api.verify("lock@example.com", wrong_code(code))
        assert response.status_code == 422
    locked = await api.verify("lock@example.com", code)
    assert locked.status_code == 422
    message = _error(locked.json())["details"]["fields"][0]["message"]  # type: ignore[index]
    assert message == CODE_REFUSED
    # A new code unlocks verification.
    assert (await api.resend("lock@example.com")).status_code == 200
    assert (
        await api.verify("lock@example.com", api.code_for("lock@example.com"))
    ).status_code == 200


async def test_codes_expire_after_fifteen_minutes(api: Api, clock: FakeClock) -> None:
    await api.signup("late@example.com", verify=False)
    code = api.code_for("late@example.com")
    clock.advance(timedelta(minutes=15))
    response = await api.verify("late@example.com", code)
    assert response.status_code == 422
    error = _error(response.json())
    assert "expired" in error["details"]["fields"][0]["message"]  # type: ignore[index]
    await api.resend("late@example.com")
    clock.advance(timedelta(minutes=14, seconds=59))
    assert (
        await api.verify("late@example.com", api.code_for("late@example.com"))
    ).status_code == 200


async def test_resend_invalidates_the_previous_code(api: Api) -> None:
    await api.signup("again@example.com", verify=False)
    first = api.code_for("again@example.com")
    resent = await api.resend("again@example.com")
    assert resent.status_code == 200
    assert resent.json() == {"message": RESENT}
    assert len(api.smtp.to("again@example.com")) == 2  # type: ignore[union-attr]
    second = api.code_for("again@example.com")
    if first != second:  # one chance in a million that the new code repeats the old one
        refused = await api.verify("again@example.com", first)
        assert refused.status_code == 422
    assert (await api.verify("again@example.com", second)).status_code == 200


async def test_resend_is_limited_to_three_an_hour(api: Api, clock: FakeClock) -> None:
    await api.signup("spam@example.com", verify=False)
    for _ in range(3):
        assert (await api.resend("spam@example.com")).status_code == 200
        clock.advance(timedelta(minutes=10))
    limited = await api.resend("spam@example.com")
    assert limited.status_code == 429
    error = _error(limited.json())
    assert error["code"] == "RATE_LIMITED"
    retry_after = error["details"]["retry_after"]  # type: ignore[index]
    assert 30 * 60 <= retry_after <= 30 * 60 + 1
    assert limited.headers["Retry-After"] == str(retry_after)
    assert len(api.smtp.to("spam@example.com")) == 4  # type: ignore[union-attr]
    clock.advance(timedelta(seconds=retry_after))
    assert (await api.resend("spam@example.com")).status_code == 200


async def test_resend_for_a_verified_email_sends_nothing(api: Api) -> None:
    await api.signup("done@example.com")
    response = await api.resend("done@example.com")
    assert response.status_code == 200
    assert response.json() == {"message": RESENT}
    assert len(api.smtp.to("done@example.com")) == 1  # type: ignore[union-attr]


async def test_codes_are_stored_hashed(api: Api) -> None:
    await api.signup("hash@example.com", verify=False)
    code = api.code_for("hash@example.com")
    async with api.runtime.db.uow() as uow:
        stored = (await uow.session.execute(select(EmailCode.code_hash))).scalars().all()
    assert len(stored) == 1 and code not in stored[0] and len(stored[0]) == 64


async def test_unknown_email_cannot_be_verified(api: Api) -> None:
    response = await api.verify("nobody@example.com", "123456")
    assert response.status_code == 422
    assert _error(response.json())["details"]["fields"] == [  # type: ignore[index]
        {"field": "code", "message": CODE_REFUSED}
    ]


async def test_an_email_registers_once(api: Api) -> None:
    await api.signup("dup@example.com", verify=False)
    again = await api.register("DUP@example.com")
    assert again.status_code == 422
    fields = _error(again.json())["details"]["fields"]  # type: ignore[index]
    assert fields[0]["field"] == "email" and "already registered" in fields[0]["message"]


async def test_registration_is_rate_limited_per_address(
    database_url: str, clock: FakeClock, smtp: SmtpSink
) -> None:
    async with api_for(database_url, clock, smtp, register_per_ip_per_hour=2) as api:
        assert (await api.register("one@example.com")).status_code == 201
        assert (await api.register("two@example.com")).status_code == 201
        third = await api.register("three@example.com")
        assert third.status_code == 429
        assert _error(third.json())["details"]["retry_after"] > 0  # type: ignore[index,operator]
        clock.advance(timedelta(hours=1))
        assert (await api.register("three@example.com")).status_code == 201


async def test_without_smtp_mail_goes_to_the_outbox(database_url: str, clock: FakeClock) -> None:
    async with api_for(database_url, clock, None) as api:
        from accounts_support import outbox_code

        await api.signup("dev@example.com", verify=False)
        code = await outbox_code(api.runtime.db, "dev@example.com")
        assert (await api.verify("dev@example.com", code)).status_code == 200


async def test_admin_status_changes_are_recorded(api: Api) -> None:
    agent_id, _ = await api.signup("hist@example.com")
    await api.set_status(agent_id, "suspend", "chargeback investigation")
    await api.set_status(agent_id, "reactivate", "cleared")
    async with api.runtime.db.uow() as uow:
        rows = (await uow.session.execute(select(AgentStatusChange))).scalars().all()
        history = [(r.from_status, r.to_status, r.actor, r.reason) for r in rows]
    assert history == [
        ("pending_deposit", "suspended", "tester", "chargeback investigation"),
        ("suspended", "pending_deposit", "tester", "cleared"),
    ]


async def test_an_unreachable_mail_server_does_not_lose_the_registration(
    database_url: str, clock: FakeClock
) -> None:
    from smtp_sink import free_port

    down = f"smtp://127.0.0.1:{free_port()}"
    async with api_for(database_url, clock, None, smtp_url=down) as api:
        response = await api.register("down@example.com")
        assert response.status_code == 201
        assert "could not be sent" in response.json()["message"]
        assert "resend-verification" in response.json()["message"]
        # A resend answers as for any email; the failed mail is only logged.
        resent = await api.resend("down@example.com")
        assert resent.status_code == 200
        assert resent.json() == {"message": RESENT}


def test_smtp_urls() -> None:
    from agent_server.mail import parse_smtp_url

    plain = parse_smtp_url("smtp://mail.example.com:2525")
    assert (plain.host, plain.port, plain.use_tls, plain.username) == (
        "mail.example.com",
        2525,
        False,
        None,
    )
    tls = parse_smtp_url("smtps://user%40x:p%3Ass@mail.example.com")
    assert (tls.port, tls.use_tls, tls.username, tls.password) == (465, True, "user@x", "p:ss")
    with pytest.raises(ValueError, match="smtp://"):
        parse_smtp_url("http://mail.example.com")
