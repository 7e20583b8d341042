"""The owner's review of a booking their agent made, from the agent's bookings page.

The form posts what the ``leave-review`` tool takes (a rating 1 to 5 and a text) and calls the
same service, so the review, the provider's new rating and the ``review.created`` event land
together; a refusal (not finished yet, reviewed already) shows its message on the page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from agent_server.booking.reviews import REVIEWABLE, reviewed_bookings
from agent_server.dashboard.forms import text
from agent_server.dashboard.people import changeable_agent
from agent_server.dashboard.web import (
    DashboardRoute,
    posted_form,
    redirect,
    runtime_of,
    signed_in,
)
from agent_server.kernel.errors import ValidationFailed
from agent_server.kernel.inputs import parse_int
from agent_server.kernel.store import UnitOfWork
from agent_server.services import reviews

router = APIRouter(route_class=DashboardRoute, include_in_schema=False)

AgentId = Annotated[int, Path(ge=1, le=2**63 - 1)]
REVIEWABLE_STATUSES = tuple(s.value for s in REVIEWABLE)
"""Statuses whose bookings the bookings page offers to review."""


async def reviewed(uow: UnitOfWork, booking_ids: list[int]) -> dict[int, int]:
    """For the bookings page: which of its bookings have a review, and its rating."""
    return await reviewed_bookings(uow, booking_ids)


@router.post("/agents/{agent_id}/bookings/{booking_id}/review")
async def review_booking(request: Request, agent_id: AgentId, booking_id: AgentId) -> Response:
    """The owner reviews a finished session their agent booked, as ``leave-review`` does."""
    viewer = await signed_in(request)
    form = await posted_form(request, viewer)
    try:
        rating = parse_int(text(form, "rating"), low=1, high=5)
    except ValueError:
        raise ValidationFailed.field("rating", "choose 1 (worst) to 5 (best) stars") from None
    runtime = runtime_of(request)
    async with runtime.db.uow() as uow:
        await changeable_agent(uow, viewer.person, agent_id)
        await reviews.leave_review(uow, agent_id, booking_id, rating, text(form, "text"))
        await uow.commit()
    return redirect(f"/agents/{agent_id}/bookings", "reviewed")
