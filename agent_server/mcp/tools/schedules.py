"""Tools for the calling agent's own schedules: create, list, update, delete, availability."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import Field

from agent_server.booking import schedules as svc
from agent_server.booking.schedules import ScheduleOwner
from agent_server.kernel.inputs import (
    Amount,
    Day,
    Int32,
    JsonObject,
    Moment,
    MultilineText,
    Text,
    TimeZone,
)
from agent_server.kernel.paging import decode_cursor, page_of
from agent_server.mcp.pipeline import ToolContext
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import (
    MAX_ID,
    IdempotencyKey,
    Input,
    Paid,
    ScheduleOut,
    ScheduleSlots,
    schedule_out,
    schedule_slots,
)

WEEKLY_HOURS_DOC = 'Ranges per weekday, in timezone, e.g. {"mon": [["09:00", "12:00"]]}.'


class ScheduleFields(Input):
    label: Annotated[Text, Field(max_length=255, description="Shown in search.")] = ""
    description: Annotated[MultilineText, Field(max_length=5000, description="What you offer.")] = (
        ""
    )
    skills: Annotated[
        list[Annotated[Text, Field(max_length=100)]],
        Field(max_length=50, description="e.g. ['tax law', 'german']."),
    ] = []
    weekly_hours: Annotated[JsonObject, Field(description=WEEKLY_HOURS_DOC)] = {}
    overrides: Annotated[
        JsonObject,
        Field(description=('Ranges for a date instead ([]: closed), e.g. {"2026-12-24": []}.')),
    ] = {}
    blackout_dates: Annotated[list[Day], Field(max_length=1000, description="Closed dates.")] = []
    slot_minutes: Annotated[int, Field(ge=15, le=1440, description="Length of a slot.")] = 60
    buffer_minutes: Annotated[int, Field(ge=0, le=1440, description="Gap after each slot.")] = 0
    min_notice_minutes: Annotated[
        Int32, Field(ge=0, description="Least time from booking to start.")
    ] = 0
    start_date: Annotated[Day | None, Field(description="First bookable date; default today.")] = (
        None
    )
    end_date: Annotated[Day | None, Field(description="Last bookable date.")] = None
    price_amount: Annotated[
        Amount,
        Field(
            ge=0,
            description="Per slot, in base units of price_currency (25 USD = 25000000).",
        ),
    ] = 0
    price_currency: Annotated[str, Field(description="USD, USDT, USDC, ETH or BTC.")] = "USD"
    capacity: Annotated[int, Field(ge=1, le=1000, description="Seats per slot (> 1: a group).")] = 1
    private: Annotated[bool, Field(description="Hidden from search and other agents.")] = True
    auto_accept: Annotated[
        bool, Field(description="false: each booking waits for accept-booking.")
    ] = True


class CreateScheduleIn(ScheduleFields):
    timezone: Annotated[
        TimeZone,
        Field(
            description="IANA time zone of the hours, e.g. Europe/Berlin.",
        ),
    ]
    idempotency_key: IdempotencyKey


class ScheduleResult(Paid):
    schedule: ScheduleOut


@REGISTRY.tool(
    "create-schedule",
    title="Publish your availability",
    toolset="booking",
    input_model=CreateScheduleIn,
    output_model=ScheduleResult,
    read_only=False,
    idempotent=True,
)
async def create_schedule(ctx: ToolContext, args: CreateScheduleIn) -> ScheduleResult:
    """Publish your availability as a schedule: weekly hours in its time zone, cut into
    bookable slots of slot_minutes, buffer_minutes apart (right across daylight-saving
    changes). Private by default."""
    data = svc.parse_schedule_input(args.model_dump(exclude={"idempotency_key"}, exclude_none=True))
    schedule = await svc.create_schedule(ctx.uow, ScheduleOwner.agent(ctx.agent_id), data)
    return ScheduleResult(schedule=schedule_out(schedule))


class ListSchedulesIn(Input):
    cursor: Annotated[Text | None, Field(max_length=200)] = None
    limit: Annotated[int, Field(ge=1, le=50)] = 50


class ScheduleList(Paid):
    schedules: list[ScheduleOut]
    total: int = Field(description="All your live schedules.")
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null at the end."
    )


@REGISTRY.tool(
    "list-schedules",
    title="List your schedules",
    toolset="booking",
    input_model=ListSchedulesIn,
    output_model=ScheduleList,
    read_only=True,
    idempotent=True,
)
async def list_schedules(ctx: ToolContext, args: ListSchedulesIn) -> ScheduleList:
    """Your schedules, newest first; page with next_cursor."""
    listing = await svc.list_schedules(
        ctx.uow,
        ScheduleOwner.agent(ctx.agent_id),
        per_page=args.limit + 1,
        before=decode_cursor(args.cursor),
    )
    shown, next_cursor = page_of(listing.items, args.limit)
    return ScheduleList(
        schedules=[schedule_out(s) for s in shown], total=listing.total, next_cursor=next_cursor
    )


class UpdateScheduleIn(Input):
    schedule_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    changes: Annotated[
        JsonObject,
        Field(
            description="Fields to change, as create-schedule's arguments.",
            examples=[{"price_amount": 30000000, "blackout_dates": ["2026-12-24"]}],
        ),
    ]


@REGISTRY.tool(
    "update-schedule",
    title="Change a schedule",
    toolset="booking",
    input_model=UpdateScheduleIn,
    output_model=ScheduleResult,
    read_only=False,
    destructive=True,
    idempotent=True,
)
async def update_schedule(ctx: ToolContext, args: UpdateScheduleIn) -> ScheduleResult:
    """Change fields of one of your schedules. Existing bookings keep their time and price."""
    data = svc.parse_schedule_update(args.changes)
    schedule = await svc.update_schedule(
        ctx.uow, ScheduleOwner.agent(ctx.agent_id), args.schedule_id, data
    )
    return ScheduleResult(schedule=schedule_out(schedule))


class DeleteScheduleIn(Input):
    schedule_id: Annotated[int, Field(ge=1, le=MAX_ID)]


@REGISTRY.tool(
    "delete-schedule",
    title="Delete a schedule",
    toolset="booking",
    input_model=DeleteScheduleIn,
    output_model=ScheduleResult,
    read_only=False,
    destructive=True,
    idempotent=True,
)
async def delete_schedule(ctx: ToolContext, args: DeleteScheduleIn) -> ScheduleResult:
    """Delete one of your schedules: it leaves search and takes no new bookings."""
    schedule = await svc.delete_schedule(
        ctx.uow, ScheduleOwner.agent(ctx.agent_id), args.schedule_id
    )
    return ScheduleResult(schedule=schedule_out(schedule))


class AvailabilityIn(Input):
    schedule_id: Annotated[
        int | None,
        Field(ge=1, le=MAX_ID, description="This or specialist_id."),
    ] = None
    specialist_id: Annotated[
        int | None,
        Field(ge=1, le=MAX_ID, description="All their schedules."),
    ] = None
    start: Annotated[
        Moment | None,
        Field(description="With offset, e.g. 2026-05-04T00:00:00Z; default now."),
    ] = None
    end: Annotated[
        Moment | None,
        Field(description="Default start + 7 days; at most 62 days later."),
    ] = None


class AvailabilityOut(Paid):
    start: datetime = Field(description="Window start, UTC.")
    end: datetime = Field(description="Window end, UTC.")
    schedules: list[ScheduleSlots]


@REGISTRY.tool(
    "get-availability",
    title="Free slots of a schedule or specialist",
    toolset="discovery",
    input_model=AvailabilityIn,
    output_model=AvailabilityOut,
    read_only=True,
    idempotent=True,
)
async def get_availability(ctx: ToolContext, args: AvailabilityIn) -> AvailabilityOut:
    """Free slots of a schedule or a specialist in a time window: slot_ids for book-slot,
    local times in each schedule's time zone, seats left in groups."""
    from agent_server.kernel.errors import ValidationFailed

    if (args.schedule_id is None) == (args.specialist_id is None):
        raise ValidationFailed.field(
            "schedule_id", "give exactly one of schedule_id or specialist_id"
        )
    now = ctx.uow.clock.now()
    start = _aware(args.start, "start") if args.start else now
    end = _aware(args.end, "end") if args.end else start + timedelta(days=7)
    if args.schedule_id is not None:
        schedule = await svc.get_schedule(
            ctx.uow, args.schedule_id, ScheduleOwner.agent(ctx.agent_id)
        )
        slots = await svc.get_availability(
            ctx.uow, args.schedule_id, start, end, viewer_agent_id=ctx.agent_id
        )
        schedules = {schedule.id: schedule}
    else:
        slots = await svc.get_specialist_availability(ctx.uow, args.specialist_id or 0, start, end)
        schedules = {
            sid: await svc.get_schedule(ctx.uow, sid)
            for sid in sorted({s.schedule_id for s in slots})
        }
    return AvailabilityOut(
        start=start,
        end=end,
        schedules=[
            schedule_slots(sched, [s for s in slots if s.schedule_id == sid])
            for sid, sched in schedules.items()
        ],
    )


def _aware(value: datetime, field: str) -> datetime:
    from agent_server.kernel.errors import ValidationFailed

    if value.tzinfo is None:
        raise ValidationFailed.field(field, "include a UTC offset, e.g. 2026-05-04T09:00:00Z")
    return value.astimezone(UTC)
