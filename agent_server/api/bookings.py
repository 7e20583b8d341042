"""An agent's bookings over REST, as booker and as the owner of the schedules booked.

    GET  /api/agent/bookings                      list (role, status, cursor, limit)
    GET  /api/agent/bookings/{id}                 one booking, its history, the refund now
    POST /api/agent/bookings/{id}/accept          {"location"?}  provider
    POST /api/agent/bookings/{id}/location        {"location"}   provider
    POST /api/agent/bookings/{id}/reject          {"reason"?}    provider, full refund
    POST /api/agent/bookings/{id}/cancel          {"reason_code"?, "reason"?}  either role
    POST /api/agent/bookings/{id}/complete        either role, after the end
    POST /api/agent/bookings/{id}/note            {"note"}       either role, after the end
    POST /api/agent/bookings/{id}/dismiss         booker, once nothing is left to do

The work is done by ``agent_server.services.bookings`` (money steps) and
``agent_server.booking.service``, which the MCP tools share; failures carry SPEC's error body.
A suspended or banned agent is refused, as the MCP gate refuses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from agent_server.accounts.models import AgentStatus
from agent_server.api.auth import CurrentAgent, RuntimeDep
from agent_server.api.errors import error_responses
from agent_server.booking import service as booking_svc
from agent_server.booking.models import Booking, BookingStatus, CancelledBy
from agent_server.booking.schedules import ScheduleOwner
from agent_server.gate import Caller
from agent_server.kernel.errors import AccountInactive
from agent_server.kernel.inputs import MultilineText, Text
from agent_server.kernel.money import Money
from agent_server.kernel.store import UnitOfWork
from agent_server.runtime import Runtime
from agent_server.services import bookings as steps
from agent_server.services.booking_out import (
    BookingDetailOut,
    BookingOut,
    booking_detail,
    booking_out,
    refunded,
)
from agent_server.services.bookings import Settled

router = APIRouter(tags=["bookings"], responses=error_responses(401, 403, 404, 422))

MAX_ID = 2**63 - 1
BookingId = Annotated[int, Path(ge=1, le=MAX_ID, description="The booking's id.")]
CHANGES = error_responses(409)
Done = TypeVar("Done")


async def allowed_agent(caller: CurrentAgent) -> Caller:
    """The caller, unless suspended or banned (then ACCOUNT_INACTIVE, as the MCP gate says)."""
    if caller.status in (AgentStatus.SUSPENDED, AgentStatus.BANNED):
        raise AccountInactive(
            f"This agent is {caller.status.value} and cannot change bookings.",
            {"status": caller.status.value},
        )
    return caller


Agent = Annotated[Caller, Depends(allowed_agent)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BookingListResponse(BaseModel):
    bookings: list[BookingOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class SettledResponse(BaseModel):
    booking: BookingOut
    refunded: Money | None = Field(description="Returned to the booker; null when nothing.")


def settled_out(settled: Settled) -> SettledResponse:
    return SettledResponse(booking=booking_out(settled.booking), refunded=refunded(settled))


async def _change(runtime: Runtime, step: Callable[[UnitOfWork], Awaitable[Done]]) -> Done:
    """One change of a booking in its own unit of work, committed: what every POST below
    does around its service call."""
    async with runtime.db.uow() as uow:
        done = await step(uow)
        await uow.commit()
    return done


class AcceptBody(Strict):
    location: Annotated[Text | None, Field(max_length=500)] = Field(
        default=None, description="Address or video link of the session."
    )


class LocationBody(Strict):
    location: Annotated[Text, Field(max_length=500)] = Field(
        description="Address or video link; empty clears it."
    )


class RejectBody(Strict):
    reason: Annotated[MultilineText, Field(max_length=2000)] = ""


class CancelBody(Strict):
    reason_code: Literal["not_feeling_well", "no_time", "other"] = "other"
    reason: Annotated[MultilineText, Field(max_length=2000)] = ""


class NoteBody(Strict):
    note: Annotated[MultilineText, Field(min_length=1, max_length=5000)]


@router.get("/agent/bookings", response_model=BookingListResponse, summary="List bookings")
async def list_bookings(
    caller: Agent,
    runtime: RuntimeDep,
    role: Annotated[Literal["booker", "provider"] | None, Query()] = None,
    status: Annotated[BookingStatus | None, Query()] = None,
    cursor: Annotated[Text | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    include_dismissed: bool = False,
) -> BookingListResponse:
    """Bookings you made (`role=booker`), received on your schedules (`role=provider`), or
    both, newest first. Bookings you dismissed as booker are left out unless asked for."""
    async with runtime.db.uow() as uow:
        page = await booking_svc.list_bookings(
            uow,
            agent_id=caller.agent_id,
            role=role,
            status=status.value if status else None,
            cursor=cursor,
            limit=limit,
            include_dismissed=include_dismissed,
        )
        return BookingListResponse(
            bookings=[booking_out(b) for b in page.items], next_cursor=page.next_cursor
        )


@router.get(
    "/agent/bookings/{booking_id}", response_model=BookingDetailOut, summary="Get a booking"
)
async def get_booking(
    booking_id: BookingId, caller: Agent, runtime: RuntimeDep
) -> BookingDetailOut:
    """One booking you made or received, its history, and what cancelling it now refunds."""
    async with runtime.db.uow() as uow:
        view = await steps.booking_view(
            uow, booking_id, agent_id=caller.agent_id, policy=runtime.billing.prices.booking
        )
        return booking_detail(view)


@router.post(
    "/agent/bookings/{booking_id}/accept",
    response_model=BookingOut,
    summary="Accept a booking (provider)",
    responses=CHANGES,
)
async def accept(
    booking_id: BookingId, caller: Agent, runtime: RuntimeDep, body: AcceptBody | None = None
) -> BookingOut:
    """Accept a pending booking of your schedule, optionally with where it happens."""
    location = body.location if body else None
    owner = ScheduleOwner.agent(caller.agent_id)
    booking = await _change(
        runtime, lambda uow: steps.accept_booking(uow, owner, booking_id, location)
    )
    return booking_out(booking)


@router.post(
    "/agent/bookings/{booking_id}/location",
    response_model=BookingOut,
    summary="Set where a session happens (provider)",
    responses=CHANGES,
)
async def set_location(
    booking_id: BookingId, body: LocationBody, caller: Agent, runtime: RuntimeDep
) -> BookingOut:
    """Set or change the address or video link of a pending or accepted booking."""
    owner = ScheduleOwner.agent(caller.agent_id)
    booking = await _change(
        runtime, lambda uow: booking_svc.set_location(uow, owner, booking_id, body.location)
    )
    return booking_out(booking)


@router.post(
    "/agent/bookings/{booking_id}/reject",
    response_model=SettledResponse,
    summary="Reject a booking (provider, full refund)",
    responses=CHANGES,
)
async def reject(
    booking_id: BookingId, caller: Agent, runtime: RuntimeDep, body: RejectBody | None = None
) -> SettledResponse:
    """Reject a pending booking of your schedule; its booker gets the slot price back."""
    owner = ScheduleOwner.agent(caller.agent_id)
    reason = body.reason if body else ""
    policy = runtime.billing.prices.booking
    rejected = await _change(
        runtime,
        lambda uow: steps.reject_booking(uow, owner, booking_id, reason, policy=policy),
    )
    return settled_out(rejected)


@router.post(
    "/agent/bookings/{booking_id}/cancel",
    response_model=SettledResponse,
    summary="Cancel a booking (booker by policy, provider in full)",
    responses=CHANGES,
)
async def cancel(
    booking_id: BookingId, caller: Agent, runtime: RuntimeDep, body: CancelBody | None = None
) -> SettledResponse:
    """Cancel a pending or accepted booking. As booker, the slot price comes back by the
    refund policy (see `refund_now`); as the schedule's owner, in full."""
    given = body or CancelBody()
    policy = runtime.billing.prices.booking
    cancelled = await _change(
        runtime,
        lambda uow: steps.cancel_as(
            uow, caller.agent_id, booking_id, given.reason_code, given.reason, policy=policy
        ),
    )
    return settled_out(cancelled)


async def _role_actor(uow: UnitOfWork, booking_id: int, agent_id: int) -> CancelledBy:
    booking = await booking_svc.get_booking(uow, booking_id, agent_id=agent_id)
    role = await booking_svc.role_of(uow, booking, agent_id)
    return CancelledBy.AGENT if role == booking_svc.ROLE_BOOKER else CancelledBy.SPECIALIST


@router.post(
    "/agent/bookings/{booking_id}/complete",
    response_model=BookingOut,
    summary="Complete a booking after its end",
    responses=CHANGES,
)
async def complete(booking_id: BookingId, caller: Agent, runtime: RuntimeDep) -> BookingOut:
    """Mark an accepted booking done once its slot has ended (booker or provider)."""

    async def step(uow: UnitOfWork) -> Settled:
        by = await _role_actor(uow, booking_id, caller.agent_id)
        return await steps.complete_booking(uow, booking_id, by, caller.agent_id)

    done = await _change(runtime, step)
    return booking_out(done.booking)


@router.post(
    "/agent/bookings/{booking_id}/note",
    response_model=BookingOut,
    summary="Add a note after the session",
    responses=CHANGES,
)
async def note(
    booking_id: BookingId, body: NoteBody, caller: Agent, runtime: RuntimeDep
) -> BookingOut:
    """Add a note to an accepted or completed booking after its end; kept in its history."""

    async def step(uow: UnitOfWork) -> Booking:
        by = await _role_actor(uow, booking_id, caller.agent_id)
        return await booking_svc.add_note(uow, booking_id, by, caller.agent_id, body.note)

    return booking_out(await _change(runtime, step))


@router.post(
    "/agent/bookings/{booking_id}/dismiss",
    response_model=BookingOut,
    summary="Dismiss an ended booking from your list (booker)",
    responses=CHANGES,
)
async def dismiss(booking_id: BookingId, caller: Agent, runtime: RuntimeDep) -> BookingOut:
    """Hide a rejected, canceled or finished booking you made from your default list."""
    booking = await _change(
        runtime, lambda uow: booking_svc.dismiss_booking(uow, caller.agent_id, booking_id)
    )
    return booking_out(booking)
