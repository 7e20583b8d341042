"""The owner's answer to an authorization request: which agent the client acts for, or none.

    async def pending(db, settings, handle) -> Pending
        The live request behind the consent page's ``request`` handle; ``NotFound`` when it is
        unknown, expired, already answered or revoked.
    async def approve(db, settings, handle, person, agent_id) -> str
        Bind a fresh authorization code to ``agent_id`` (one of ``person``'s agents, else
        ``NotFound``) and return the client's redirect URI carrying it.
    async def deny(db, settings, handle, person) -> str
        End the request; the client's redirect URI carrying ``error=access_denied``.

A request is answered once: the answer is a conditional UPDATE on the still-unanswered row,
so two submissions of the form cannot both issue a code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from mcp.server.auth.provider import construct_redirect_uri
from sqlalchemy import select, update

from agent_server.dashboard.people import Person, owned_agent
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import NotFound
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, UnitOfWork
from agent_server.mail import masked
from agent_server.oauth.client_documents import DOCUMENT_ID_PREFIX, DOCUMENT_KEY
from agent_server.oauth.models import OAuthClient, OAuthGrant
from agent_server.oauth.provider import CODE_PREFIX, CODE_TTL, secret_hash

log = get_logger(__name__)


@dataclass(frozen=True)
class Pending:
    """What the consent page shows about a request."""

    grant_id: int
    client_id: str
    client_name: str
    redirect_uri: str

    @property
    def redirect_host(self) -> str:
        parts = urlsplit(self.redirect_uri)
        return parts.netloc or f"{parts.scheme}:"

    @property
    def redirect_origin(self) -> str:
        """The redirect URI's origin for a ``form-action`` source (``scheme:`` for app links)."""
        parts = urlsplit(self.redirect_uri)
        if parts.scheme in ("http", "https") and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
        return f"{parts.scheme}:"


def _expired() -> NotFound:
    return NotFound(
        "this sign-in request has expired or was already answered; start connecting again "
        "from your MCP client"
    )


async def _live(uow: UnitOfWork, settings: Settings, handle: str | None) -> OAuthGrant:
    if not handle or len(handle) > 100:
        raise _expired()
    grant = await uow.session.scalar(
        select(OAuthGrant).where(
            OAuthGrant.request_hash == secret_hash(settings, handle, "request")
        )
    )
    if (
        grant is None
        or grant.consented_at is not None
        or grant.revoked_at is not None
        or grant.expires_at <= uow.clock.now()
    ):
        raise _expired()
    return grant


async def pending(db: Database, settings: Settings, handle: str | None) -> Pending:
    async with db.uow() as uow:
        grant = await _live(uow, settings, handle)
        info = await uow.session.scalar(
            select(OAuthClient.info).where(OAuthClient.client_id == grant.client_id)
        )
        name = str((info or {}).get("client_name") or "An MCP client")[:100]
        document = (info or {}).get(DOCUMENT_KEY)
        if grant.client_id.startswith(DOCUMENT_ID_PREFIX) and document:
            # Named by its own document: the host that published it vouches for the name.
            name = f"{name} ({urlsplit(str(document)).netloc})"
        return Pending(grant.id, grant.client_id, name, grant.redirect_uri)


async def _answer(
    uow: UnitOfWork, grant_id: int, values: dict[str, object], *, revoke: bool = False
) -> None:
    now = uow.clock.now()
    if revoke:
        values = {**values, "revoked_at": now}
    won = await uow.session.execute(
        update(OAuthGrant)
        .where(
            OAuthGrant.id == grant_id,
            OAuthGrant.consented_at.is_(None),
            OAuthGrant.revoked_at.is_(None),
            OAuthGrant.expires_at > now,
        )
        .values(consented_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        raise _expired()


async def approve(
    db: Database, settings: Settings, handle: str | None, person: Person, agent_id: int
) -> str:
    async with db.uow() as uow:
        grant = await _live(uow, settings, handle)
        grant_id, client_id = grant.id, grant.client_id
        target, state = grant.redirect_uri, grant.state
        await owned_agent(uow, person, agent_id)
        code = CODE_PREFIX + secrets.token_urlsafe(32)
        await _answer(
            uow,
            grant_id,
            {
                "agent_id": agent_id,
                "owner_email": person.email,
                "code_hash": secret_hash(settings, code, "code"),
                "code_expires_at": uow.clock.now() + CODE_TTL,
            },
        )
        await uow.commit()
    log.info(
        "oauth.consented",
        grant_id=grant_id,
        client_id=client_id,
        agent_id=agent_id,
        owner=masked(person.email),
    )
    return construct_redirect_uri(target, code=code, state=state)


async def deny(db: Database, settings: Settings, handle: str | None, person: Person) -> str:
    async with db.uow() as uow:
        grant = await _live(uow, settings, handle)
        grant_id, target, state = grant.id, grant.redirect_uri, grant.state
        await _answer(uow, grant_id, {"owner_email": person.email}, revoke=True)
        await uow.commit()
    log.info("oauth.denied", grant_id=grant_id)
    return construct_redirect_uri(
        target, error="access_denied", error_description="the owner declined", state=state
    )
