"""OAuth sign-in on both backends, through the SDK's endpoints on the server's own app: codes,
PKCE, redirect URIs, expiry, refresh rotation, revocation, and tokens bound to one agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from mcp_support import make_agent
from oauth_support import (
    REDIRECT,
    Authorized,
    authorized,
    exchange,
    pkce,
    query,
    refresh,
    register,
    start,
)
from pydantic import SecretStr
from sqlalchemy import func, select, text, update

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.dashboard.people import person_for
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import NotFound
from agent_server.kernel.store import Database
from agent_server.mcp.auth import ApiKeyVerifier, caller_from_token
from agent_server.oauth import consent
from agent_server.oauth.models import OAuthClient, OAuthGrant, OAuthToken
from agent_server.oauth.provider import (
    ACCESS_TTL,
    CODE_TTL,
    REFRESH_TTL,
    AgentServerOAuth,
)
from agent_server.runtime import Runtime

BASE = "http://127.0.0.1:8000"
OWNER = "owner@example.com"


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    settings = Settings(
        database_url=database_url,
        secret_pepper=SecretStr("oauth-test-pepper"),
        start_watchers=False,
        start_worker=False,
    )
    yield Runtime(settings=settings, db=db)


@pytest.fixture
async def http(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
        yield client


@pytest.fixture
def provider(runtime: Runtime) -> AgentServerOAuth:
    """The provider the app serves, for looking tokens up as the ``/mcp`` endpoint does."""
    return AgentServerOAuth(runtime, ApiKeyVerifier(runtime), issuer=BASE, resource=f"{BASE}/mcp")


async def owned_agent(runtime: Runtime, owner: str) -> tuple[int, str]:
    agent_id, key = await make_agent(runtime.db, runtime.settings, funds=1_000_000)
    async with runtime.db.uow() as uow:
        await uow.session.execute(
            update(Agent).where(Agent.id == agent_id).values(owner_email=owner)
        )
        await uow.commit()
    return agent_id, key


async def tokens(http: httpx.AsyncClient, auth: Authorized) -> dict[str, str]:
    reply = await exchange(http, auth)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def agent_of(provider: AgentServerOAuth, token: str) -> int | None:
    found = await provider.load_access_token(token)
    caller = caller_from_token(found)
    return None if caller is None else caller.agent_id


async def test_metadata_names_the_served_url_and_an_unknown_key_gets_a_followable_401(
    http: httpx.AsyncClient,
) -> None:
    reply = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
        headers={"Authorization": "Bearer as_live_" + "x" * 43, "Accept": "application/json"},
    )
    assert reply.status_code == 401
    challenge = reply.headers["www-authenticate"]
    assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"' in challenge
    resource = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert resource["resource"] == f"{BASE}/mcp"
    assert resource["authorization_servers"] == [BASE]
    server = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert server["issuer"] == BASE
    assert server["registration_endpoint"] == f"{BASE}/register"
    assert server["revocation_endpoint"] == f"{BASE}/revoke"
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert set(server["grant_types_supported"]) == {"authorization_code", "refresh_token"}


async def test_a_token_acts_for_the_chosen_agent_and_api_keys_keep_working(
    http: httpx.AsyncClient, runtime: Runtime, provider: AgentServerOAuth
) -> None:
    first, first_key = await owned_agent(runtime, OWNER)
    second, _ = await owned_agent(runtime, OWNER)
    auth = await authorized(http, runtime, OWNER, second)
    issued = await tokens(http, auth)
    assert issued["token_type"] == "Bearer"
    assert int(issued["expires_in"]) == int(ACCESS_TTL.total_seconds())
    assert await agent_of(provider, issued["access_token"]) == second
    assert await agent_of(provider, first_key) == first
    # Stored as hashes only: no token or code appears in any row.
    async with runtime.db.uow() as uow:
        for table in ("oauth_tokens", "oauth_grants", "oauth_clients"):
            dump = str((await uow.session.execute(text(f"SELECT * FROM {table}"))).all())
            for secret in (issued["access_token"], issued["refresh_token"], auth.code):
                assert secret not in dump


async def test_an_owner_cannot_consent_for_someone_elses_agent(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    await owned_agent(runtime, OWNER)
    theirs, _ = await owned_agent(runtime, "someone.else@example.com")
    client = await register(http)
    _verifier, challenge = pkce()
    reply = await start(http, client["client_id"], challenge)
    handle = query(reply.headers["location"])["request"]
    async with runtime.db.uow() as uow:
        person = await person_for(uow, runtime.settings, OWNER)
    with pytest.raises(NotFound):
        await consent.approve(runtime.db, runtime.settings, handle, person, theirs)
    async with runtime.db.uow() as uow:
        grant = (await uow.session.execute(select(OAuthGrant.agent_id, OAuthGrant.code_hash))).one()
    assert grant.agent_id is None and grant.code_hash is None


async def test_a_wrong_pkce_verifier_gets_no_token(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    auth = await authorized(http, runtime, OWNER, agent_id)
    wrong, _ = pkce()
    reply = await exchange(http, auth, code_verifier=wrong)
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_grant"
    assert "code_verifier" in reply.json()["error_description"]
    async with runtime.db.uow() as uow:
        assert (await uow.session.scalar(select(OAuthToken))) is None


async def test_a_redirect_uri_other_than_the_registered_one_is_refused(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    client = await register(http)
    _verifier, challenge = pkce()
    # At /authorize: answered directly, never redirected to the unregistered URI.
    reply = await start(
        http, client["client_id"], challenge, redirect_uri="http://127.0.0.1:9/elsewhere"
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"
    # At /token: the code was issued for another redirect URI.
    auth = await authorized(http, runtime, OWNER, agent_id)
    reply = await exchange(http, auth, redirect_uri="http://127.0.0.1:9/elsewhere")
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"
    assert (await exchange(http, auth)).status_code == 200


async def test_http_redirects_off_loopback_and_foreign_resources_are_refused(
    http: httpx.AsyncClient,
) -> None:
    reply = await http.post(
        "/register", json={"redirect_uris": ["http://example.com/cb"], "client_name": "x"}
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_redirect_uri"
    client = await register(http)
    _verifier, challenge = pkce()
    reply = await start(
        http, client["client_id"], challenge, resource="https://other.example.com/mcp"
    )
    assert reply.status_code == 302
    answer = query(reply.headers["location"])
    assert reply.headers["location"].startswith(REDIRECT)
    assert answer["error"] == "invalid_target" and answer["state"] == "s-1"


async def test_codes_and_tokens_expire(
    http: httpx.AsyncClient, runtime: Runtime, provider: AgentServerOAuth, clock: FakeClock
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    late = await authorized(http, runtime, OWNER, agent_id)
    clock.advance(CODE_TTL)
    reply = await exchange(http, late)
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"

    issued = await tokens(http, await authorized(http, runtime, OWNER, agent_id))
    clock.advance(ACCESS_TTL)
    assert await provider.load_access_token(issued["access_token"]) is None
    # The refresh token outlives the access token ...
    renewed = await refresh(http, await _client_of(http, runtime, issued), issued["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    assert await agent_of(provider, renewed.json()["access_token"]) == agent_id
    # ... until its own end.
    clock.advance(REFRESH_TTL)
    client = await _client_of(http, runtime, issued)
    reply = await refresh(http, client, renewed.json()["refresh_token"])
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_grant"


async def _client_of(
    http: httpx.AsyncClient, runtime: Runtime, issued: dict[str, str]
) -> dict[str, str]:
    async with runtime.db.uow() as uow:
        client_id = await uow.session.scalar(
            select(OAuthToken.client_id).order_by(OAuthToken.id.desc()).limit(1)
        )
    return {"client_id": str(client_id)}


async def test_a_refresh_token_is_used_once_and_its_reuse_ends_the_grant(
    http: httpx.AsyncClient, runtime: Runtime, provider: AgentServerOAuth
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    auth = await authorized(http, runtime, OWNER, agent_id)
    issued = await tokens(http, auth)
    renewed = await refresh(http, auth.client, issued["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["refresh_token"] != issued["refresh_token"]
    assert await agent_of(provider, fresh["access_token"]) == agent_id

    reused = await refresh(http, auth.client, issued["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # Whoever replayed it, neither holder keeps access: the whole grant is revoked.
    assert await provider.load_access_token(fresh["access_token"]) is None
    again = await refresh(http, auth.client, fresh["refresh_token"])
    assert again.status_code == 400


async def test_a_replayed_code_revokes_what_it_issued(
    http: httpx.AsyncClient, runtime: Runtime, provider: AgentServerOAuth
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    auth = await authorized(http, runtime, OWNER, agent_id)
    issued = await tokens(http, auth)
    replay = await exchange(http, auth)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert await provider.load_access_token(issued["access_token"]) is None


async def test_revoking_either_token_ends_both(
    http: httpx.AsyncClient, runtime: Runtime, provider: AgentServerOAuth
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    auth = await authorized(http, runtime, OWNER, agent_id)
    issued = await tokens(http, auth)
    # The SDK's revocation form requires the client_secret field, empty for a public client.
    form = {"token": issued["refresh_token"], "client_id": auth.client["client_id"]}
    reply = await http.post("/revoke", data={**form, "client_secret": ""})
    assert reply.status_code == 200
    assert await provider.load_access_token(issued["access_token"]) is None
    after = await refresh(http, auth.client, issued["refresh_token"])
    assert after.status_code == 400


async def test_a_confidential_client_needs_its_secret_which_is_stored_sealed(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    auth = await authorized(
        http, runtime, OWNER, agent_id, token_endpoint_auth_method="client_secret_post"
    )
    secret = auth.client["client_secret"]
    assert secret
    async with runtime.db.uow() as uow:
        row = (await uow.session.execute(select(OAuthClient.secret_sealed, OAuthClient.info))).one()
    assert row.secret_sealed and secret not in row.secret_sealed
    assert secret not in str(row.info)
    refused = await exchange(http, auth, client_secret="not-the-secret")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert (await exchange(http, auth)).status_code == 200


async def test_two_refreshes_with_one_token_at_once_get_one_new_pair(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    auth = await authorized(http, runtime, OWNER, agent_id)
    issued = await tokens(http, auth)
    replies = await asyncio.gather(
        *(refresh(http, auth.client, issued["refresh_token"]) for _ in range(4))
    )
    assert sorted(r.status_code for r in replies).count(200) <= 1
    async with runtime.db.uow() as uow:
        refreshes = await uow.session.scalar(
            select(func.count()).select_from(OAuthToken).where(OAuthToken.kind == "refresh")
        )
    # The first pair's refresh token and at most one successor.
    assert refreshes in (1, 2)
    assert refreshes - 1 == sorted(r.status_code for r in replies).count(200)


async def test_a_denied_request_sends_the_client_access_denied_and_issues_nothing(
    http: httpx.AsyncClient, runtime: Runtime
) -> None:
    agent_id, _ = await owned_agent(runtime, OWNER)
    client = await register(http)
    _verifier, challenge = pkce()
    reply = await start(http, client["client_id"], challenge)
    handle = query(reply.headers["location"])["request"]
    async with runtime.db.uow() as uow:
        person = await person_for(uow, runtime.settings, OWNER)
    target = await consent.deny(runtime.db, runtime.settings, handle, person)
    assert target.startswith(REDIRECT)
    assert query(target) == {
        "error": "access_denied",
        "error_description": "the owner declined",
        "state": "s-1",
    }
    with pytest.raises(NotFound):
        await consent.approve(runtime.db, runtime.settings, handle, person, agent_id)
