"""OAuth end to end: the official TypeScript SDK client's own OAuth support against
``agent-server serve --port N`` (a real process), the owner signing in on the consent page with
the code from a real SMTP server, a tool call charged to the chosen agent, refresh, revocation.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx
import pytest
from client_document_server import DocumentServer
from mcp_support import CLI, make_agent, start_serve
from oauth_support import REDIRECT, authorize_params, code_form, get_wallet_call, pkce, query
from pydantic import SecretStr
from smtp_sink import SmtpSink, free_port
from sqlalchemy import func, select, update

from agent_server.accounts.models import Agent
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from billing.models import UsageRecord

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "js" / "oauth_flow.mjs"
PEPPER = "oauth-e2e-pepper"
OWNER = "owner.two.agents@example.com"
OTHER = "someone.else@example.com"


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpSink) -> Iterator[dict[str, Any]]:
    """``serve --port N`` on a migrated database; the port comes from the flag alone."""
    db = tmp_path_factory.mktemp("oauth") / "agent_server.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        AGENT_SERVER_SMTP_URL=smtp.url,
        AGENT_SERVER_SECRET_PEPPER=PEPPER,
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="false",
        AGENT_SERVER_LOG_FORMAT="json",
        AGENT_SERVER_OAUTH_CLIENT_DOCUMENTS_ALLOW_LOOPBACK="true",
    )
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    log = db.parent / "serve.log"
    proc = start_serve(env, port, log)
    yield {"base": f"http://127.0.0.1:{port}", "db": db, "log": log}
    proc.terminate()
    proc.wait(timeout=20)


async def _agents(db_path: Path) -> dict[str, int]:
    settings = Settings(secret_pepper=SecretStr(PEPPER))
    db = Database(make_engine(f"sqlite+aiosqlite:///{db_path}"))
    try:
        ids = {}
        for name, owner in (("first", OWNER), ("second", OWNER), ("theirs", OTHER)):
            agent_id, _key = await make_agent(db, settings, funds=50_000_000)
            async with db.uow() as uow:
                await uow.session.execute(
                    update(Agent)
                    .where(Agent.id == agent_id)
                    .values(owner_email=owner, name=f"{name} agent")
                )
                await uow.commit()
            ids[name] = agent_id
        return ids
    finally:
        await db.dispose()


async def _usage(db_path: Path) -> dict[int, int]:
    db = Database(make_engine(f"sqlite+aiosqlite:///{db_path}"))
    try:
        async with db.uow() as uow:
            rows = await uow.session.execute(
                select(UsageRecord.agent_id, func.count()).group_by(UsageRecord.agent_id)
            )
            return {int(agent): int(n) for agent, n in rows}
    finally:
        await db.dispose()


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def _consent(
    browser: httpx.Client,
    smtp: SmtpSink,
    authorize_url: str,
    agents: dict[str, int],
    client_name: str = "TypeScript SDK test client",
) -> str:
    """Drive the consent page as the owner's browser would; the code the client receives."""
    reply = browser.get(authorize_url)
    assert reply.status_code == 302, reply.text
    consent_url = reply.headers["location"]
    page = browser.get(consent_url)
    if page.status_code == 303:  # not signed in yet: the dashboard's sign-in, then back
        sign_in = urljoin(consent_url, page.headers["location"])
        form = browser.get(sign_in)
        target = query(sign_in)["next"]
        mails = len(smtp.to(OWNER))
        sent = browser.post(
            "/sign-in", data={"csrf_token": _csrf(form), "next": target, "email": OWNER}
        )
        assert sent.status_code == 200, sent.text
        deadline = time.monotonic() + 10
        while len(smtp.to(OWNER)) == mails:  # the mail leaves after the answer
            assert time.monotonic() < deadline, "no sign-in code was mailed"
            time.sleep(0.02)
        code = smtp.latest_code(OWNER)
        back = browser.post(
            "/sign-in/code",
            data={"csrf_token": _csrf(sent), "next": target, "email": OWNER, "code": code},
        )
        assert back.status_code == 303 and back.headers["location"] == target
        page = browser.get(consent_url)
    assert page.status_code == 200, page.text
    assert client_name in page.text
    assert "first agent" in page.text and "second agent" in page.text
    assert "theirs agent" not in page.text
    # The answer redirects to the client, so the page's form-action allows its origin.
    assert "form-action 'self' http://127.0.0.1:9" in page.headers["content-security-policy"]
    handle = query(consent_url)["request"]
    answer = {"csrf_token": _csrf(page), "request": handle, "decision": "allow"}
    # Another owner's agent: not found, and no code issued.
    refused = browser.post("/oauth/consent", data={**answer, "agent_id": str(agents["theirs"])})
    assert refused.status_code == 404 and "location" not in refused.headers
    chosen = browser.post("/oauth/consent", data={**answer, "agent_id": str(agents["second"])})
    assert chosen.status_code == 303, chosen.text
    location = chosen.headers["location"]
    assert location.startswith("http://127.0.0.1:9/callback?")
    return query(location)["code"]


class Script:
    """The Node script: JSON lines out, JSON lines in, killed if it outlives ``timeout``."""

    def __init__(self, *args: str, timeout: float = 180) -> None:
        node = shutil.which("node")
        assert node, "Node.js is needed for the TypeScript SDK client tests"
        self.proc = subprocess.Popen(
            [node, str(SCRIPT), *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.timer = threading.Timer(timeout, self.proc.kill)
        self.timer.start()

    def expect(self, step: str) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the script ended: {self.proc.stderr.read() if self.proc.stderr else ''}"
        event = dict(json.loads(line))
        assert event["step"] == step, event
        return event

    def send(self, data: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(data) + "\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read() if self.proc.stderr else ""
        self.timer.cancel()


@pytest.mark.parametrize("method", ["none", "client_secret_post"])
async def test_the_typescript_client_signs_in_calls_refreshes_and_is_revoked(
    served: dict[str, Any], smtp: SmtpSink, method: str
) -> None:
    base = served["base"]
    agents = await _agents(served["db"])
    before = await _usage(served["db"])
    script = Script(f"{base}/mcp", method)
    with httpx.Client(base_url=base, timeout=30) as browser:
        authorize = script.expect("authorize")["url"]
        assert authorize.startswith(f"{base}/authorize?")
        params = query(authorize)
        assert params["code_challenge_method"] == "S256"
        assert params["resource"] == f"{base}/mcp"
        client = script.expect("registered")["client"]
        assert client["token_endpoint_auth_method"] == method
        assert bool(client.get("client_secret")) == (method != "none")
        script.send({"code": _consent(browser, smtp, authorize, agents)})

    tokens = script.expect("tokens")["tokens"]
    assert tokens["access_token"].startswith("as_oat_") and tokens["refresh_token"]
    called = script.expect("called")["result"]
    assert not called.get("isError"), called
    usage = await _usage(served["db"])
    # Charged to the agent chosen on the consent page, and to no other.
    assert usage.get(agents["second"], 0) == before.get(agents["second"], 0) + 1
    assert usage.get(agents["first"], 0) == before.get(agents["first"], 0)
    assert usage.get(agents["theirs"], 0) == 0
    script.send({})

    refreshed = script.expect("refreshed")
    assert refreshed["result"] == "AUTHORIZED"
    assert refreshed["tokens"]["access_token"] != tokens["access_token"]
    assert refreshed["tokens"]["refresh_token"] != tokens["refresh_token"]
    again = script.expect("called-again")["result"]
    assert not again.get("isError"), again
    assert (await _usage(served["db"]))[agents["second"]] == usage[agents["second"]] + 1

    revoked = script.expect("revoked")
    assert revoked["status"] == 200
    # The revoked token and the grant's earlier one are refused, with a challenge to follow.
    for after in (revoked["after"], revoked["first_after"]):
        assert after["status"] == 401
        assert (
            f'resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"' in (after["www"])
        )
    script.finish()
    logged = served["log"].read_text()
    for secret in (tokens["access_token"], tokens["refresh_token"], client.get("client_secret")):
        assert not secret or secret not in logged


async def test_a_metadata_document_url_as_client_id_signs_in_with_the_mailed_code(
    served: dict[str, Any], smtp: SmtpSink
) -> None:
    """No registration: the client's id is the URL of its document, served here on 127.0.0.1
    (which ``serve`` fetches because the test allows loopback documents)."""
    base = served["base"]
    agents = await _agents(served["db"])
    before = await _usage(served["db"])
    documents = DocumentServer().start()
    try:
        client_id = documents.document(
            "/oauth/client.json", [REDIRECT], client_name="Document test client"
        )
        verifier, challenge = pkce()
        params = authorize_params(client_id, challenge, state="doc-1", resource=f"{base}/mcp")
        with httpx.Client(base_url=base, timeout=30) as browser:
            metadata = browser.get("/.well-known/oauth-authorization-server").json()
            assert metadata["client_id_metadata_document_supported"] is True
            code = _consent(
                browser,
                smtp,
                f"{base}/authorize?{urlencode(params)}",
                agents,
                client_name="Document test client (127.0.0.1:",
            )
            issued = browser.post("/token", data=code_form(client_id, code, verifier))
            assert issued.status_code == 200, issued.text
            called = browser.post("/mcp", **get_wallet_call(issued.json()["access_token"]))
        assert called.status_code == 200, called.text
        assert not called.json()["result"].get("isError"), called.text
        assert "/oauth/client.json" in documents.hits
    finally:
        documents.stop()
    usage = await _usage(served["db"])
    assert usage.get(agents["second"], 0) == before.get(agents["second"], 0) + 1
    assert usage.get(agents["first"], 0) == before.get(agents["first"], 0)
