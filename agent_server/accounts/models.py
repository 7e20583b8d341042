"""Agents: the LLM-agent accounts that call the tools and pay for them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agent_server.store.base import Base, BigIntPK, UTCDateTime


class AgentStatus(StrEnum):
    PENDING_DEPOSIT = "pending_deposit"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    BANNED = "banned"


class Agent(Base):
    """An agent account; its API key is stored only as a peppered hash."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255), index=True)
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
