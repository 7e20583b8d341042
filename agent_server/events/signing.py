"""Webhook signatures and the per-agent signing secret.

Each delivery carries ``X-Agent-Server-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>``
is HMAC-SHA256, keyed with the agent's secret (its UTF-8 bytes), of ``"<t>.<body>"``. A
receiver recomputes it over the raw body, compares in constant time and rejects old ``t``
values (replays); see ``verify_signature`` and the README's Webhooks section.

Why the secret is not stored as a hash: signing needs the secret itself on the server, and a
one-way hash can only check a secret, never sign with one. So the secret is *derived*:
``whsec_`` + base64url(HMAC-SHA256(server pepper, "webhook-secret", agent id, nonce)), and only
the random nonce is stored. A database dump without the pepper reveals nothing; changing
the pepper changes every agent's secret (they rotate to learn the new one). The secret is
shown once, when ``rotate_webhook_secret`` draws a new nonce, and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from agent_server.events.models import WebhookSecret
from agent_server.kernel.store import UnitOfWork

SIGNATURE_HEADER = "X-Agent-Server-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a label, not a secret)
DEFAULT_TOLERANCE_SECONDS = 300


def derive_secret(pepper: str, agent_id: int, nonce: str) -> str:
    """The signing secret of ``agent_id`` for a stored ``nonce``."""
    message = f"webhook-secret\x00{agent_id}\x00{nonce}".encode()
    digest = hmac.new(pepper.encode(), message, hashlib.sha256).digest()
    return SECRET_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The value of ``X-Agent-Server-Signature`` for one delivery."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """What a receiver does: whether ``header`` signs ``body`` under ``secret``, recently."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return hmac.compare_digest(expected, parts.get("v1", ""))


async def rotate_webhook_secret(uow: UnitOfWork, pepper: str, agent_id: int) -> str:
    """Give ``agent_id`` a new signing secret and return it (to be shown once).

    Deliveries signed after the caller commits use the new secret. Does not commit.
    """
    nonce = secrets.token_hex(32)
    now = uow.clock.now()
    changed = await uow.session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.agent_id == agent_id)
        .values(nonce=nonce, created_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        try:
            async with uow.session.begin_nested():
                uow.session.add(WebhookSecret(agent_id=agent_id, nonce=nonce, created_at=now))
        except IntegrityError:
            # A concurrent first rotation inserted it: take the row over.
            await uow.session.execute(
                update(WebhookSecret)
                .where(WebhookSecret.agent_id == agent_id)
                .values(nonce=nonce, created_at=now)
                .execution_options(synchronize_session=False)
            )
    return derive_secret(pepper, agent_id, nonce)


async def webhook_secret(uow: UnitOfWork, pepper: str, agent_id: int) -> str:
    """The agent's current signing secret, created on first need. Does not commit."""
    query = select(WebhookSecret.nonce).where(WebhookSecret.agent_id == agent_id)
    nonce = (await uow.session.execute(query)).scalar_one_or_none()
    if nonce is None:
        nonce = secrets.token_hex(32)
        try:
            async with uow.session.begin_nested():
                uow.session.add(
                    WebhookSecret(agent_id=agent_id, nonce=nonce, created_at=uow.clock.now())
                )
        except IntegrityError:
            # Created concurrently: everyone signs with the one that was stored.
            nonce = (await uow.session.execute(query)).scalar_one()
    return derive_secret(pepper, agent_id, nonce)
