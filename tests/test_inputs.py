"""The constrained input types, and the surfaces that use them: whatever text, number, date,
time zone or JSON comes in, the answer is a VALIDATION_ERROR naming the field (or a result),
never an internal error, and a refused input changes nothing.

The rules themselves are property-tested here; the MCP tools are fuzzed field by field in
``test_fuzz_tools.py``, the REST API in ``test_fuzz_api.py``; the dashboard forms and the
operator CLI are driven below as people use them (form posts, the ``agent-server`` command).
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import subprocess
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from accounts_support import PEPPER, registered, settings_for
from billing_support import make_agent, make_schedule
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp_support import CLI
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select

from agent_server.accounts.models import Agent
from agent_server.accounts.status import find_agent
from agent_server.app import create_app
from agent_server.booking import service
from agent_server.booking.availability import parse_slot_id
from agent_server.booking.demo import load_demo_data
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.schedules import get_availability
from agent_server.kernel.errors import NotFound, ValidationFailed
from agent_server.kernel.inputs import (
    BIGINT_MAX,
    YEARS,
    Day,
    Id,
    JsonObject,
    Moment,
    MultilineText,
    Text,
    TimeZone,
    canonical_zones,
    check_json,
    check_text,
    require,
)
from agent_server.kernel.store import Database
from agent_server.mail import OutboxMail
from agent_server.oauth.models import OAuthClient
from agent_server.runtime import Runtime
from billing import balances
from billing.models import SpendingCap
from billing.wallet_funds import adjust_balance
from wallets.currencies import currency_info
from wallets.models import DepositAddressRecord

PROPERTIES = settings(max_examples=200, derandomize=True, database=None, deadline=None)
CONTROL = [chr(c) for c in [*range(0x20), 0x7F]]
LINE_BREAKS = ("\t", "\n", "\r")


class Form(BaseModel):
    text: Text = ""
    note: MultilineText = ""
    id: Id = 1
    at: Moment | None = None
    day: Day | None = None
    zone: TimeZone = "UTC"
    extra: JsonObject = {}


def _refusal(raw: dict[str, Any]) -> tuple[str, str]:
    """The field and message pydantic reports for ``raw``, which must be refused."""
    with pytest.raises(ValidationError) as caught:
        Form.model_validate(raw)
    error = caught.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), error["msg"]


# --- the rules -----------------------------------------------------------------------------


@PROPERTIES
@given(
    before=st.text(max_size=20),
    bad=st.one_of(
        st.sampled_from(CONTROL), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
    ),
    after=st.text(max_size=20),
)
def test_text_with_a_control_character_or_lone_surrogate_is_refused(
    before: str, bad: str, after: str
) -> None:
    value = before + bad + after
    field, message = _refusal({"text": value})
    assert field == "text" and ("control character" in message or "surrogate" in message)
    if bad not in LINE_BREAKS:
        assert _refusal({"note": value})[0] == "note"


@PROPERTIES
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=60))
def test_text_without_them_is_kept_as_sent(value: str) -> None:
    assert Form.model_validate({"text": value, "note": f"{value}\n\t{value}"}).text == value
    value.encode("utf-8")  # what the database will do with it


@PROPERTIES
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=BIGINT_MAX + 1)))
def test_ids_outside_one_to_bigint_are_refused(value: int) -> None:
    assert _refusal({"id": value})[0] == "id"


@PROPERTIES
@given(st.integers(1, BIGINT_MAX))
def test_ids_inside_are_kept(value: int) -> None:
    assert Form.model_validate({"id": value}).id == value


@PROPERTIES
@given(
    moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offset_minutes=st.integers(-(24 * 60 - 1), 24 * 60 - 1),
)
def test_datetimes_are_kept_in_utc_inside_the_years_and_refused_outside(
    moment: datetime, offset_minutes: int
) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    utc_year = (moment - timedelta(minutes=offset_minutes)).year
    if YEARS[0] <= utc_year <= YEARS[1]:
        kept = Form.model_validate({"at": aware.isoformat()}).at
        assert kept == aware and kept is not None and kept.tzinfo is UTC
    else:
        field, message = _refusal({"at": aware.isoformat()})
        assert field == "at" and f"{YEARS[0]} and {YEARS[1]}" in message
    assert "UTC offset" in _refusal({"at": moment.isoformat()})[1]  # naive


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-12:00",
        "9999-12-30T00:00:00Z",
        "1999-12-31T23:30:00-00:29",
    ],
)
def test_datetimes_at_the_ends_of_the_calendar_are_refused(value: str) -> None:
    assert _refusal({"at": value})[0] == "at"


@PROPERTIES
@given(st.dates())
def test_dates_inside_the_years_are_kept_and_others_refused(day: date) -> None:
    if YEARS[0] <= day.year <= YEARS[1]:
        assert Form.model_validate({"day": day.isoformat()}).day == day
    else:
        assert _refusal({"day": day.isoformat()})[0] == "day"


def test_time_zones_are_the_canonical_iana_names() -> None:
    for name in (
        "localtime",
        "posixrules",
        "Factory",
        "posix/Europe/Berlin",
        "right/UTC",
        "",
        "../UTC",
        "Europe/Berlin\x00",
    ):
        field, message = _refusal({"zone": name})
        assert field == "zone" and "IANA time zone" in message
    zones = canonical_zones()
    assert {"UTC", "Europe/Berlin", "America/New_York", "Pacific/Chatham"} <= zones
    for name in zones:
        ZoneInfo(name)  # every accepted name loads
    assert Form.model_validate({"zone": " Asia/Kolkata "}).zone == "Asia/Kolkata"


def test_free_form_json_is_bounded_in_depth_count_and_size() -> None:
    deep: Any = []
    for _ in range(100_000):  # far deeper than any recursion limit
        deep = [deep]
    assert "nested more than" in _refusal({"extra": {"a": deep}})[1]
    assert "values" in _refusal({"extra": {str(i): i for i in range(30_000)}})[1]
    assert "characters" in _refusal({"extra": {"a": "x" * 300_000}})[1]
    assert "control character" in _refusal({"extra": {"a\x00": 1}})[1]
    assert "control character" in _refusal({"extra": {"a": ["\x00"]}})[1]
    assert "whole number" in _refusal({"extra": {"a": 2**64}})[1]
    kept = {"mon": [["09:00", "12:00"]], "note": "a\nb", "n": 1.5, "ok": True, "none": None}
    assert Form.model_validate({"extra": kept}).extra == kept
    assert check_json(kept) is kept


def test_outside_pydantic_a_refusal_names_the_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        require("label", check_text, "a\x00b")
    assert caught.value.details["fields"][0]["field"] == "label"
    assert "control character U+0000" in caught.value.message
    assert require("label", check_text, "fine") == "fine"


def test_the_module_is_part_of_the_kernel() -> None:
    """It imports nothing of the surfaces or the domains."""
    import agent_server.kernel.inputs as module

    source = open(module.__file__, encoding="utf-8").read()
    imported = set(re.findall(r"^from (\S+) import|^import (\S+)", source, re.M))
    names = {a or b for a, b in imported}
    assert {n for n in names if n.startswith(("agent_server", "billing", "wallets"))} == {
        "agent_server.kernel.errors"
    }


# --- the operator CLI ------------------------------------------------------------------------


def _agent_server(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGENT_SERVER_DATABASE_URL": database_url,
        "AGENT_SERVER_SECRET_PEPPER": PEPPER,
        "AGENT_SERVER_LOG_LEVEL": "WARNING",
        "USER": "alice",
    }
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_operator_commands_refuse_impossible_amounts_and_ids_without_a_traceback(
    db: Database, database_url: str
) -> None:
    agent_id, _ = await registered(db, settings_for(database_url), "ops-target@example.com")
    async with db.uow() as uow:
        await adjust_balance(uow, agent_id=agent_id, currency="USDC", amount=5_000_000, reason="t")
        await uow.commit()
    huge = str(2**64)
    cases = {
        ("admin", "debit", str(agent_id), "USDC", "1e30", "--reason", "x"): "amount",
        ("admin", "credit", str(agent_id), "USDC", "1e30", "--reason", "x"): "amount",
        (
            "admin",
            "credit",
            str(agent_id),
            "ETH",
            "9223372036.854775808",
            "--reason",
            "x",
        ): "amount",
        ("admin", "credit", str(agent_id), "BTC", "1E+999999999", "--reason", "x"): "amount",
        ("admin", "credit", huge, "USDC", "1", "--reason", "x"): "no agent",
        ("admin", "suspend", huge, "--reason", "x"): "no agent",
        ("admin", "credit", str(agent_id), "USDC", "1", "--reason", "a\x01b"): "--reason",
        ("dev", "fund", huge, "ETH", "1"): "agent",
    }
    for args, named in cases.items():
        done = await asyncio.to_thread(_agent_server, database_url, *args)
        assert done.returncode != 0, (args, done.stdout)
        assert "Traceback" not in done.stderr + done.stdout, (args, done.stderr[-2000:])
        assert named in done.stderr, (args, done.stderr[-2000:])
    async with db.uow() as uow:
        assert (await balances(uow, agent_id))["USDC"] == 5_000_000
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None and agent.status == "pending_deposit"


# --- the dashboard forms ------------------------------------------------------------------


async def _signed_in(client: httpx.AsyncClient, db: Database, email: str) -> str:
    """Sign ``email`` in through the pages (the code read from the mail outbox); the CSRF
    token of its session."""
    page = await client.get("/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    asked = await client.post("/sign-in", data={"email": email, "csrf_token": csrf.group(1)})
    assert asked.status_code == 200, asked.text[:500]
    async with db.uow() as uow:
        mail = await uow.session.scalar(
            select(OutboxMail.body)
            .where(OutboxMail.to_addr == email)
            .order_by(OutboxMail.id.desc())
            .limit(1)
        )
    code = re.search(r"\b(\d{6})\b", mail or "")
    assert code, mail
    done = await client.post(
        "/sign-in/code", data={"email": email, "code": code.group(1), "csrf_token": csrf.group(1)}
    )
    assert done.status_code == 303, done.text[:500]
    page = await client.get("/specialist")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert page.status_code == 200 and token, page.text[:500]
    return token.group(1)


SCHEDULE_FORM = {
    "label": "Tax hour",
    "description": "Questions on German VAT",
    "timezone": "Europe/Berlin",
    "hours_mon": "09:00-12:00",
    "price": "25",
    "price_currency": "USD",
    "slot_minutes": "60",
    "capacity": "1",
}
PROFILE_FORM = {"name": "Dr. Vera Tax", "timezone": "Europe/Berlin", "hourly_rate": "80"}
SAYS_WHAT_IS_ALLOWED = (
    "control character",
    "at most",
    "between the years",
    "IANA time zone",
    "whole number",
    "choose one of",
)
HOSTILE_SCHEDULES = [
    {"label": "Tax\x00hour"},
    {"description": "VAT\x00"},
    {"skills": "tax\x01law"},
    {"price": "1e30"},
    {"price": str(2**64)},
    {"slot_minutes": str(2**64)},
    {"capacity": "-99999999999999999999"},
    {"start_date": "9999-12-30"},
    {"end_date": "0001-01-01"},
    {"blackout_dates": "9999-12-31"},
    {"timezone": "localtime"},
    {"timezone": "posixrules"},
    {"hours_tue": "09:00-\x0012:00"},
]
HOSTILE_PROFILES = [
    {"name": "Vera\x00"},
    {"about": "a\x1bb"},
    {"city": "Ber\x00lin"},
    {"hourly_rate": "1e30"},
    {"hourly_rate": str(2**70)},
    {"timezone": "Factory"},
    {"phone": "+49\x00"},
]


async def _dashboard_state(db: Database, specialist_id: int) -> tuple[Any, ...]:
    async with db.uow() as uow:
        schedules = await uow.session.scalar(select(func.count()).select_from(Schedule))
        person = await uow.session.get(Specialist, specialist_id)
        assert person is not None
        agent = await uow.session.scalar(select(Agent).where(Agent.email == "owned@example.com"))
        assert agent is not None
        caps = await uow.session.scalar(select(func.count()).select_from(SpendingCap))
        addresses = await uow.session.scalar(select(func.count()).select_from(DepositAddressRecord))
        return (
            schedules,
            (person.name, person.about, person.city, person.hourly_rate, person.timezone),
            (agent.callback_url, caps, addresses),
        )


async def test_dashboard_forms_answer_a_form_error_for_hostile_values(
    db: Database, database_url: str
) -> None:
    config = settings_for(database_url)
    await load_demo_data(db, 2, seed=3)
    async with db.uow() as uow:
        specialist = (await uow.session.scalars(select(Specialist).order_by(Specialist.id))).first()
        assert specialist is not None and specialist.email
        email, specialist_id = specialist.email.lower(), specialist.id
    agent_id, _ = await registered(db, config, "owned@example.com")
    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        agent.owner_email = email
        await uow.commit()
    app = create_app(Runtime(settings=config, db=db))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        csrf = await _signed_in(client, db, email)
        before = await _dashboard_state(db, specialist_id)
        posts: list[tuple[str, dict[str, str]]] = [
            ("/specialist/schedules", {**SCHEDULE_FORM, **bad}) for bad in HOSTILE_SCHEDULES
        ]
        posts += [("/specialist/profile", {**PROFILE_FORM, **bad}) for bad in HOSTILE_PROFILES]
        posts += [
            (f"/agents/{agent_id}/caps", {"daily_cap": "1e30", "monthly_cap": ""}),
            (f"/agents/{agent_id}/caps", {"daily_cap": "", "monthly_cap": str(2**64)}),
            (f"/agents/{agent_id}/caps", {"daily_cap": "5\x00", "monthly_cap": ""}),
            (f"/agents/{agent_id}/callback", {"callback_url": "https://example.com/\x00"}),
            (f"/agents/{agent_id}/wallet/address", {"currency": "USDC\x00"}),
            (f"/agents/{2**64}/caps", {"daily_cap": "5"}),
        ]
        for path, form in posts:
            reply = await client.post(path, data={**form, "csrf_token": csrf})
            assert reply.status_code in (404, 422), (path, form, reply.status_code)
            assert "Traceback" not in reply.text
            if reply.status_code == 422:  # the page says what is allowed
                shown = html.unescape(reply.text)
                assert any(m in shown for m in SAYS_WHAT_IS_ALLOWED), (path, form, shown[:800])
        assert await _dashboard_state(db, specialist_id) == before
        # The same forms with ordinary values go through, so the refusals above were the values'.
        made = await client.post(
            "/specialist/schedules", data={**SCHEDULE_FORM, "csrf_token": csrf}
        )
        assert made.status_code == 303, made.text[:500]
        saved = await client.post("/specialist/profile", data={**PROFILE_FORM, "csrf_token": csrf})
        assert saved.status_code == 303, saved.text[:500]


# --- the services, called directly -----------------------------------------------------------


async def test_the_services_refuse_on_their_own(db: Database) -> None:
    """Code that skips the surfaces' models still cannot write what the rules refuse."""
    agent_id = await make_agent(db)
    schedule_id = await make_schedule(db)
    async with db.uow() as uow:
        now = uow.clock.now()
        slot = (await get_availability(uow, schedule_id, now, now + timedelta(days=7)))[0]
        refusals: dict[str, Any] = {
            "topic": service.book_slot(
                uow, agent_id=agent_id, slot_id=slot.slot_id, idempotency_key=None, topic="a\x00"
            ),
            "starts_after": service.list_bookings(
                uow, agent_id=agent_id, starts_after=datetime(1, 1, 1, 10, tzinfo=UTC)
            ),
            "cursor": service.list_bookings(
                uow, agent_id=agent_id, cursor="eyJiZWZvcmUiOiAxMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDB9"
            ),
            "window_start": get_availability(
                uow,
                schedule_id,
                datetime(9999, 12, 30, tzinfo=UTC),
                datetime(9999, 12, 31, tzinfo=UTC),
            ),
            "agent": find_agent(uow, "a\x00@example.com"),
        }
        for field, call in refusals.items():
            with pytest.raises(ValidationFailed) as caught:
                await call
            assert caught.value.details["fields"][0]["field"] == field
        with pytest.raises(NotFound):
            await find_agent(uow, str(2**64))
        assert (await service.list_bookings(uow, agent_id=agent_id)).items == []
    with pytest.raises(ValidationFailed, match="slot_id"):
        parse_slot_id(f"{2**63}-20260302T0900Z")
    with pytest.raises(ValidationFailed, match=re.escape("at most 9223372036854.775807 USDC")):
        currency_info("USDC").parse("1e30")


async def test_oauth_client_registration_refuses_control_characters(
    db: Database, database_url: str
) -> None:
    app = create_app(Runtime(settings=settings_for(database_url), db=db))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        for name in ("Evil\x00client", "Evil\x1b[2Jclient", "Evil\u202eclient\x07"):
            reply = await client.post(
                "/register", json={"client_name": name, "redirect_uris": ["http://127.0.0.1/cb"]}
            )
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"] == "invalid_client_metadata"
            assert "control character" in reply.json()["error_description"]
        async with db.uow() as uow:
            assert await uow.session.scalar(select(func.count()).select_from(OAuthClient)) == 0
        fine = await client.post(
            "/register",
            json={"client_name": "Fine client", "redirect_uris": ["http://127.0.0.1/cb"]},
        )
        assert fine.status_code == 201, fine.text
