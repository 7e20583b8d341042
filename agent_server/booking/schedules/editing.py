"""Changing schedules: ``create_schedule``, ``update_schedule`` (the result validated as a
whole) and ``delete_schedule`` (soft). Each flushes, never commits; changing someone else's
schedule is ``Forbidden``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from agent_server.accounts.models import Agent
from agent_server.booking.availability import (
    WEEKDAYS,
    ScheduleSpec,
    start_blocks,
    zone,
)
from agent_server.booking.models import Schedule, Specialist
from agent_server.booking.schedules.owners import ScheduleOwner
from agent_server.booking.schedules.reading import load_schedule
from agent_server.booking.schedules.usd import usd_value
from agent_server.booking.schedules.validation import (
    ScheduleInput,
    ScheduleUpdate,
    parse_schedule_input,
)
from agent_server.kernel.errors import Forbidden, NotFound, ValidationFailed
from agent_server.kernel.store import UnitOfWork


def _ranges_json(ranges: Sequence[tuple[str, str]]) -> list[list[str]]:
    return [[lo, hi] for lo, hi in ranges]


def _weekly_json(weekly: Mapping[Any, Sequence[tuple[str, str]]]) -> dict[str, list[list[str]]]:
    return {day: _ranges_json(weekly[day]) for day in WEEKDAYS if day in weekly}


def _overrides_json(
    overrides: Mapping[date, Sequence[tuple[str, str]]],
) -> dict[str, list[list[str]]]:
    return {d.isoformat(): _ranges_json(overrides[d]) for d in sorted(overrides)}


def _blackouts_json(dates: Sequence[date]) -> list[str]:
    return [d.isoformat() for d in sorted(set(dates))]


async def _require_owner(uow: UnitOfWork, owner: ScheduleOwner) -> None:
    if owner.agent_id is not None:
        agent = await uow.session.get(Agent, owner.agent_id)
        if agent is None or agent.deleted_at is not None:
            raise NotFound(f"agent {owner.agent_id} not found", {"agent_id": owner.agent_id})
    else:
        specialist = await uow.session.get(Specialist, owner.specialist_id)
        if specialist is None:
            raise NotFound(
                f"specialist {owner.specialist_id} not found",
                {"specialist_id": owner.specialist_id},
            )


def _today_in(tz_name: str, now: datetime) -> date:
    return now.astimezone(zone(tz_name)).date()


def _check_end_after_default_start(data: ScheduleInput, start: date) -> None:
    if data.end_date is not None and data.end_date < start:
        raise ValidationFailed.field(
            "end_date",
            f"end_date {data.end_date} is before the start date {start} (today in the "
            "schedule's time zone); give a later end_date or an earlier start_date",
        )


async def create_schedule(
    uow: UnitOfWork,
    owner: ScheduleOwner,
    data: ScheduleInput,
    *,
    usd_micros_per_unit: Mapping[str, int] | None = None,
) -> Schedule:
    """Publish a schedule for ``owner`` (flushed, not committed).

    Without ``start_date`` the schedule starts today in its own time zone.
    """
    await _require_owner(uow, owner)
    now = uow.clock.now()
    start = data.start_date or _today_in(data.timezone, now)
    _check_end_after_default_start(data, start)
    schedule = Schedule(
        specialist_id=owner.specialist_id,
        agent_id=owner.agent_id,
        label=data.label,
        description=data.description,
        skills=list(data.skills),
        timezone=data.timezone,
        weekly_hours=_weekly_json(data.weekly_hours),
        overrides=_overrides_json(data.overrides),
        blackout_dates=_blackouts_json(data.blackout_dates),
        slot_minutes=data.slot_minutes,
        buffer_minutes=data.buffer_minutes,
        min_notice_minutes=data.min_notice_minutes,
        start_date=start,
        end_date=data.end_date,
        price_amount=data.price_amount,
        price_currency=data.price_currency,
        price_usd_micros=usd_value(data.price_amount, data.price_currency, usd_micros_per_unit),
        capacity=data.capacity,
        private=data.private,
        auto_accept=data.auto_accept,
        created_at=now,
        updated_at=now,
    )
    schedule.start_blocks = start_blocks(ScheduleSpec.from_row(schedule))
    uow.session.add(schedule)
    await uow.session.flush()
    return schedule


# Fields that change which slots exist or are free.
_AVAILABILITY_FIELDS = frozenset(
    {
        "timezone",
        "weekly_hours",
        "overrides",
        "blackout_dates",
        "slot_minutes",
        "buffer_minutes",
        "min_notice_minutes",
        "start_date",
        "end_date",
        "capacity",
    }
)


def _as_input_dict(schedule: Schedule) -> dict[str, Any]:
    return {
        "label": schedule.label,
        "description": schedule.description,
        "skills": list(schedule.skills),
        "timezone": schedule.timezone,
        "weekly_hours": schedule.weekly_hours,
        "overrides": schedule.overrides,
        "blackout_dates": list(schedule.blackout_dates),
        "slot_minutes": schedule.slot_minutes,
        "buffer_minutes": schedule.buffer_minutes,
        "min_notice_minutes": schedule.min_notice_minutes,
        "start_date": schedule.start_date,
        "end_date": schedule.end_date,
        "price_amount": schedule.price_amount,
        "price_currency": schedule.price_currency,
        "capacity": schedule.capacity,
        "private": schedule.private,
        "auto_accept": schedule.auto_accept,
    }


async def _owned_schedule(uow: UnitOfWork, owner: ScheduleOwner, schedule_id: int) -> Schedule:
    # Locked: an update merges the stored fields with the new ones and derives columns from
    # the whole (the USD price, the week's start blocks); a concurrent update must see it.
    schedule = await load_schedule(uow, schedule_id, lock=True)
    if not owner.owns(schedule):
        raise Forbidden(
            f"schedule {schedule_id} belongs to someone else", {"schedule_id": schedule_id}
        )
    return schedule


async def update_schedule(
    uow: UnitOfWork,
    owner: ScheduleOwner,
    schedule_id: int,
    data: ScheduleUpdate,
    *,
    usd_micros_per_unit: Mapping[str, int] | None = None,
) -> Schedule:
    """Change the fields given in ``data`` (flushed, not committed).

    The result is validated as a whole (an ``end_date`` before the stored ``start_date`` is
    refused). Bookings already made keep their slot, seat and price.
    """
    schedule = await _owned_schedule(uow, owner, schedule_id)
    merged = _as_input_dict(schedule)
    merged.update(data.model_dump(exclude_unset=True))
    full = parse_schedule_input(merged)
    schedule.label = full.label
    schedule.description = full.description
    schedule.skills = list(full.skills)
    schedule.timezone = full.timezone
    schedule.weekly_hours = _weekly_json(full.weekly_hours)
    schedule.overrides = _overrides_json(full.overrides)
    schedule.blackout_dates = _blackouts_json(full.blackout_dates)
    schedule.slot_minutes = full.slot_minutes
    schedule.buffer_minutes = full.buffer_minutes
    schedule.min_notice_minutes = full.min_notice_minutes
    schedule.start_date = full.start_date or schedule.start_date
    schedule.end_date = full.end_date
    schedule.price_amount = full.price_amount
    schedule.price_currency = full.price_currency
    schedule.price_usd_micros = usd_value(
        full.price_amount, full.price_currency, usd_micros_per_unit
    )
    schedule.capacity = full.capacity
    schedule.private = full.private
    schedule.auto_accept = full.auto_accept
    if _AVAILABILITY_FIELDS & data.model_fields_set:
        # Search's bound on the next free slot no longer holds; it recomputes unknown ones.
        schedule.next_free_at = None
    schedule.start_blocks = start_blocks(ScheduleSpec.from_row(schedule))
    schedule.updated_at = uow.clock.now()
    await uow.session.flush()
    return schedule


async def delete_schedule(uow: UnitOfWork, owner: ScheduleOwner, schedule_id: int) -> Schedule:
    """Soft-delete a schedule (flushed, not committed); its existing bookings stay valid."""
    schedule = await _owned_schedule(uow, owner, schedule_id)
    now = uow.clock.now()
    schedule.deleted_at = now
    schedule.updated_at = now
    await uow.session.flush()
    return schedule
