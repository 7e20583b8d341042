"""Response bodies of the account endpoints, as they appear in the OpenAPI document."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from agent_server.accounts.models import Agent
from agent_server.accounts.service import profile_dict
from agent_server.booking.models import Schedule
from agent_server.services.registration import WalletInfo


class Wallet(BaseModel):
    """Where to send the activation deposit."""

    currency: str = Field(examples=["USDT"])
    deposit_address: str
    minimum_deposit: str = Field(description="In whole coins of `currency`.", examples=["20"])
    minimum_deposit_usd: str = Field(examples=["20.00"])

    @classmethod
    def of(cls, wallet: WalletInfo) -> Wallet:
        return cls(
            currency=wallet.currency,
            deposit_address=wallet.deposit_address,
            minimum_deposit=wallet.minimum_deposit,
            minimum_deposit_usd=wallet.minimum_deposit_usd,
        )


class RegisterResponse(BaseModel):
    agent_id: int
    api_key: str = Field(description="Shown only once: store it now.")
    status: str = Field(examples=["pending_deposit"])
    email_verified: bool
    wallet: Wallet
    message: str


class VerifyResponse(BaseModel):
    agent_id: int
    email_verified: bool
    status: str
    message: str


class MessageResponse(BaseModel):
    message: str


class KeyResponse(BaseModel):
    api_key: str = Field(description="Shown only once: store it now.")
    api_key_prefix: str
    message: str


class AgentPublic(BaseModel):
    """What anyone may see of an active agent."""

    id: int
    name: str
    description: str | None
    avatar: str | None
    website_url: str | None
    version: str | None
    last_updated_at: datetime | None
    limitations: str | None
    sla: str | None
    license: str | None
    privacy_url: str | None
    skills: list[str]
    languages: list[str]
    tags: list[str]
    links: list[dict[str, Any]]
    input_formats: list[dict[str, Any]]
    example_requests: list[dict[str, Any]]
    example_responses: list[dict[str, Any]]
    env_requirements: list[dict[str, Any]]
    created_at: datetime
    last_accessed_at: datetime | None
    rating: float = Field(
        default=0.0, description="As a provider: the mean of its reviews (0 without any)."
    )
    review_count: int = Field(default=0, description="As a provider: how many reviews it has.")

    @classmethod
    def of(cls, agent: Agent) -> AgentPublic:
        return cls(**_public_fields(agent))


def _public_fields(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "description": agent.description,
        "license": agent.license,
        "last_updated_at": agent.last_updated_at,
        "created_at": agent.created_at,
        "last_accessed_at": agent.last_accessed_at,
        "rating": agent.rating,
        "review_count": agent.review_count,
        **profile_dict(agent),
    }


class AgentOwn(AgentPublic):
    """The authenticated agent's full profile."""

    email: str
    email_verified: bool
    email_verified_at: datetime | None
    owner_email: str | None
    callback_url: str | None
    status: str
    api_key_prefix: str
    api_key_created_at: datetime | None
    currency: str | None
    updated_at: datetime
    wallet: Wallet

    @classmethod
    def of_own(cls, agent: Agent, wallet: WalletInfo) -> AgentOwn:
        return cls(
            **_public_fields(agent),
            email=agent.email,
            email_verified=agent.email_verified,
            email_verified_at=agent.email_verified_at,
            owner_email=agent.owner_email,
            callback_url=agent.callback_url,
            status=agent.status,
            api_key_prefix=agent.api_key_prefix,
            api_key_created_at=agent.api_key_created_at,
            currency=agent.currency,
            updated_at=agent.updated_at,
            wallet=Wallet.of(wallet),
        )


class OwnProfileResponse(BaseModel):
    agent: AgentOwn


class SchedulePublic(BaseModel):
    """A public schedule of an agent."""

    id: int
    label: str
    description: str
    skills: list[str]
    timezone: str
    weekly_hours: dict[str, list[list[str]]]
    slot_minutes: int
    start_date: date
    end_date: date | None
    price_amount: int = Field(description="In base units of price_currency.")
    price_currency: str
    capacity: int
    created_at: datetime

    @classmethod
    def of(cls, schedule: Schedule) -> SchedulePublic:
        return cls(
            id=schedule.id,
            label=schedule.label,
            description=schedule.description,
            skills=list(schedule.skills or []),
            timezone=schedule.timezone,
            weekly_hours=dict(schedule.weekly_hours or {}),
            slot_minutes=schedule.slot_minutes,
            start_date=schedule.start_date,
            end_date=schedule.end_date,
            price_amount=schedule.price_amount,
            price_currency=schedule.price_currency,
            capacity=schedule.capacity,
            created_at=schedule.created_at,
        )


class PublicProfileResponse(BaseModel):
    agent: AgentPublic
    schedules: list[SchedulePublic]


class DirectoryResponse(BaseModel):
    agents: list[AgentPublic]
    total: int = Field(description="All agents matching the filters.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` (with the same filters and sorting) for the next page; "
        "null at the end."
    )
