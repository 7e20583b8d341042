"""Reviews over REST: the booker's one review of a finished booking.

    POST /api/agent/bookings/{id}/review   {"rating": 1..5, "text"?}   booker, once

The work is ``agent_server.services.reviews.leave_review``, which the ``leave-review`` tool and
the owner's dashboard share; failures carry SPEC's error body (409 BOOKING_CONFLICT with
``reason`` ``invalid_status`` before completion, ``already_reviewed`` the second time).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from agent_server.accounts.models import AgentStatus
from agent_server.api.auth import CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.booking.reviews import MAX_REVIEW_TEXT
from agent_server.kernel.errors import AccountInactive
from agent_server.kernel.inputs import MultilineText
from agent_server.services import reviews

router = APIRouter(tags=["bookings"], responses=error_responses(401, 403, 404, 409, 422))

BookingId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The booking's id.")]


class ReviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: int = Field(ge=1, le=5, description="1 (worst) to 5 (best).")
    text: Annotated[MultilineText, Field(max_length=MAX_REVIEW_TEXT)] = ""


class ReviewResponse(BaseModel):
    id: int
    booking_id: int
    rating: int
    text: str
    created_at: datetime


@router.post(
    "/agent/bookings/{booking_id}/review",
    response_model=ReviewResponse,
    status_code=201,
    summary="Review a finished booking",
)
async def leave_review(
    booking_id: BookingId, body: ReviewBody, caller: CurrentAgent, runtime: RuntimeDep
) -> ReviewResponse:
    """Rate a completed (or dispute-settled) booking you made, once. The provider's rating
    becomes the mean of its reviews."""
    if caller.status in (AgentStatus.SUSPENDED, AgentStatus.BANNED):
        raise AccountInactive(
            f"This agent is {caller.status.value} and cannot review bookings.",
            {"status": caller.status.value},
        )
    async with runtime.db.uow() as uow:
        review = await reviews.leave_review(
            uow, caller.agent_id, booking_id, body.rating, body.text
        )
        await uow.commit()
        return ReviewResponse(
            id=review.id,
            booking_id=review.booking_id,
            rating=review.rating,
            text=review.text,
            created_at=review.created_at,
        )
