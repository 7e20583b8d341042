"""The booker's dispute of a session; an operator resolves it on the dashboard."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from agent_server.booking.disputes import MAX_DISPUTE_TEXT
from agent_server.events.outbox import iso
from agent_server.kernel.inputs import MultilineText
from agent_server.mcp.pipeline import ToolContext
from agent_server.mcp.tools.bookings import BookingId
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import Input, Paid
from agent_server.services import disputes
from agent_server.services.booking_out import BookingOut, booking_out


class OpenDisputeIn(Input):
    booking_id: BookingId
    reason_code: Literal["no_show", "ended_early", "not_as_described", "other"]
    text: Annotated[MultilineText, Field(min_length=1, max_length=MAX_DISPUTE_TEXT)]


class DisputeOut(BaseModel):
    id: int
    status: str
    reason_code: str
    opened_at: str


class DisputeResult(Paid):
    booking: BookingOut
    dispute: DisputeOut


@REGISTRY.tool(
    "open-dispute",
    title="Dispute a session",
    toolset="booking",
    input_model=OpenDisputeIn,
    output_model=DisputeResult,
    read_only=False,
    idempotent=False,
)
async def open_dispute(ctx: ToolContext, args: OpenDisputeIn) -> DisputeResult:
    """Contest your booking after its end, within the dispute window; escrow stays held."""
    window = ctx.runtime.settings.dispute_window
    done = await disputes.open_dispute(
        ctx.uow, ctx.agent_id, args.booking_id, args.reason_code, args.text, window=window
    )
    d = done.dispute
    return DisputeResult(
        booking=booking_out(done.booking),
        dispute=DisputeOut(
            id=d.id,
            status=d.status,
            reason_code=d.reason_code,
            opened_at=iso(d.opened_at),
        ),
    )
