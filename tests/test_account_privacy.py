"""What sign-up and sign-in answers give away, and what a banned agent's owner may still do.

On both backends, through the whole app over HTTP:

- verify-email, resend-verification and the dashboard's sign-in answer a registered email and
  an unknown one alike (status and body), while the registered address still gets its mail;
- tries of a code are limited per email, registered or not, from any client address;
- the dashboard's callback URL form refuses the addresses the REST API refuses, and stores
  nothing then;
- a banned agent's owner can read its pages but every change is refused, and nothing changes.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from accounts_support import Api, api_for, bearer, outbox_code, wrong_code
from billing_support import make_schedule
from sqlalchemy import func, select

from agent_server.accounts.models import Agent
from agent_server.accounts.service import CODE_REFUSED, RESENT
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import Booking, BookingStatus, CalendarToken
from agent_server.booking.service import book_slot
from agent_server.dashboard.models import SignInCode
from agent_server.events.models import WebhookSecret
from agent_server.kernel.clock import FakeClock
from agent_server.mail import OutboxMail

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def api(database_url: str, clock: FakeClock) -> AsyncIterator[Api]:
    # No SMTP server: mail goes to the outbox table, where the test reads it.
    async with api_for(database_url, clock, None, code_tries_per_email_per_hour=1000) as api:
        yield api


async def signup(api: Api, email: str, *, verify: bool = True) -> tuple[int, str]:
    """Register (and verify, with the code from the outbox) an agent; its id and API key."""
    registered = await api.register(email)
    assert registered.status_code == 201, registered.text
    if verify:
        code = await outbox_code(api.runtime.db, email)
        assert (await api.verify(email, code)).status_code == 200
    return int(registered.json()["agent_id"]), str(registered.json()["api_key"])


async def mails_to(api: Api, email: str) -> int:
    async with api.runtime.db.uow() as uow:
        count = await uow.session.scalar(
            select(func.count()).select_from(OutboxMail).where(OutboxMail.to_addr == email)
        )
        await uow.commit()
    return int(count or 0)


def same_apart_from_email(known: httpx.Response, unknown: httpx.Response, a: str, b: str) -> None:
    """Both answers are the same once each shows the email it was asked about."""
    assert known.status_code == unknown.status_code
    assert dict(known.headers).get("retry-after") == dict(unknown.headers).get("retry-after")
    assert known.text.replace(a, "EMAIL") == unknown.text.replace(b, "EMAIL")


# --- verify-email and resend-verification -------------------------------------------------------


async def test_verify_answers_a_registered_email_and_an_unknown_one_alike(api: Api) -> None:
    await signup(api, "pending@example.com", verify=False)
    await signup(api, "verified@example.com")
    code = await outbox_code(api.runtime.db, "pending@example.com")
    unknown = await api.verify("nobody@example.com", wrong_code(code))
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"]["fields"] == [
        {"field": "code", "message": CODE_REFUSED}
    ]
    for email in ("pending@example.com", "verified@example.com"):
        known = await api.verify(email, wrong_code(code))
        same_apart_from_email(known, unknown, email, "nobody@example.com")
    # After five wrong tries the code is locked: still the same answer as for nobody.
    for _ in range(4):
        await api.verify("pending@example.com", wrong_code(code))
    locked = await api.verify("pending@example.com", code)
    same_apart_from_email(locked, unknown, "pending@example.com", "nobody@example.com")


async def test_resend_answers_alike_and_only_a_waiting_agent_gets_mail(api: Api) -> None:
    await signup(api, "pending@example.com", verify=False)
    await signup(api, "verified@example.com")
    answers = {}
    for email in ("pending@example.com", "verified@example.com", "nobody@example.com"):
        answers[email] = await api.resend(email)
        assert answers[email].status_code == 200
        assert answers[email].json() == {"message": RESENT}
    assert await mails_to(api, "pending@example.com") == 2  # registration, resend
    assert await mails_to(api, "verified@example.com") == 1  # registration only
    assert await mails_to(api, "nobody@example.com") == 0
    # The new code works; the limit of 3 an hour holds for every email, answered alike.
    new = await outbox_code(api.runtime.db, "pending@example.com")
    assert (await api.verify("pending@example.com", new)).status_code == 200
    for _ in range(2):
        await api.resend("pending@example.com")
        await api.resend("nobody@example.com")
    known = await api.resend("pending@example.com")
    unknown = await api.resend("nobody@example.com")
    assert known.status_code == 429
    same_apart_from_email(known, unknown, "pending@example.com", "nobody@example.com")


async def test_tries_are_limited_per_email_from_any_address(
    database_url: str, clock: FakeClock
) -> None:
    async with api_for(database_url, clock, None, code_tries_per_email_per_hour=3) as api:
        await signup(api, "many@example.com", verify=False)
        code = await outbox_code(api.runtime.db, "many@example.com")
        hosts = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]
        for email in ("many@example.com", "nobody@example.com"):
            replies = []
            for host in hosts:
                async with api.from_address(host) as client:
                    replies.append(
                        await client.post(
                            "/api/agent/verify-email",
                            json={"email": email, "code": wrong_code(code)},
                        )
                    )
            assert [r.status_code for r in replies] == [422, 422, 422, 429]
            assert replies[-1].json()["error"]["code"] == "RATE_LIMITED"
        # The right code is refused too until the hour is over.
        assert (await api.verify("many@example.com", code)).status_code == 429


# --- the dashboard's sign-in -------------------------------------------------------------------


async def _code_page(client: httpx.AsyncClient, email: str) -> tuple[httpx.Response, str]:
    page = await client.get("/sign-in")
    csrf = CSRF.search(page.text)
    assert csrf, page.text[:500]
    asked = await client.post(
        "/sign-in", data={"email": email, "csrf_token": csrf.group(1), "next": "/"}
    )
    return asked, csrf.group(1)


def web(api: Api) -> httpx.AsyncClient:
    return api.from_address("192.0.2.10")


async def test_dashboard_sign_in_answers_alike_and_mails_only_a_known_email(api: Api) -> None:
    agent_id, _key = await signup(api, "owner@example.com")
    async with web(api) as first, web(api) as second:
        known, known_csrf = await _code_page(first, "owner@example.com")
        unknown, unknown_csrf = await _code_page(second, "nobody@example.com")
        assert known.status_code == unknown.status_code == 200
        assert known.text.replace("owner@example.com", "E").replace(known_csrf, "T") == (
            unknown.text.replace("nobody@example.com", "E").replace(unknown_csrf, "T")
        )
        assert await mails_to(api, "nobody@example.com") == 0
        code = await outbox_code(api.runtime.db, "owner@example.com")
        # A wrong code: the same answer, tries counted alike.
        tries = []
        for client, email, csrf in (
            (first, "owner@example.com", known_csrf),
            (second, "nobody@example.com", unknown_csrf),
        ):
            reply = await client.post(
                "/sign-in/code",
                data={"email": email, "code": wrong_code(code), "csrf_token": csrf, "next": "/"},
            )
            tries.append(reply.text.replace(email, "E").replace(csrf, "T"))
            assert reply.status_code == 422
            assert "wrong code; 4 tries left" in reply.text
        assert tries[0] == tries[1]
        # No code opens the unknown email's (it was never mailed; no 6 digits match it).
        async with api.runtime.db.uow() as uow:
            stored = await uow.session.scalar(
                select(func.count())
                .select_from(SignInCode)
                .where(SignInCode.email == "nobody@example.com")
            )
            await uow.commit()
        assert stored == 1
        signed = await first.post(
            "/sign-in/code",
            data={"email": "owner@example.com", "code": code, "csrf_token": known_csrf},
        )
        assert signed.status_code == 303
        assert (await first.get(f"/agents/{agent_id}")).status_code == 200


@asynccontextmanager
async def signed_in(api: Api, email: str) -> AsyncIterator[httpx.AsyncClient]:
    """A dashboard client signed in as ``email``, with the session's CSRF token in its header."""
    async with web(api) as client:
        _asked, csrf = await _code_page(client, email)
        code = await outbox_code(api.runtime.db, email)
        done = await client.post(
            "/sign-in/code", data={"email": email, "code": code, "csrf_token": csrf, "next": "/"}
        )
        assert done.status_code == 303, done.text[:500]
        page = await client.get("/")
        token = CSRF.search(page.text)
        assert token, page.text[:500]
        client.headers["x-csrf-token"] = token.group(1)
        yield client


# --- the callback URL form ---------------------------------------------------------------------


REFUSED_CALLBACKS = [
    "http://127.0.0.1:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5/hook",
    "http://192.168.1.20/hook",
    "http://172.16.3.4/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://localhost:8000/hook",
    "http://0.0.0.0/hook",
]


async def test_the_dashboard_callback_form_refuses_what_rest_refuses(api: Api) -> None:
    agent_id, key = await signup(api, "hooks@example.com")
    async with signed_in(api, "hooks@example.com") as client:
        for url in REFUSED_CALLBACKS:
            reply = await client.post(f"/agents/{agent_id}/callback", data={"callback_url": url})
            assert reply.status_code == 422, (url, reply.status_code)
            error = re.search(r'id="callback-error">([^<]+)<', reply.text)
            assert error and "points to" in error.group(1), (url, reply.text[:300])
            rest = await api.client.patch(
                "/api/agent/me", json={"callback_url": url}, headers=bearer(key)
            )
            assert rest.status_code == 422, url
        async with api.runtime.db.uow() as uow:
            stored = await uow.session.scalar(
                select(Agent.callback_url).where(Agent.id == agent_id)
            )
            await uow.commit()
        assert stored is None
        public = "https://93.184.215.14/hooks/agent"
        saved = await client.post(f"/agents/{agent_id}/callback", data={"callback_url": public})
        assert saved.status_code == 303
        async with api.runtime.db.uow() as uow:
            stored = await uow.session.scalar(
                select(Agent.callback_url).where(Agent.id == agent_id)
            )
            await uow.commit()
        assert stored == public


# --- a banned agent's owner ---------------------------------------------------------------------


async def _booking(api: Api, agent_id: int) -> int:
    schedule = await make_schedule(api.runtime.db)
    async with api.runtime.db.uow() as uow:
        booking = await book_slot(
            uow,
            agent_id=agent_id,
            slot_id=make_slot_id(schedule, datetime(2026, 3, 10, 10, 0, tzinfo=UTC)),
            idempotency_key=None,
        )
        await uow.commit()
        return booking.id


async def test_a_banned_agents_owner_can_read_but_change_nothing(api: Api) -> None:
    agent_id, key = await signup(api, "banned@example.com")
    booking_id = await _booking(api, agent_id)
    async with signed_in(api, "banned@example.com") as client:
        settings = await client.get(f"/agents/{agent_id}")
        prefix = re.search(r'name="replaces" value="([^"]+)"', settings.text)
        await api.set_status(agent_id, "ban", "fraud")
        for path in ("", "/wallet", "/usage", "/transactions", "/bookings", "/schedules"):
            page = await client.get(f"/agents/{agent_id}{path}")
            assert page.status_code == 200, path
            assert 'id="read-only-notice"' in page.text, path
        posts: list[tuple[str, dict[str, Any]]] = [
            ("/key", {"replaces": prefix.group(1) if prefix else ""}),
            ("/caps", {"daily_cap": "5", "monthly_cap": ""}),
            ("/callback", {"callback_url": "https://93.184.215.14/hook"}),
            ("/wallet/address", {"currency": "BTC"}),
            (f"/bookings/{booking_id}/cancel", {"reason_code": "other", "reason": "x"}),
        ]
        for path, form in posts:
            reply = await client.post(f"/agents/{agent_id}{path}", data=form)
            assert reply.status_code == 403, (path, reply.status_code, reply.text[:300])
            assert 'data-code="ACCOUNT_INACTIVE"' in reply.text, path
            assert "is banned" in reply.text and "nothing of it can be changed" in reply.text
    # Nothing changed: the booking is still active, the key still opens the account.
    async with api.runtime.db.uow() as uow:
        booking = await uow.session.get(Booking, booking_id)
        agent = await uow.session.get(Agent, agent_id)
        assert booking is not None and agent is not None
        assert booking.status in (BookingStatus.PENDING.value, BookingStatus.ACCEPTED.value)
        assert agent.callback_url is None
        await uow.commit()
    me = await api.client.get("/api/agent/me", headers=bearer(key))
    assert me.status_code == 200 and me.json()["agent"]["status"] == "banned"
    # REST: no new key either, and the old one keeps working for reading.
    regenerated = await api.client.post("/api/agent/regenerate-key", headers=bearer(key))
    assert regenerated.status_code == 403
    assert regenerated.json()["error"]["code"] == "ACCOUNT_INACTIVE"
    assert regenerated.json()["error"]["details"]["status"] == "banned"
    assert (await api.client.get("/api/agent/me", headers=bearer(key))).status_code == 200
    patched = await api.client.patch(
        "/api/agent/me", json={"description": "changed"}, headers=bearer(key)
    )
    assert patched.status_code == 403
    # Reactivated, the owner may change things again.
    await api.set_status(agent_id, "reactivate", "cleared")
    assert (
        await api.client.post("/api/agent/regenerate-key", headers=bearer(key))
    ).status_code == 200


async def test_a_suspended_agents_owner_keeps_the_account_in_order(api: Api) -> None:
    agent_id, key = await signup(api, "held@example.com")
    await api.set_status(agent_id, "suspend", "chargeback investigation")
    async with signed_in(api, "held@example.com") as client:
        page = await client.get(f"/agents/{agent_id}")
        assert 'id="read-only-notice"' not in page.text
        caps = await client.post(
            f"/agents/{agent_id}/caps", data={"daily_cap": "5", "monthly_cap": ""}
        )
        assert caps.status_code == 303
    assert (
        await api.client.post("/api/agent/regenerate-key", headers=bearer(key))
    ).status_code == 200


async def _rows(api: Api, model: Any, agent_id: int) -> int:
    async with api.runtime.db.uow() as uow:
        count = await uow.session.scalar(
            select(func.count()).select_from(model).where(model.agent_id == agent_id)
        )
        await uow.commit()
    return int(count or 0)


async def _wallet_currencies(api: Api, key: str) -> set[str]:
    wallet = await api.client.get("/api/agent/wallet", headers=bearer(key))
    assert wallet.status_code == 200, wallet.text
    return {w["currency"] for w in wallet.json()["wallets"]}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/agent/webhook-secret", None),
        ("/api/agent/calendar-token", None),
        ("/api/agent/wallet/currency", {"currency": "BTC"}),
    ],
)
async def test_a_banned_agents_key_cannot_rotate_secrets_or_open_a_currency(
    api: Api, path: str, body: dict[str, Any] | None
) -> None:
    agent_id, key = await signup(api, "banned-rest@example.com")
    await api.set_status(agent_id, "ban", "fraud")
    refused = await api.client.post(path, json=body, headers=bearer(key))
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert error["code"] == "ACCOUNT_INACTIVE"
    assert error["details"] == {"agent_id": agent_id, "status": "banned"}
    assert "nothing of it can be changed" in error["message"]
    # Nothing was made: no signing secret, no feed token, no BTC wallet or address.
    assert await _rows(api, WebhookSecret, agent_id) == 0
    assert await _rows(api, CalendarToken, agent_id) == 0
    assert "BTC" not in await _wallet_currencies(api, key)
    # A suspended agent's owner keeps the account in order: the same call goes through.
    await api.set_status(agent_id, "reactivate", "cleared")
    await api.set_status(agent_id, "suspend", "chargeback investigation")
    allowed = await api.client.post(path, json=body, headers=bearer(key))
    assert allowed.status_code == 200, allowed.text


async def test_a_banned_agents_key_cannot_change_limits_or_move_money(api: Api) -> None:
    agent_id, key = await signup(api, "banned-money@example.com")
    await api.set_status(agent_id, "ban", "fraud")
    address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    changes: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "/api/agent/spending-limits", {"daily_cap_usd_micros": 5_000_000}),
        ("POST", "/api/agent/spending-limits/confirm", {"code": "123456"}),
        (
            "POST",
            "/api/agent/withdrawals",
            {
                "currency": "USDC",
                "amount": 1_000_000,
                "address": address,
                "idempotency_key": "banned-withdrawal-1",
            },
        ),
        ("POST", "/api/agent/withdrawals/wd_0123456789abcdef/cancel", {}),
        ("POST", "/api/agent/withdrawal-addresses/1/confirm", {"code": "123456"}),
    ]
    for method, path, body in changes:
        refused = await api.client.request(method, path, json=body, headers=bearer(key))
        assert refused.status_code == 403, (path, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "ACCOUNT_INACTIVE", path
        assert error["details"] == {"agent_id": agent_id, "status": "banned"}, path
    # Nothing changed: no cap, no withdrawal, no address; reading still works.
    limits = await api.client.get("/api/agent/spending-limits", headers=bearer(key))
    assert limits.status_code == 200 and limits.json()["daily_cap_usd_micros"] is None
    listed = await api.client.get("/api/agent/withdrawals", headers=bearer(key))
    assert listed.status_code == 200 and listed.json()["withdrawals"] == []
    addresses = await api.client.get("/api/agent/withdrawal-addresses", headers=bearer(key))
    assert addresses.status_code == 200 and addresses.json() == []
    # Reactivated, lowering a cap applies again.
    await api.set_status(agent_id, "reactivate", "cleared")
    lowered = await api.client.put(
        "/api/agent/spending-limits", json={"daily_cap_usd_micros": 5_000_000}, headers=bearer(key)
    )
    assert lowered.status_code == 200 and lowered.json()["daily_cap_usd_micros"] == 5_000_000
