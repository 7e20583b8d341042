"""Helpers for the OAuth tests: PKCE pairs, registration, an authorization up to its code."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from agent_server.dashboard.people import person_for
from agent_server.oauth import consent
from agent_server.runtime import Runtime

REDIRECT = "http://127.0.0.1:9/callback"


def pkce() -> tuple[str, str]:
    """A (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def register(http: httpx.AsyncClient, **metadata: Any) -> dict[str, Any]:
    body = {
        "client_name": "Test client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
        **metadata,
    }
    reply = await http.post("/register", json=body)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def authorize_params(client_id: str, challenge: str, **extra: str) -> dict[str, str]:
    """The query of ``GET /authorize`` for a code with PKCE, state ``s-1`` unless ``extra``
    says otherwise."""
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "s-1",
        **extra,
    }


async def start(
    http: httpx.AsyncClient, client_id: str, challenge: str, **extra: str
) -> httpx.Response:
    """``GET /authorize``, as a browser the client sent there."""
    return await http.get("/authorize", params=authorize_params(client_id, challenge, **extra))


def code_form(client_id: str, code: str, verifier: str) -> dict[str, str]:
    """The ``POST /token`` form that trades an authorization code for tokens."""
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
    }


def get_wallet_call(token: str) -> dict[str, Any]:
    """``json`` and ``headers`` of a ``POST /mcp`` calling get-wallet with bearer ``token``."""
    return {
        "json": {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "get-wallet", "arguments": {}},
        },
        "headers": {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
        },
    }


@dataclass
class Authorized:
    client: dict[str, Any]
    verifier: str
    code: str


async def authorized(
    http: httpx.AsyncClient, runtime: Runtime, owner: str, agent_id: int, **metadata: Any
) -> Authorized:
    """A registered client and a code for ``agent_id``, consented by ``owner``."""
    client = await register(http, **metadata)
    verifier, challenge = pkce()
    reply = await start(http, client["client_id"], challenge)
    assert reply.status_code == 302, reply.text
    handle = query(reply.headers["location"])["request"]
    async with runtime.db.uow() as uow:
        person = await person_for(uow, runtime.settings, owner)
    target = await consent.approve(runtime.db, runtime.settings, handle, person, agent_id)
    answer = query(target)
    assert answer["state"] == "s-1"
    return Authorized(client, verifier, answer["code"])


async def exchange(http: httpx.AsyncClient, auth: Authorized, **override: str) -> httpx.Response:
    form = {**code_form(auth.client["client_id"], auth.code, auth.verifier), **override}
    if auth.client.get("client_secret") and "client_secret" not in override:
        form["client_secret"] = auth.client["client_secret"]
    return await http.post("/token", data=form)


async def refresh(http: httpx.AsyncClient, client: dict[str, Any], token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client["client_id"]}
    return await http.post("/token", data=form)
