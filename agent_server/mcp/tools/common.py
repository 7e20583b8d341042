"""Output shapes shared by several tools, and their builders from store rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from agent_server.booking.availability import Slot
from agent_server.booking.models import Schedule
from agent_server.booking.search.answer import FreeSlots, local_time_range
from agent_server.kernel.money import Money
from agent_server.mcp.receipts import Receipt

MAX_ID = 2**63 - 1  # the database's BIGINT

Id = Annotated[int, Field(ge=1, le=MAX_ID)]

IdempotencyKey = Annotated[
    str,
    Field(
        min_length=8,
        max_length=255,
        pattern=r"^[A-Za-z0-9._:\-]+$",
        description="Yours per operation, e.g. a UUID; reuse it to retry.",
    ),
]


class Input(BaseModel):
    """Base of every tool input: unknown arguments are refused by name."""

    model_config = ConfigDict(extra="forbid")


class Paid(BaseModel):
    receipt: Receipt | None = Field(
        default=None, description="The charge for this call; null when the call was free."
    )


class ScheduleSlots(BaseModel):
    """Free slots of one schedule, as search-specialists and view-profile list them."""

    schedule_id: int
    timezone: str = Field(description="The schedule's time zone, which local times are in.")
    slot_minutes: int
    capacity: int = Field(description="Seats per slot (above 1: a group session).")
    slots: FreeSlots
    seats_left: dict[str, int] = Field(
        default_factory=dict,
        description="Group schedules only: free seats per slot_id (a listed slot of a "
        "one-seat schedule has its seat free).",
    )


def schedule_slots(schedule: Schedule, slots: Sequence[Slot]) -> ScheduleSlots:
    tz = ZoneInfo(schedule.timezone)
    return ScheduleSlots(
        schedule_id=schedule.id,
        timezone=schedule.timezone,
        slot_minutes=schedule.slot_minutes,
        capacity=schedule.capacity,
        slots={s.slot_id: local_time_range(s, tz) for s in slots},
        seats_left={s.slot_id: s.seats_left for s in slots} if schedule.capacity > 1 else {},
    )


class ScheduleOut(BaseModel):
    id: int
    owner: dict[str, int | str]
    label: str
    description: str
    skills: list[str]
    timezone: str
    weekly_hours: dict[str, list[list[str]]]
    overrides: dict[str, list[list[str]]]
    blackout_dates: list[str]
    slot_minutes: int
    buffer_minutes: int
    min_notice_minutes: int
    start_date: date
    end_date: date | None
    price: Money
    capacity: int
    private: bool
    auto_accept: bool
    created_at: datetime
    deleted: bool


def schedule_out(s: Schedule) -> ScheduleOut:
    owner: dict[str, int | str] = (
        {"kind": "agent", "id": s.agent_id}
        if s.agent_id is not None
        else {"kind": "specialist", "id": s.specialist_id or 0}
    )
    return ScheduleOut(
        id=s.id,
        owner=owner,
        label=s.label,
        description=s.description,
        skills=list(s.skills or []),
        timezone=s.timezone,
        weekly_hours=dict(s.weekly_hours or {}),
        overrides=dict(s.overrides or {}),
        blackout_dates=list(s.blackout_dates or []),
        slot_minutes=s.slot_minutes,
        buffer_minutes=s.buffer_minutes,
        min_notice_minutes=s.min_notice_minutes,
        start_date=s.start_date,
        end_date=s.end_date,
        price=Money.of(s.price_amount, s.price_currency),
        capacity=s.capacity,
        private=s.private,
        auto_accept=s.auto_accept,
        created_at=s.created_at,
        deleted=s.deleted_at is not None,
    )


def compact(data: dict[str, Any]) -> dict[str, Any]:
    """Drop empty values from a mapping (keeps results short for language models)."""
    return {k: v for k, v in data.items() if v not in (None, "", [], {})}
