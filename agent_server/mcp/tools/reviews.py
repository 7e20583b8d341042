"""The booker's review of a finished booking."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from agent_server.booking.reviews import MAX_REVIEW_TEXT, review_data
from agent_server.kernel.inputs import MultilineText
from agent_server.mcp.pipeline import ToolContext
from agent_server.mcp.tools.catalog import REGISTRY
from agent_server.mcp.tools.common import MAX_ID, Input, Paid
from agent_server.services import reviews


class LeaveReviewIn(Input):
    booking_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    rating: Annotated[int, Field(ge=1, le=5, description="1 (worst) to 5.")]
    text: Annotated[MultilineText, Field(max_length=MAX_REVIEW_TEXT)] = ""


class ReviewOut(BaseModel):
    id: int
    booking_id: int
    rating: int
    text: str
    created_at: str


class ReviewResult(Paid):
    review: ReviewOut


@REGISTRY.tool(
    "leave-review",
    title="Review a booking",
    toolset="booking",
    input_model=LeaveReviewIn,
    output_model=ReviewResult,
    read_only=False,
    idempotent=False,
)
async def leave_review(ctx: ToolContext, args: LeaveReviewIn) -> ReviewResult:
    """Rate your completed booking, once; the provider's rating is the mean of these."""
    review = await reviews.leave_review(
        ctx.uow, ctx.agent_id, args.booking_id, args.rating, args.text
    )
    return ReviewResult(review=ReviewOut.model_validate(review_data(review)))
