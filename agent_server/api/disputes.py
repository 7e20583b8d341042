"""The booker's dispute of a session over REST, as the MCP tool ``open-dispute`` does it.

    POST /api/agent/bookings/{id}/dispute   {"reason_code", "text"}   booker, after the end,
                                                                      within the window

The escrow stays held until an operator resolves the dispute on the dashboard
(``agent_server.services.disputes``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from agent_server.api.auth import RuntimeDep
from agent_server.api.bookings import Agent, BookingId, Strict
from agent_server.api.errors import error_responses
from agent_server.booking.disputes import MAX_DISPUTE_TEXT
from agent_server.kernel.inputs import MultilineText
from agent_server.services import disputes
from agent_server.services.booking_out import BookingOut, booking_out

router = APIRouter(tags=["bookings"], responses=error_responses(401, 403, 404, 422))


class DisputeBody(Strict):
    reason_code: Literal["no_show", "ended_early", "not_as_described", "other"]
    text: Annotated[MultilineText, Field(min_length=1, max_length=MAX_DISPUTE_TEXT)]


class DisputeOut(BaseModel):
    id: int
    status: str = Field(description="open, then resolved by an operator")
    reason_code: str
    text: str
    opened_at: datetime


class DisputeResponse(BaseModel):
    booking: BookingOut
    dispute: DisputeOut


@router.post(
    "/agent/bookings/{booking_id}/dispute",
    response_model=DisputeResponse,
    summary="Dispute a session (booker)",
    responses=error_responses(409),
)
async def open_dispute(
    booking_id: BookingId, body: DisputeBody, caller: Agent, runtime: RuntimeDep
) -> DisputeResponse:
    """Contest a booking you made, after its end and within the dispute window
    (`DISPUTE_WINDOW` after the end, 72 hours unless configured); the escrow stays held and
    an operator resolves the dispute."""
    async with runtime.db.uow() as uow:
        done = await disputes.open_dispute(
            uow,
            caller.agent_id,
            booking_id,
            body.reason_code,
            body.text,
            window=runtime.settings.dispute_window,
        )
        await uow.commit()
    d = done.dispute
    return DisputeResponse(
        booking=booking_out(done.booking),
        dispute=DisputeOut(
            id=d.id, status=d.status, reason_code=d.reason_code, text=d.text, opened_at=d.opened_at
        ),
    )
