"""Profiles over HTTP: field limits, updates, the public profile, the directory, deletion."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from accounts_support import Api, api_for, bearer, outbox_code
from billing_support import make_agent
from smtp_sink import SmtpSink
from sqlalchemy import func, select

from agent_server.accounts.models import Agent, AgentLabel, EmailCode
from agent_server.booking.models import Schedule
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.paging import encode_keyset_cursor
from billing import balances, credit_deposit
from wallets.models import DepositAddressRecord


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


def _url(length: int) -> str:
    base = "https://example.com/"
    return base + "a" * (length - len(base))


def _fields(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR" and error["status"] == 422
    fields: list[dict[str, str]] = error["details"]["fields"]
    return fields


AT_LIMIT: dict[str, Any] = {
    "name": "n" * 255,
    "currency": "usdc",
    "avatar": _url(500),
    "owner_email": ("o" * 64) + "@" + ("d" * 60) + ".example.com",
    "description": "d" * 5000,
    "website_url": _url(500),
    "callback_url": _url(500),
    "version": "v" * 50,
    "last_updated_at": "2026-02-01T10:00:00+01:00",
    "limitations": "l" * 5000,
    "sla": "s" * 500,
    "license": "L" * 100,
    "privacy_url": _url(500),
    "skills": [f"{i:03d}" + "s" * 97 for i in range(100)],
    "languages": [f"{i:02d}" + "x" * 8 for i in range(50)],
    "tags": [f"{i:02d}" + "t" * 98 for i in range(50)],
    "links": [{"url": f"https://example.com/{i}"} for i in range(20)],
    "input_formats": [{"type": "json"}] * 50,
    "example_requests": [{"q": "x" * 9000}] * 20,
    "example_responses": [{"a": 1}] * 20,
    "env_requirements": [{"name": "MCP"}] * 50,
}

TOO_LONG: list[tuple[str, Any, str]] = [
    ("name", "n" * 256, "name"),
    ("name", "   ", "name"),
    ("name", "a\x00b", "name"),
    ("currency", "DOGE", "currency"),
    ("avatar", _url(501), "avatar"),
    ("avatar", "ftp://example.com/a.png", "avatar"),
    ("owner_email", "not-an-email", "owner_email"),
    ("owner_email", "o" * 250 + "@example.com", "owner_email"),
    ("description", "d" * 5001, "description"),
    ("website_url", _url(501), "website_url"),
    ("callback_url", _url(501), "callback_url"),
    ("callback_url", "example.com/hook", "callback_url"),
    ("version", "v" * 51, "version"),
    ("last_updated_at", "last tuesday", "last_updated_at"),
    ("limitations", "l" * 5001, "limitations"),
    ("sla", "s" * 501, "sla"),
    ("license", "L" * 101, "license"),
    ("privacy_url", _url(501), "privacy_url"),
    ("skills", ["s"] * 101, "skills"),
    ("skills", ["ok", "s" * 101], "skills[1]"),
    ("skills", [""], "skills[0]"),
    ("languages", ["en"] * 51, "languages"),
    ("languages", ["en-GB-oxendict"], "languages[0]"),
    ("tags", ["t"] * 51, "tags"),
    ("tags", ["t" * 101], "tags[0]"),
    ("links", [{}] * 21, "links"),
    ("links", [{"big": "x" * 10_001}], "links[0]"),
    ("links", ["https://example.com"], "links[0]"),
    ("input_formats", [{}] * 51, "input_formats"),
    ("example_requests", [{}] * 21, "example_requests"),
    ("example_responses", [{}] * 21, "example_responses"),
    ("env_requirements", [{}] * 51, "env_requirements"),
    ("unknown_field", 1, "unknown_field"),
]


async def _count_agents(api: Api) -> int:
    async with api.runtime.db.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(Agent)) or 0)


async def test_every_field_at_its_limit_is_accepted(api: Api) -> None:
    response = await api.register("max@example.com", **AT_LIMIT)
    assert response.status_code == 201, response.text
    me = await api.client.get("/api/agent/me", headers=bearer(response.json()["api_key"]))
    agent = me.json()["agent"]
    assert agent["currency"] == "USDC"
    for name, value in AT_LIMIT.items():
        if name not in ("currency", "last_updated_at"):
            assert agent[name] == value, name
    assert agent["last_updated_at"] == "2026-02-01T09:00:00Z"


@pytest.mark.parametrize(("name", "value", "field"), TOO_LONG, ids=[c[2] for c in TOO_LONG])
async def test_registration_refuses_each_field_over_its_limit(
    api: Api, name: str, value: Any, field: str
) -> None:
    fields = _fields(await api.register("limit@example.com", **{name: value}))
    assert [f["field"] for f in fields] == [field]
    assert fields[0]["message"]
    assert await _count_agents(api) == 0


async def test_one_entry_per_bad_field(api: Api) -> None:
    response = await api.client.post(
        "/api/agent/register",
        json={"name": "", "email": "nope", "skills": ["s" * 101, "t" * 101], "sla": "s" * 501},
    )
    names = [f["field"] for f in _fields(response)]
    assert sorted(names) == ["email", "name", "skills[0]", "skills[1]", "sla"]
    missing = _fields(await api.client.post("/api/agent/register", json={}))
    assert sorted(f["field"] for f in missing) == ["email", "name"]
    assert all(f["message"] == "is required" for f in missing)


async def test_profile_updates_change_only_what_is_sent(api: Api) -> None:
    _, key = await api.signup("upd@example.com", description="first", tags=["a"], sla="24h")
    response = await api.client.patch(
        "/api/agent/me",
        headers=bearer(key),
        json={"description": None, "tags": ["B", "c"], "version": "2.0"},
    )
    assert response.status_code == 200, response.text
    agent = response.json()["agent"]
    assert agent["description"] is None
    assert agent["tags"] == ["B", "c"]
    assert agent["version"] == "2.0"
    assert agent["sla"] == "24h"
    assert agent["name"] == "Booking Bot"
    async with api.runtime.db.uow() as uow:
        labels = (await uow.session.execute(select(AgentLabel.value))).scalars().all()
        assert sorted(labels) == ["b", "c"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": None}, "name"),
        ({"name": "n" * 256}, "name"),
        ({"skills": ["s" * 101]}, "skills[0]"),
        ({"callback_url": "not a url"}, "callback_url"),
        ({"email": "new@example.com"}, "email"),
    ],
)
async def test_profile_updates_are_validated(api: Api, body: dict[str, Any], field: str) -> None:
    _, key = await api.signup("val@example.com")
    fields = _fields(await api.client.patch("/api/agent/me", headers=bearer(key), json=body))
    assert [f["field"] for f in fields] == [field]
    me = (await api.client.get("/api/agent/me", headers=bearer(key))).json()["agent"]
    assert me["name"] == "Booking Bot" and me["email"] == "val@example.com"


def _schedule(agent_id: int, when: Any, **fields: Any) -> Schedule:
    values: dict[str, Any] = {
        "agent_id": agent_id,
        "label": "Consultation",
        "timezone": "Europe/Berlin",
        "weekly_hours": {"mon": [["09:00", "12:00"]]},
        "start_date": date(2026, 3, 1),
        "price_amount": 5_000_000,
        "price_currency": "USDT",
        "created_at": when,
        "updated_at": when,
    }
    values.update(fields)
    return Schedule(**values)


async def test_public_profile_shows_active_agents_and_twenty_public_schedules(
    api: Api, clock: FakeClock
) -> None:
    agent_id, _ = await api.signup("pub@example.com", description="Books rooms")
    pending = await api.client.get(f"/api/agents/{agent_id}")
    assert pending.status_code == 404
    assert pending.json()["error"]["code"] == "NOT_FOUND"
    await api.set_status(agent_id, "activate")
    now = clock.now()
    async with api.runtime.db.uow() as uow:
        for i in range(22):
            uow.session.add(_schedule(agent_id, now + timedelta(minutes=i), label=f"s{i}"))
        uow.session.add(_schedule(agent_id, now, label="private", private=True))
        uow.session.add(_schedule(agent_id, now, label="gone", deleted_at=now))
        uow.session.add(_schedule(agent_id, now, label="over", end_date=date(2026, 3, 1)))
        await uow.commit()
    clock.advance(timedelta(hours=1))
    response = await api.client.get(f"/api/agents/{agent_id}")
    assert response.status_code == 200
    body = response.json()
    assert body["agent"]["name"] == "Booking Bot"
    assert body["agent"]["description"] == "Books rooms"
    assert "email" not in body["agent"] and "callback_url" not in body["agent"]
    labels = [s["label"] for s in body["schedules"]]
    assert labels == [f"s{i}" for i in range(21, 1, -1)]
    assert body["schedules"][0]["price_amount"] == 5_000_000
    assert body["agent"]["last_accessed_at"] == clock.now().isoformat().replace("+00:00", "Z")
    for bad in ("/api/agents/0", "/api/agents/abc", f"/api/agents/{2**64}"):
        assert (await api.client.get(bad)).status_code == 422
    assert (await api.client.get("/api/agents/999999")).status_code == 404


async def _directory(api: Api, **params: Any) -> dict[str, Any]:
    response = await api.client.get("/api/agents", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_directory_filters_sorts_and_pages(api: Api, clock: FakeClock) -> None:
    specs = [
        ("alpha@example.com", "Alpha Planner", ["Travel", "hotels"], ["search"], ["en"], "MIT"),
        (
            "beta@example.com",
            "beta booker",
            ["travel"],
            ["booking", "search"],
            ["de"],
            "Apache-2.0",
        ),
        ("gamma@example.com", "Gamma", ["finance"], ["search"], ["en", "de"], "MIT"),
        ("hidden@example.com", "Hidden travel", ["travel"], ["search"], ["en"], "MIT"),
    ]
    ids: dict[str, int] = {}
    for email, name, tags, skills, languages, license in specs:
        agent_id, _ = await api.signup(
            email, name=name, tags=tags, skills=skills, languages=languages, license=license
        )
        ids[name] = agent_id
        if not email.startswith("hidden"):
            await api.set_status(agent_id, "activate")
        clock.advance(timedelta(minutes=1))

    everyone = await _directory(api)
    assert [a["name"] for a in everyone["agents"]] == ["Alpha Planner", "beta booker", "Gamma"]
    assert everyone["total"] == 3 and everyone["next_cursor"] is None

    travel = await _directory(api, **{"tags[]": ["TRAVEL"]})
    assert [a["name"] for a in travel["agents"]] == ["Alpha Planner", "beta booker"]
    both = await _directory(api, **{"tags[]": ["travel", "hotels"]})
    assert [a["name"] for a in both["agents"]] == ["Alpha Planner"]
    booking = await _directory(api, **{"skills[]": ["booking"]})
    assert [a["name"] for a in booking["agents"]] == ["beta booker"]
    german = await _directory(api, **{"languages[]": ["de"]})
    assert [a["name"] for a in german["agents"]] == ["beta booker", "Gamma"]
    mit = await _directory(api, license="mit")
    assert [a["name"] for a in mit["agents"]] == ["Alpha Planner", "Gamma"]
    words = await _directory(api, query="planner TRAVEL")
    assert [a["name"] for a in words["agents"]] == ["Alpha Planner"]
    assert (await _directory(api, query="100%_"))["total"] == 0

    newest = await _directory(api, sortBy="created_at", descending="true")
    assert [a["name"] for a in newest["agents"]] == ["Gamma", "beta booker", "Alpha Planner"]
    first = await _directory(api, sortBy="name", limit=1)
    page = await _directory(api, sortBy="name", limit=1, cursor=first["next_cursor"])
    assert [a["name"] for a in page["agents"]] == ["beta booker"]
    assert page["total"] == 3 and page["next_cursor"]

    await api.client.get(f"/api/agents/{ids['Gamma']}")
    accessed = await _directory(api, sortBy="last_accessed_at", descending="1")
    assert accessed["agents"][0]["name"] == "Gamma"

    for params in (
        {"limit": 0},
        {"limit": 101},
        {"cursor": "page-2"},
        {"sortBy": "email"},
        {"descending": "yes"},
        {"query": "q" * 201},
        {"tags[]": ["t" * 101]},
        {"languages[]": ["x" * 11]},
        {"license": "l" * 101},
    ):
        response = await api.client.get("/api/agents", params=params)
        fields = _fields(response)
        assert fields[0]["field"].split("[")[0] == next(iter(params)).split("[")[0], fields


async def test_directory_pages_by_cursor_and_agents_joining_shift_no_page(
    api: Api, clock: FakeClock
) -> None:
    db = api.runtime.db

    async def join(*names: str) -> None:
        for name in names:
            await make_agent(db, name=name)
            clock.advance(timedelta(minutes=1))

    async def names(**params: Any) -> tuple[list[str], str | None]:
        page = await _directory(api, **params)
        return [a["name"] for a in page["agents"]], page["next_cursor"]

    async def walk(**params: Any) -> list[str]:
        seen, cursor = await names(**params)
        while cursor is not None:
            more, cursor = await names(**params, cursor=cursor)
            seen += more
        return seen

    await join("Cora", "Abe", "Dan", "Bea", "Eve")

    # By name: one agent joins before the cursor (not shown), one after it (shown once).
    first, cursor = await names(limit=2)
    assert first == ["Abe", "Bea"] and cursor
    await join("Ada", "Cal")
    second, cursor = await names(limit=2, cursor=cursor)
    assert second == ["Cal", "Cora"]
    last, cursor = await names(limit=2, cursor=cursor)
    assert (last, cursor) == (["Dan", "Eve"], None)

    # Newest first: an agent joining between two pages does not push the next one down.
    newest = {"sortBy": "created_at", "descending": "true", "limit": 3}
    first, cursor = await names(**newest)
    assert first == ["Cal", "Ada", "Eve"]
    await join("Fay")
    second, cursor = await names(**newest, cursor=cursor)
    assert second == ["Bea", "Dan", "Abe"]
    assert await names(**newest, cursor=cursor) == (["Cora"], None)
    assert (await names(**newest))[0] == ["Fay", "Cal", "Ada"]

    # Agents never seen come after those that were, by id, across page boundaries.
    ids = {a["name"]: a["id"] for a in (await _directory(api, limit=100))["agents"]}
    for name in ("Eve", "Abe"):
        await api.client.get(f"/api/agents/{ids[name]}")
        clock.advance(timedelta(minutes=1))
    expected = ["Eve", "Abe", "Cora", "Dan", "Bea", "Ada", "Cal", "Fay"]
    for limit in (1, 3):
        assert await walk(sortBy="last_accessed_at", limit=limit) == expected
    assert await walk(limit=1) == sorted(expected)

    by_name = (await names(limit=1))[1]
    lone_surrogate = base64.urlsafe_b64encode(b'{"order": "name", "after": ["\\ud800", 1]}')
    for params in (
        {"cursor": "page-2"},
        {"cursor": by_name, "sortBy": "created_at"},
        {"cursor": by_name, "descending": "true"},
        {"cursor": encode_keyset_cursor("name", "a\x00", 1)},
        {"cursor": lone_surrogate.decode()},
        *(
            {"cursor": encode_keyset_cursor("created_at", forged, 1), "sortBy": "created_at"}
            for forged in ("2026-01-01T00:00:00", "yesterday", "0001-01-01T00:00:00+14:00")
        ),
    ):
        response = await api.client.get("/api/agents", params=params)
        assert response.status_code == 422, params
        fields = _fields(response)
        assert fields[0]["field"] == "cursor" and "next_cursor" in fields[0]["message"]
    assert len((await _directory(api, limit=100))["agents"]) == 8
    for limit in (0, 101):
        response = await api.client.get("/api/agents", params={"limit": limit})
        assert _fields(response)[0]["field"] == "limit"


async def test_deletion_erases_personal_data_and_keeps_money(api: Api) -> None:
    agent_id, key = await api.signup(
        "gdpr@example.com",
        owner_email="owner@example.com",
        description="personal",
        callback_url="https://example.com/hook",
        tags=["private"],
        avatar="https://example.com/me.png",
    )
    await api.set_status(agent_id, "activate")
    async with api.runtime.db.uow() as uow:
        await credit_deposit(
            uow,
            agent_id=agent_id,
            currency="USDT",
            amount=25_000_000,
            usd_micros=25_000_000,
            reference="eth:1:0xabc:0",
        )
        uow.session.add(_schedule(agent_id, uow.clock.now()))
        await uow.commit()

    # Money left refuses the deletion (nothing erased) until the owner chooses what happens.
    refused = await api.client.delete("/api/agent/me", headers=bearer(key))
    assert refused.status_code == 422 and "25.00 USDT" in refused.json()["error"]["message"]
    assert (await api.client.get("/api/agent/me", headers=bearer(key))).status_code == 200
    # Giving the balance up needs the owner: the key alone gets a code mailed to the owner.
    asked = await api.client.delete("/api/agent/me?remaining=forfeit", headers=bearer(key))
    assert asked.status_code == 202 and "code" in asked.json()["message"]
    assert (await api.client.get("/api/agent/me", headers=bearer(key))).status_code == 200
    code = await outbox_code(api.runtime.db, "owner@example.com")
    response = await api.client.delete(
        f"/api/agent/me?remaining=forfeit&code={code}", headers=bearer(key)
    )
    assert response.status_code == 200
    assert (await api.client.get("/api/agent/me", headers=bearer(key))).status_code == 401
    assert (await api.client.get(f"/api/agents/{agent_id}")).status_code == 404
    assert (await _directory(api))["total"] == 0

    async with api.runtime.db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        kept = {
            "name": agent.name,
            "email": agent.email,
            "owner_email": agent.owner_email,
            "description": agent.description,
            "callback_url": agent.callback_url,
            "profile": agent.profile,
            "search_text": agent.search_text,
            "prefix": agent.api_key_prefix,
        }
        assert agent.deleted_at is not None
        labels = await uow.session.scalar(select(func.count()).select_from(AgentLabel))
        codes = await uow.session.scalar(select(func.count()).select_from(EmailCode))
        addresses = (
            await uow.session.execute(
                select(DepositAddressRecord.agent_id).where(
                    DepositAddressRecord.agent_id == agent_id
                )
            )
        ).all()
        schedules = (await uow.session.execute(select(Schedule.deleted_at))).scalars().all()
        money = await balances(uow, agent_id)
    assert kept == {
        "name": "Deleted agent",
        "email": f"deleted-{agent_id}@deleted.invalid",
        "owner_email": None,
        "description": None,
        "callback_url": None,
        "profile": {},
        "search_text": "",
        "prefix": "",
    }
    assert labels == 0 and codes == 0
    assert len(addresses) == 1
    assert all(s is not None for s in schedules)
    assert money == {"USDT": 0}  # forfeited by the owner's explicit choice, recorded
    # The email is free again.
    assert (await api.register("gdpr@example.com")).status_code == 201
