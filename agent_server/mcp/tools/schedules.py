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

WEEKLY_HOURS_DOC = (
    "Opening hours in the schedule's time zone, weekday (mon..sun) → [start, end] ranges that "
    'do not overlap, e.g. {"mon": [["09:00", "12:00"], ["14:00", "18:00"]]}.'
)


class ScheduleFields(Input):
    label: Annotated[Text, Field(max_length=255, description="Short name shown in search.")] = ""
    description: Annotated[
        MultilineText, Field(max_length=5000, description="What is offered.")
    ] = ""
    skills: Annotated[
        list[Annotated[Text, Field(max_length=100)]],
        Field(max_length=50, description='Skills offered, e.g. ["tax law", "german"].'),
    ] = []
    weekly_hours: Annotated[JsonObject, Field(description=WEEKLY_HOURS_DOC)] = {}
    overrides: Annotated[
        JsonObject,
        Field(
            description=(
                "Hours for given dates instead (an empty list closes the day), e.g. "
                '{"2026-12-24": [["10:00", "12:00"]], "2026-12-25": []}.'
            )
        ),
    ] = {}
    blackout_dates: Annotated[
        list[Day], Field(max_length=1000, description='Closed dates, e.g. ["2026-12-31"].')
    ] = []
    slot_minutes: Annotated[
        int, Field(ge=15, le=1440, description="Length of one bookable slot in minutes (≥ 15).")
    ] = 60
    buffer_minutes: Annotated[
        int, Field(ge=0, le=1440, description="Gap left free after each slot, in minutes.")
    ] = 0
    min_notice_minutes: Annotated[
        Int32, Field(ge=0, description="How long before its start a slot can still be booked.")
    ] = 0
    start_date: Annotated[
        Day | None, Field(description="First bookable date (default: today in the time zone).")
    ] = None
    end_date: Annotated[Day | None, Field(description="Last bookable date (default: none).")] = None
    price_amount: Annotated[
        Amount,
        Field(
            ge=0,
            description=(
                "Price per slot in base units of price_currency (25 USD = 25000000; USDT/USDC "
                "10^-6, ETH gwei, BTC sat)."
            ),
        ),
    ] = 0
    price_currency: Annotated[
        str, Field(description="USD, USDT, USDC, ETH or BTC.", examples=["USD"])
    ] = "USD"
    capacity: Annotated[int, Field(ge=1, le=1000, description="Seats per slot.")] = 1
    private: Annotated[
        bool, Field(description="Private schedules are hidden from search and other agents.")
    ] = True
    auto_accept: Annotated[
        bool, Field(description="Accept bookings at once (false: each waits for acceptance).")
    ] = True


class CreateScheduleIn(ScheduleFields):
    timezone: Annotated[
        TimeZone,
        Field(
            description="IANA time zone the hours are in, e.g. Europe/Berlin (not an offset).",
            examples=["Europe/Berlin", "America/New_York"],
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
    """Publish your own availability as a schedule of bookable slots: weekly hours in the
    schedule's IANA time zone, cut into slots of slot_minutes, buffer_minutes apart (right
    across daylight-saving changes). Private by default. Reuse the idempotency_key on retries:
    nothing is created or charged twice."""
    data = svc.parse_schedule_input(args.model_dump(exclude={"idempotency_key"}, exclude_none=True))
    schedule = await svc.create_schedule(ctx.uow, ScheduleOwner.agent(ctx.agent_id), data)
    return ScheduleResult(schedule=schedule_out(schedule))


class ListSchedulesIn(Input):
    cursor: Annotated[
        Text | None, Field(max_length=200, description="next_cursor of the previous page.")
    ] = None
    limit: Annotated[int, Field(ge=1, le=50, description="Schedules per page.")] = 50


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
    """Your own schedules, newest first; page with next_cursor."""
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
    schedule_id: Annotated[int, Field(ge=1, le=MAX_ID, description="Id of one of your schedules.")]
    changes: Annotated[
        JsonObject,
        Field(
            description=(
                "Only the fields to change, named and meant as in create-schedule's arguments "
                "(timezone, weekly_hours, price_amount, private...)."
            ),
            examples=[{"price_amount": 30000000, "blackout_dates": ["2026-12-24"]}],
        ),
    ]


@REGISTRY.tool(
    "update-schedule",
    title="Change one of your schedules",
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
    schedule_id: Annotated[int, Field(ge=1, le=MAX_ID, description="Id of one of your schedules.")]


@REGISTRY.tool(
    "delete-schedule",
    title="Delete one of your schedules",
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
        Field(ge=1, le=MAX_ID, description="A schedule id (give this or specialist_id)."),
    ] = None
    specialist_id: Annotated[
        int | None,
        Field(ge=1, le=MAX_ID, description="A specialist id: free slots of all their schedules."),
    ] = None
    start: Annotated[
        Moment | None,
        Field(
            description="Window start, ISO 8601 with offset (default: now).",
            examples=["2026-05-04T00:00:00Z"],
        ),
    ] = None
    end: Annotated[
        Moment | None,
        Field(
            description="Window end, ISO 8601 with offset (default: start + 7 days; max 62 days)."
        ),
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
    """Free slots of one schedule or of one specialist in a time window, per schedule: each
    slot_id (book-slot takes it; it holds the UTC start) with its local date and times in the
    schedule's time zone, and seats left for group schedules."""
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
