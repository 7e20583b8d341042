"""Tools for the agent that publishes schedules, answering the bookings made on them; and
completing a session, which its booker may do too."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from agent_server.booking import service as svc
from agent_server.booking.models import BookingStatus, CancelledBy
from agent_server.booking.schedules import ScheduleOwner
from agent_server.kernel.inputs import MultilineText, Text
from agent_server.mcp.pipeline import ToolContext
from agent_server.mcp.tools.bookings import BookingId, BookingResult, CancelResult
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import Input
from agent_server.services import bookings
from agent_server.services.booking_out import booking_out, refunded


class AcceptBookingIn(Input):
    booking_id: BookingId
    location: Annotated[
        Text | None, Field(max_length=500, description="Address or video link.")
    ] = None


@REGISTRY.tool(
    "accept-booking",
    title="Accept a booking",
    toolset="booking",
    input_model=AcceptBookingIn,
    output_model=BookingResult,
    read_only=False,
    idempotent=True,
)
async def accept_booking(ctx: ToolContext, args: AcceptBookingIn) -> BookingResult:
    """Accept a pending booking of your schedule; on an accepted one, change its location."""
    owner = ScheduleOwner.agent(ctx.agent_id)
    booking = await svc.get_booking(ctx.uow, args.booking_id, agent_id=ctx.agent_id)
    if booking.status == BookingStatus.ACCEPTED.value and args.location is not None:
        booking = await svc.set_location(ctx.uow, owner, args.booking_id, args.location)
    else:
        booking = await bookings.accept_booking(ctx.uow, owner, args.booking_id, args.location)
    return BookingResult(booking=booking_out(booking))


class RejectBookingIn(Input):
    booking_id: BookingId
    reason: Annotated[MultilineText, Field(max_length=2000)] = ""


@REGISTRY.tool(
    "reject-booking",
    title="Reject a booking",
    toolset="booking",
    input_model=RejectBookingIn,
    output_model=CancelResult,
    read_only=False,
    destructive=True,
)
async def reject_booking(ctx: ToolContext, args: RejectBookingIn) -> CancelResult:
    """Reject a pending booking of your schedule; its booker gets the slot price back."""
    rejected = await bookings.reject_booking(
        ctx.uow,
        ScheduleOwner.agent(ctx.agent_id),
        args.booking_id,
        args.reason,
        policy=ctx.runtime.billing.prices.booking,
    )
    return CancelResult(booking=booking_out(rejected.booking), refunded=refunded(rejected))


class CompleteBookingIn(Input):
    booking_id: BookingId
    note: Annotated[MultilineText, Field(max_length=5000, description="After the session.")] = ""


@REGISTRY.tool(
    "complete-booking",
    title="Complete a booking",
    toolset="booking",
    input_model=CompleteBookingIn,
    output_model=BookingResult,
    read_only=False,
)
async def complete_booking(ctx: ToolContext, args: CompleteBookingIn) -> BookingResult:
    """Mark an accepted booking done after its end (booker or provider), with a note kept in
    its history; or add a note to a completed one."""
    booking = await svc.get_booking(ctx.uow, args.booking_id, agent_id=ctx.agent_id)
    role = await svc.role_of(ctx.uow, booking, ctx.agent_id)
    by = CancelledBy.AGENT if role == svc.ROLE_BOOKER else CancelledBy.SPECIALIST
    if booking.status != BookingStatus.COMPLETED.value or not args.note.strip():
        done = await bookings.complete_booking(
            ctx.uow, args.booking_id, by, ctx.agent_id, policy=ctx.runtime.billing.prices.booking
        )
        booking = done.booking
    if args.note.strip():
        booking = await svc.add_note(ctx.uow, args.booking_id, by, ctx.agent_id, args.note)
    return BookingResult(booking=booking_out(booking))
