"""OAuth clients named by the URL of their metadata document (MCP authorization 2025-11-25),
on both backends: discovery, the whole flow with the URL as client_id, and clear refusals of a
document that cannot be used; and the rate limit on dynamic registration."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest
from client_document_server import DocumentServer
from mcp_support import make_agent
from oauth_support import REDIRECT, code_form, get_wallet_call, pkce, query, register, start
from pydantic import SecretStr
from sqlalchemy import func, select, update

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.dashboard.people import person_for
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.oauth import consent
from agent_server.oauth.client_documents import MAX_BYTES
from agent_server.oauth.models import OAuthGrant, OAuthToken
from agent_server.runtime import Runtime
from billing.models import UsageRecord

BASE = "http://127.0.0.1:8000"
OWNER = "owner@example.com"


@pytest.fixture(scope="module")
def documents() -> Iterator[DocumentServer]:
    server = DocumentServer().start()
    yield server
    server.stop()


def settings_for(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_pepper": SecretStr("oauth-document-pepper"),
        "start_watchers": False,
        "start_worker": False,
        "oauth_client_documents_allow_loopback": True,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield Runtime(settings=settings_for(database_url), db=db)


@asynccontextmanager
async def client_for(
    runtime: Runtime, *, started: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """The server's app; ``started`` runs its lifespan, inside which the MCP endpoint serves
    (enter it in the test itself: the lifespan must end in the task that began it)."""
    app = create_app(runtime)
    async with AsyncExitStack() as stack:
        if started:
            await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        yield await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url=BASE))


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(runtime) as client:
        yield client


async def call_tool(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/mcp", **get_wallet_call(token))


async def test_the_metadata_says_a_url_may_be_a_client_id(http: httpx.AsyncClient) -> None:
    server = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert server["client_id_metadata_document_supported"] is True
    assert "none" in server["token_endpoint_auth_methods_supported"]
    assert server["registration_endpoint"] == f"{BASE}/register"  # registration still works


async def test_a_document_url_signs_in_calls_refreshes_and_revokes(
    runtime: Runtime, documents: DocumentServer
) -> None:
    async with client_for(runtime, started=True) as http:
        await document_flow(http, runtime, documents)


async def document_flow(
    http: httpx.AsyncClient, runtime: Runtime, documents: DocumentServer
) -> None:
    agent_id, _key = await make_agent(runtime.db, runtime.settings, funds=1_000_000)
    async with runtime.db.uow() as uow:
        await uow.session.execute(
            update(Agent).where(Agent.id == agent_id).values(owner_email=OWNER)
        )
        await uow.commit()
    # Longer than a registered client's id: kept by its digest, answered by its URL.
    client_id = documents.document(
        f"/clients/{'a-very-long-path-segment/' * 4}{runtime.db.is_sqlite}.json", [REDIRECT]
    )
    verifier, challenge = pkce()
    started = await start(http, client_id, challenge)
    assert started.status_code == 302, started.text
    handle = query(started.headers["location"])["request"]

    shown = await consent.pending(runtime.db, runtime.settings, handle)
    assert shown.client_name == f"Document client (127.0.0.1:{documents.server.server_port})"
    async with runtime.db.uow() as uow:
        person = await person_for(uow, runtime.settings, OWNER)
    answer = query(await consent.approve(runtime.db, runtime.settings, handle, person, agent_id))
    assert answer["state"] == "s-1"

    issued = await http.post("/token", data=code_form(client_id, answer["code"], verifier))
    assert issued.status_code == 200, issued.text
    tokens = issued.json()

    called = await call_tool(http, tokens["access_token"])
    assert called.status_code == 200, called.text
    result = called.json()["result"]
    assert not result.get("isError"), result
    async with runtime.db.uow() as uow:
        usage = await uow.session.scalar(
            select(func.count()).select_from(UsageRecord).where(UsageRecord.agent_id == agent_id)
        )
        assert usage == 1  # charged to the agent the owner chose
        stored = (await uow.session.execute(select(OAuthToken.client_id))).scalars().all()
        assert stored and all(len(c) <= 64 and c.startswith("cimd_") for c in stored)

    refreshed = await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    access = refreshed.json()["access_token"]
    # The SDK's revocation form wants client_secret present, empty for a public client.
    form = {"token": access, "client_id": client_id, "client_secret": ""}
    revoked = await http.post("/revoke", data=form)
    assert revoked.status_code == 200, revoked.text
    after = await call_tool(http, access)
    assert after.status_code == 401
    async with runtime.db.uow() as uow:
        grant = (await uow.session.execute(select(OAuthGrant))).scalars().one()
        assert grant.revoked_at is not None


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ((200, b"{not json"), "is not JSON"),
        ((404, b"gone"), "answered HTTP 404"),
        ((200, b"[]"), "is not a JSON object"),
        ((200, b" " * (MAX_BYTES + 1)), f"is larger than {MAX_BYTES} bytes"),
    ],
)
async def test_a_document_that_cannot_be_read_is_a_clear_oauth_error(
    http: httpx.AsyncClient,
    documents: DocumentServer,
    page: tuple[int, bytes],
    reason: str,
    database_url: str,
) -> None:
    path = f"/broken/{abs(hash((page, database_url)))}.json"
    documents.pages[path] = page
    reply = await start(http, documents.url(path), pkce()[1])
    assert reply.status_code == 400 and "location" not in reply.headers
    body = reply.json()
    assert body["error"] == "invalid_request"
    assert body["error_description"].startswith(
        f"client_id: the client ID metadata document at {documents.url(path)} {reason}"
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"client_id": "https://elsewhere.example/client.json"}, "must name this very URL"),
        ({"token_endpoint_auth_method": "client_secret_post"}, "must use token_endpoint_auth"),
        ({"client_secret": "s3cret"}, "must not contain a client secret"),
        ({"redirect_uris": []}, "must list the client's redirect_uris"),
        ({"redirect_uris": ["http://evil.example/cb"]}, "is refused: redirect URI"),
    ],
)
async def test_a_document_that_does_not_describe_a_usable_client_is_refused(
    http: httpx.AsyncClient,
    runtime: Runtime,
    documents: DocumentServer,
    fields: dict[str, object],
    reason: str,
) -> None:
    path = f"/bad/{abs(hash((json.dumps(fields), runtime.settings.database_url)))}.json"
    url = documents.document(path, [REDIRECT], **fields)
    reply = await start(http, url, pkce()[1])
    assert reply.status_code == 400, reply.text
    assert reason in reply.json()["error_description"]
    async with runtime.db.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(OAuthGrant)) == 0


async def test_a_redirect_uri_the_document_does_not_list_is_refused(
    http: httpx.AsyncClient, documents: DocumentServer, database_url: str
) -> None:
    url = documents.document(f"/other/{abs(hash(database_url))}.json", ["http://127.0.0.1:9/else"])
    reply = await start(http, url, pkce()[1])
    assert reply.status_code == 400
    assert "redirect" in reply.json()["error_description"].lower()


async def test_loopback_http_and_private_addresses_are_refused_unless_allowed(
    database_url: str, db: Database, documents: DocumentServer
) -> None:
    strict = Runtime(
        settings=settings_for(database_url, oauth_client_documents_allow_loopback=False), db=db
    )
    url = documents.document(f"/strict/{abs(hash(database_url))}.json", [REDIRECT])
    seen = len(documents.hits)
    async with client_for(strict) as http:
        for client_id in (
            url,
            "https://127.0.0.1/client.json",
            "https://10.1.2.3/client.json",
            "https://[::1]/client.json",
        ):
            reply = await start(http, client_id, pkce()[1])
            assert reply.status_code == 400, client_id
            description = reply.json()["error_description"]
            assert "https URL on a public host" in description or "address" in description
        for client_id, reason in (
            ("https://clients.example/", "must have a path"),
            ("https://clients.example/a/../b.json", "must have a path"),
            ("https://user:pw@clients.example/c.json", "user name or password"),
        ):
            reply = await start(http, client_id, pkce()[1])
            assert reply.status_code == 400 and reason in reply.json()["error_description"]
    assert len(documents.hits) == seen  # nothing was fetched


async def test_registration_is_rate_limited_per_address(database_url: str, db: Database) -> None:
    limited = Runtime(settings=settings_for(database_url, oauth_register_per_ip_per_hour=2), db=db)
    async with client_for(limited) as http:
        await register(http)
        await register(http)
        refused = await http.post(
            "/register", json={"client_name": "Third", "redirect_uris": [REDIRECT]}
        )
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"] == "rate_limited"
        assert "retry in" in refused.json()["error_description"]
