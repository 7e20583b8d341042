"""``agent-server admin``: list agents and change their status, recording who, when and why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from accounts_support import PEPPER, registered, settings_for
from click.testing import Result
from sqlalchemy import select
from typer.testing import CliRunner

from agent_server.accounts.models import Agent, AgentStatusChange
from agent_server.cli import app
from agent_server.kernel.config import get_settings
from agent_server.kernel.store import Database


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _cli(database_url: str, *args: str, user: str = "alice") -> Result:
    env = {
        "AGENT_SERVER_DATABASE_URL": database_url,
        "AGENT_SERVER_SECRET_PEPPER": PEPPER,
        "AGENT_SERVER_LOG_LEVEL": "WARNING",
        "USER": user,
    }

    def invoke() -> Result:
        get_settings.cache_clear()
        return CliRunner().invoke(app, ["admin", *args], env=env)

    return await asyncio.to_thread(invoke)


async def _status(db: Database, agent_id: int) -> str:
    async with db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None
        return agent.status


async def _history(db: Database, agent_id: int) -> list[tuple[str, str, str, str]]:
    async with db.uow() as uow:
        rows = await uow.session.execute(
            select(AgentStatusChange)
            .where(AgentStatusChange.agent_id == agent_id)
            .order_by(AgentStatusChange.id)
        )
        return [(r.from_status, r.to_status, r.actor, r.reason) for r in rows.scalars()]


async def test_operators_change_statuses_with_a_recorded_reason(
    db: Database, database_url: str
) -> None:
    settings = settings_for(database_url)
    agent_id, _ = await registered(db, settings, "ops@example.com")

    done = await _cli(database_url, "activate", str(agent_id), "--reason", "paid by wire")
    assert done.exit_code == 0, done.output
    assert "pending_deposit -> active" in done.output and "alice" in done.output
    again = await _cli(database_url, "activate", str(agent_id), "--reason", "twice")
    assert again.exit_code == 1
    assert "active" in again.output

    suspended = await _cli(
        database_url, "suspend", "OPS@example.com", "--reason", "abuse report", "--actor", "bob"
    )
    assert suspended.exit_code == 0, suspended.output
    assert await _status(db, agent_id) == "suspended"
    banned = await _cli(database_url, "ban", str(agent_id), "--reason", "confirmed abuse")
    assert banned.exit_code == 0 and await _status(db, agent_id) == "banned"
    back = await _cli(database_url, "reactivate", str(agent_id), "--reason", "appeal granted")
    assert back.exit_code == 0, back.output
    assert await _status(db, agent_id) == "active"

    assert await _history(db, agent_id) == [
        ("pending_deposit", "active", "alice", "paid by wire"),
        ("active", "suspended", "bob", "abuse report"),
        ("suspended", "banned", "alice", "confirmed abuse"),
        ("banned", "active", "alice", "appeal granted"),
    ]
    async with db.uow() as uow:
        times = (await uow.session.execute(select(AgentStatusChange.at))).scalars().all()
        assert all(t.tzinfo is not None for t in times)


async def test_reactivating_a_never_funded_agent_keeps_it_pending(
    db: Database, database_url: str
) -> None:
    agent_id, _ = await registered(db, settings_for(database_url), "p@example.com")
    assert (await _cli(database_url, "suspend", str(agent_id), "--reason", "x")).exit_code == 0
    assert (await _cli(database_url, "reactivate", str(agent_id), "--reason", "y")).exit_code == 0
    assert await _status(db, agent_id) == "pending_deposit"


async def test_bad_operator_input_changes_nothing(db: Database, database_url: str) -> None:
    agent_id, _ = await registered(db, settings_for(database_url), "x@example.com")
    unknown = await _cli(database_url, "suspend", "999", "--reason", "x")
    assert unknown.exit_code == 1 and "no agent" in unknown.output
    no_reason = await _cli(database_url, "suspend", str(agent_id))
    assert no_reason.exit_code == 2
    blank = await _cli(database_url, "suspend", str(agent_id), "--reason", "  ")
    assert blank.exit_code == 1 and "reason" in blank.output
    wrong = await _cli(database_url, "reactivate", str(agent_id), "--reason", "not suspended")
    assert wrong.exit_code == 1
    assert await _status(db, agent_id) == "pending_deposit"
    assert await _history(db, agent_id) == []


async def test_admin_list(db: Database, database_url: str) -> None:
    settings = settings_for(database_url)
    first, _ = await registered(db, settings, "first@example.com")
    second, _ = await registered(db, settings, "second@example.com")
    await _cli(database_url, "suspend", str(second), "--reason", "x")

    table = await _cli(database_url, "list")
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert "STATUS" in lines[0]
    assert "second@example.com" in lines[1] and "suspended" in lines[1]
    assert "first@example.com" in lines[2] and "pending_deposit" in lines[2]

    rows = await _cli(database_url, "list", "--json", "--status", "pending_deposit")
    parsed = [json.loads(line) for line in rows.output.splitlines()]
    assert [(r["id"], r["status"], r["email_verified"]) for r in parsed] == [
        (first, "pending_deposit", False)
    ]
    assert all(r["key_prefix"].startswith("as_live_") for r in parsed)
    assert (await _cli(database_url, "list", "--status", "gone")).exit_code == 2
