"""Sixty wrong codes at once, split across two ``agent-server serve`` processes sharing one
PostgreSQL database: exactly 5 are compared (the server logs one line per compared wrong try),
the code is then locked, and the right code afterwards is refused."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from accounts_support import wrong_code
from mcp_support import make_agent
from soak import PEPPER
from sqlalchemy import select
from two_servers import two_servers

from agent_server.accounts.models import Agent, EmailCode
from agent_server.accounts.service import CODE_REFUSED
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from agent_server.mail import OutboxMail

N = 60
UNLIMITED = "100000"


@pytest.fixture(scope="module")
def served(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two serve processes on a PostgreSQL database of their own (``pg_url`` only decides
    whether PostgreSQL is there: skipped without it, failed under CI)."""
    logs = tmp_path_factory.mktemp("code-tries")
    with two_servers(logs, AGENT_SERVER_CODE_TRIES_PER_EMAIL_PER_HOUR=UNLIMITED) as served:
        yield served


def logged(served: dict[str, Any], event: str) -> int:
    """How many times the two servers logged ``event``."""
    logs: Path = served["logs"]
    return sum(f.read_text().count(f'"{event}"') for f in sorted(logs.glob("*.log")))


async def mailed_code(db: Database, email: str, after: int = 0) -> tuple[str, int]:
    """The code in the newest outbox mail to ``email`` newer than id ``after`` (the mail goes
    out after the answer, so it may take a moment); the code and the mail's id."""
    for _ in range(100):
        async with db.uow() as uow:
            row = (
                await uow.session.execute(
                    select(OutboxMail.id, OutboxMail.body)
                    .where(OutboxMail.to_addr == email, OutboxMail.id > after)
                    .order_by(OutboxMail.id.desc())
                    .limit(1)
                )
            ).one_or_none()
            await uow.commit()
        if row is not None:
            found = re.search(r"\b(\d{6})\b", row.body)
            assert found
            return found.group(1), int(row.id)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no code mailed to {email}")


@pytest.fixture
async def db(served: dict[str, Any]) -> Any:
    database = Database(make_engine(served["url"]))
    yield database
    await database.dispose()


@pytest.mark.postgres
async def test_sixty_parallel_dashboard_codes_are_compared_five_times(
    served: dict[str, Any], db: Database
) -> None:
    settings = Settings(database_url=served["url"], secret_pepper=PEPPER)  # type: ignore[arg-type]
    agent_id, _key = await make_agent(db, settings)
    async with db.uow() as uow:
        email = str(await uow.session.scalar(select(Agent.email).where(Agent.id == agent_id)))
        await uow.commit()
    async with (
        httpx.AsyncClient(base_url=served["bases"][0], timeout=60) as first,
        httpx.AsyncClient(base_url=served["bases"][1], timeout=60) as second,
    ):
        page = await first.get("/sign-in")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf
        form = {"email": email, "csrf_token": csrf.group(1), "next": "/"}
        assert (await first.post("/sign-in", data=form)).status_code == 200
        second.cookies = first.cookies
        code, _ = await mailed_code(db, email)
        before = logged(served, "dashboard.code_wrong")
        replies = await asyncio.gather(
            *(
                (first, second)[i % 2].post(
                    "/sign-in/code", data={**form, "code": wrong_code(code)}
                )
                for i in range(N)
            )
        )
        assert all(r.status_code == 422 for r in replies), {r.status_code for r in replies}
        compared = [r for r in replies if "wrong code;" in r.text]
        assert len(compared) == 5
        assert sum("now locked" in r.text for r in compared) == 1
        assert sum("is locked after 5 wrong tries" in r.text for r in replies) == N - 5
        right = await second.post("/sign-in/code", data={**form, "code": code})
        assert right.status_code == 422 and "locked" in right.text
        assert "as_session" not in right.cookies
    assert logged(served, "dashboard.code_wrong") - before == 5


@pytest.mark.postgres
async def test_sixty_parallel_verification_codes_are_compared_five_times(
    served: dict[str, Any], db: Database
) -> None:
    email = "parallel@example.com"
    bases = served["bases"]
    async with (
        httpx.AsyncClient(base_url=bases[0], timeout=60) as first,
        httpx.AsyncClient(base_url=bases[1], timeout=60) as second,
    ):
        registered = await first.post(
            "/api/agent/register", json={"name": "Parallel", "email": email}
        )
        assert registered.status_code == 201, registered.text
        code, mail_id = await mailed_code(db, email)
        before = logged(served, "agent.verification_failed")
        replies = await asyncio.gather(
            *(
                (first, second)[i % 2].post(
                    "/api/agent/verify-email", json={"email": email, "code": wrong_code(code)}
                )
                for i in range(N)
            )
        )
        assert all(r.status_code == 422 for r in replies)
        assert {r.json()["error"]["details"]["fields"][0]["message"] for r in replies} == {
            CODE_REFUSED
        }
        assert logged(served, "agent.verification_failed") - before == 5
        async with db.uow() as uow:
            assert await uow.session.scalar(select(EmailCode.attempts)) == 5
            await uow.commit()
        right = await second.post("/api/agent/verify-email", json={"email": email, "code": code})
        assert right.status_code == 422
        # A new code unlocks verification.
        resent = await first.post("/api/agent/resend-verification", json={"email": email})
        assert resent.status_code == 200
        new, _ = await mailed_code(db, email, after=mail_id)
        verified = await second.post("/api/agent/verify-email", json={"email": email, "code": new})
        assert verified.status_code == 200 and verified.json()["email_verified"] is True
