"""Tools for booking slots and managing the calling agent's bookings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from agent_server.booking import schedules as schedule_svc
from agent_server.booking import service as svc
from agent_server.booking.availability import parse_slot_id
from agent_server.kernel.inputs import Moment, MultilineText, Text
from agent_server.kernel.money import Money
from agent_server.mcp.pipeline import LookupContext, ToolContext
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import MAX_ID, IdempotencyKey, Input, Paid
from agent_server.services import bookings
from agent_server.services.booking_out import (
    BookingDetailOut,
    BookingOut,
    booking_detail,
    booking_out,
    refunded,
)
from billing.meter import ExtraPrice

SlotId = Annotated[
    Text,
    Field(
        min_length=3,
        max_length=64,
        description="As listed by search-specialists, view-profile or get-availability.",
        examples=["42-20260504T0900Z"],
    ),
]


class BookSlotIn(Input):
    slot_id: SlotId
    idempotency_key: IdempotencyKey
    topic: Annotated[
        MultilineText,
        Field(max_length=2000, description="What the session is about, for the specialist."),
    ] = ""


class BookingResult(Paid):
    booking: BookingOut


async def _slot_price(ctx: LookupContext, args: BookSlotIn) -> ExtraPrice | None:
    schedule_id, _start = parse_slot_id(args.slot_id)
    price = await schedule_svc.schedule_price(
        ctx.uow, schedule_id, schedule_svc.ScheduleOwner.agent(ctx.agent_id)
    )
    return None if price is None else ExtraPrice(amount=price[0], currency=price[1])


@REGISTRY.tool(
    "book-slot",
    title="Book a slot",
    toolset="booking",
    input_model=BookSlotIn,
    output_model=BookingResult,
    read_only=False,
    idempotent=True,
    open_world=True,
    extra_price=_slot_price,
)
async def book_slot(ctx: ToolContext, args: BookSlotIn) -> BookingResult:
    """Book a seat of a free slot. The slot's price waits in escrow until the session is done
    (refunds: cancel-booking). A slot just taken: BOOKING_CONFLICT with the next free one."""
    booking = await bookings.book_slot(
        ctx.call,
        agent_id=ctx.agent_id,
        slot_id=args.slot_id,
        idempotency_key=args.idempotency_key,
        topic=args.topic,
    )
    return BookingResult(booking=booking_out(booking))


BookingId = Annotated[int, Field(ge=1, le=MAX_ID)]


class ListBookingsIn(Input):
    role: Annotated[
        Literal["booker", "provider"] | None,
        Field(description="booker: you made them; provider: on your schedules."),
    ] = None
    status: Annotated[
        Literal["pending", "accepted", "rejected", "canceled", "completed"] | None,
        Field(description="Only this status."),
    ] = None
    starts_after: Annotated[
        Moment | None,
        Field(description="Slots starting then or later (with offset)."),
    ] = None
    starts_before: Annotated[
        Moment | None,
        Field(description="Slots starting earlier (with offset)."),
    ] = None
    cursor: Annotated[Text | None, Field(max_length=200)] = None
    limit: Annotated[int, Field(ge=1, le=100)] = 20


class BookingList(Paid):
    bookings: list[BookingOut]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null at the end."
    )


@REGISTRY.tool(
    "list-bookings",
    title="List your bookings",
    toolset="booking",
    input_model=ListBookingsIn,
    output_model=BookingList,
    read_only=True,
    idempotent=True,
)
async def list_bookings(ctx: ToolContext, args: ListBookingsIn) -> BookingList:
    """Bookings you made or received, newest first (dismissed ones left out)."""
    page = await svc.list_bookings(
        ctx.uow,
        agent_id=ctx.agent_id,
        role=args.role,
        status=args.status,
        starts_after=args.starts_after,
        starts_before=args.starts_before,
        cursor=args.cursor,
        limit=args.limit,
    )
    return BookingList(bookings=[booking_out(b) for b in page.items], next_cursor=page.next_cursor)


class CancelBookingIn(Input):
    booking_id: BookingId
    reason_code: Literal["not_feeling_well", "no_time", "other"] = "other"
    reason: Annotated[MultilineText, Field(max_length=2000)] = ""
    dismiss: Annotated[
        bool, Field(description="Instead hide your ended booking from list-bookings.")
    ] = False


class CancelResult(Paid):
    booking: BookingOut
    refunded: Money | None = Field(description="Returned to the booker; null when nothing.")


@REGISTRY.tool(
    "cancel-booking",
    title="Cancel a booking",
    toolset="booking",
    input_model=CancelBookingIn,
    output_model=CancelResult,
    read_only=False,
    destructive=True,
    idempotent=False,
    open_world=True,
)
async def cancel_booking(ctx: ToolContext, args: CancelBookingIn) -> CancelResult:
    """Cancel a pending or accepted booking. As booker: the slot price back in full until
    24 h before the start (see get-booking), half later; never the fee. As the schedule's
    owner: the booker gets all back."""
    if args.dismiss:
        dismissed = await svc.dismiss_booking(ctx.uow, ctx.agent_id, args.booking_id)
        return CancelResult(booking=booking_out(dismissed), refunded=None)
    cancelled = await bookings.cancel_as(
        ctx.uow,
        ctx.agent_id,
        args.booking_id,
        args.reason_code,
        args.reason,
        policy=ctx.runtime.billing.prices.booking,
    )
    return CancelResult(booking=booking_out(cancelled.booking), refunded=refunded(cancelled))


class RescheduleBookingIn(Input):
    booking_id: BookingId
    new_slot_id: SlotId


@REGISTRY.tool(
    "reschedule-booking",
    title="Move a booking to another slot",
    toolset="booking",
    input_model=RescheduleBookingIn,
    output_model=BookingResult,
    read_only=False,
    destructive=True,
    idempotent=False,
    open_world=True,
)
async def reschedule_booking(ctx: ToolContext, args: RescheduleBookingIn) -> BookingResult:
    """Move your booking to another free slot of its schedule, free of charge, escrow and
    all; the old one is canceled ("rescheduled"). The full refund window counts from the
    earlier slot."""
    new = await bookings.reschedule_booking(
        ctx.uow, ctx.agent_id, args.booking_id, args.new_slot_id
    )
    return BookingResult(booking=booking_out(new))


class BookingIdIn(Input):
    booking_id: BookingId


class BookingDetail(Paid, BookingDetailOut):
    pass


@REGISTRY.tool(
    "get-booking",
    title="One booking",
    toolset="booking",
    input_model=BookingIdIn,
    output_model=BookingDetail,
    read_only=True,
    idempotent=True,
)
async def get_booking(ctx: ToolContext, args: BookingIdIn) -> BookingDetail:
    """A booking you made or received: history, location, refund if cancelled now and until
    when it is full."""
    view = await bookings.booking_view(
        ctx.uow,
        args.booking_id,
        agent_id=ctx.agent_id,
        policy=ctx.runtime.billing.prices.booking,
    )
    return BookingDetail.model_validate(booking_detail(view), from_attributes=True)
