"""What OAuth sign-in stores: registered clients, authorizations and the tokens they issue.

Nothing here opens anything when read from a stolen copy of the database: authorization codes,
access tokens, refresh tokens and consent-page handles are kept as peppered HMACs, and a
client secret is sealed with a key derived from the pepper.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime


class OAuthClient(Base):
    """A client registered through dynamic client registration (RFC 7591)."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    # The registered metadata as the registration answer showed it, without the secret.
    info: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Fernet token of the client secret; None for a public client (PKCE only).
    secret_sealed: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OAuthGrant(Base):
    """One authorization: the client's request, the owner's consent (the agent chosen and the
    code issued), the code's single exchange, and the refresh chain that follows it.

    ``revoked_at`` ends every token of the grant at once: revocation, a reused refresh token
    or a replayed code set it, and every token lookup checks it.
    """

    __tablename__ = "oauth_grants"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    redirect_uri_explicit: Mapped[bool] = mapped_column(Boolean)
    code_challenge: Mapped[str] = mapped_column(String(128))
    state: Mapped[str | None] = mapped_column(Text)
    scopes: Mapped[str] = mapped_column(String(1000), default="")
    resource: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    owner_email: Mapped[str | None] = mapped_column(String(255))
    consented_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    code_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    exchanged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OAuthToken(Base):
    """An access or refresh token of a grant, bound to the grant's agent."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    grant_id: Mapped[int] = mapped_column(ForeignKey("oauth_grants.id"), index=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # access | refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(1000), default="")
    resource: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A refresh token's single use: set when it is exchanged for the next pair.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
