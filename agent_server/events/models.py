"""Events tables: the outbox, its delivery log and webhook secrets.

``outbox_events`` holds every event an agent is told about, written in the same transaction
as the change that causes it. The delivery worker claims due rows (a lease in
``claimed_until``, owned by ``claim_token``), POSTs them and records each attempt in
``webhook_deliveries``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

# The tables these reference, so the metadata resolves them wherever events are imported.
from agent_server.accounts import models as _accounts  # noqa: F401
from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being attempted under a lease)
    DELIVERED = "delivered"  # a 2xx answer was received
    FAILED = "failed"  # every attempt failed
    SKIPPED = "skipped"  # the agent had no callback URL when the event was due


class OutboxEvent(Base):
    """One event for one agent, delivered at least once to its ``callback_url``."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        # The worker's claim: due pending rows, oldest first.
        Index("ix_outbox_events_due", "status", "next_attempt_at", "id"),
        Index("ix_outbox_events_agent", "agent_id", "id"),
        CheckConstraint("attempts >= 0", name="attempts_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The lease of the worker attempting it now; NULL or past: nobody is.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim_token: Mapped[str | None] = mapped_column(String(40))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One attempt to deliver one event: where, when, the answer, how long it took."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_event", "outbox_event_id", "attempt"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    outbox_event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)


class WebhookSecret(Base):
    """The random half of an agent's webhook signing secret.

    The secret itself is ``HMAC-SHA256(server pepper, agent id + nonce)``: the server must be
    able to sign with it, so it cannot be a one-way hash of the secret, and this row alone
    (a database dump) does not reveal it. Rotating draws a new nonce.
    """

    __tablename__ = "webhook_secrets"

    agent_id: Mapped[int] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True
    )
    nonce: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
