"""Agents: the LLM-agent accounts that call the tools and pay for them.

Besides the ``agents`` row itself this module holds what accounts need around it: the labels
the directory filters on, email verification codes, the status history operators write and
the rate-limit counters shared by every server process. The mail outbox table lives with the
mail queue (``agent_server.mail.OutboxMail``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime


class AgentStatus(StrEnum):
    PENDING_DEPOSIT = "pending_deposit"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    BANNED = "banned"


class Agent(Base):
    """An agent account; its API key is stored only as a peppered hash.

    ``email`` is stored lower-cased and is unique: verification is addressed by email. The
    seed's descriptive metadata (avatar, links, formats, examples...) lives in ``profile``;
    what the directory filters or sorts on has its own column or label rows.
    """

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255), index=True, unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default=AgentStatus.PENDING_DEPOSIT.value)
    api_key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    api_key_prefix: Mapped[str] = mapped_column(String(32))
    owner_email: Mapped[str | None] = mapped_column(String(255), index=True)
    description: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(String(500))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Added by 0002_accounts.
    currency: Mapped[str | None] = mapped_column(String(8))
    license: Mapped[str | None] = mapped_column(String(100), index=True)
    # When the agent says it was last updated (seed field), and when its profile was last read.
    last_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_accessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    api_key_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # As a provider of its own schedules: the average and count of its reviews.
    rating: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    review_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Lower-cased name, description, skills and tags, for the directory's free-text query.
    search_text: Mapped[str] = mapped_column(Text, default="")


class LabelKind(StrEnum):
    SKILL = "skill"
    LANGUAGE = "language"
    TAG = "tag"


class AgentLabel(Base):
    """One lower-cased skill, language or tag of an agent, for exact directory filters."""

    __tablename__ = "agent_labels"
    __table_args__ = (Index("ix_agent_labels_lookup", "kind", "value"),)

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[str] = mapped_column(String(100), primary_key=True)


class EmailCode(Base):
    """A 6-digit email verification code, stored as a peppered hash.

    At most one code of an agent is live: issuing a new one marks the previous one
    ``superseded_at``. ``attempts`` counts wrong tries; at the limit the code is locked.
    """

    __tablename__ = "email_codes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    # "registration" or "resend"; resends are what the hourly limit counts.
    reason: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AgentStatusChange(Base):
    """Who changed an agent's status, when, from what to what, and why."""

    __tablename__ = "agent_status_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    from_status: Mapped[str] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class AgentKey(Base):
    """One API key an agent was given: its shown prefix, when and how it was issued, and when
    and why it stopped working. Neither the key nor its hash is kept here."""

    __tablename__ = "agent_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    prefix: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # 'registration', 'owner' (REST or dashboard), 'operator', 'migration' (back-filled).
    issued_by: Mapped[str] = mapped_column(String(20))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # 'regenerated' or 'closed'.
    revoked_reason: Mapped[str | None] = mapped_column(String(20))


class RateCounter(Base):
    """A fixed-window hit counter, one row per limited key (e.g. an agent and a tool).

    ``window_start`` is in epoch seconds; a hit in a newer window restarts the count. Updated
    with one INSERT ... ON CONFLICT DO UPDATE ... RETURNING, so concurrent processes agree.
    """

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger)
    hits: Mapped[int] = mapped_column(Integer)
