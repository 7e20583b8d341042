"""One booking as every surface shows it: the MCP tools, the REST routes and their clients.

``BookingOut`` is the one output model of a booking and ``booking_out`` builds it from the
row; ``refunded`` is what a cancellation or rejection gave back. The transports may not import
each other (``lint-imports``), so the shape lives here, below both, and a field added to it
reaches every surface at once.

A canceled booking says who canceled it in ``canceled_by`` (agent, specialist or system),
spelled as its status ``canceled`` is; the database column keeps its older name.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import Booking
from agent_server.kernel.money import Money
from agent_server.services.bookings import BookingView, Settled


class BookingOut(BaseModel):
    id: int
    schedule_id: int
    specialist_id: int | None
    slot_id: str = Field(examples=["42-20260504T0900Z"])
    start: datetime
    end: datetime
    seat: int
    status: str = Field(
        description="pending, accepted, rejected, canceled, completed, in_dispute or dispute_done"
    )
    price: Money
    topic: str
    notes: str
    location: str | None = Field(description="Address or video link, set by the provider.")
    canceled_by: str | None = Field(description="agent, specialist or system; null if not.")
    cancel_reason_code: str | None
    cancel_reason: str | None
    rescheduled_from_id: int | None
    rescheduled_to_id: int | None
    dismissed: bool = Field(description="The booker hid it from its default list.")
    created_at: datetime


def booking_out(b: Booking) -> BookingOut:
    return BookingOut(
        id=b.id,
        schedule_id=b.schedule_id,
        specialist_id=b.specialist_id,
        slot_id=make_slot_id(b.schedule_id, b.slot_start),
        start=b.slot_start,
        end=b.slot_end,
        seat=b.seat,
        status=b.status,
        price=Money.of(b.price_amount, b.price_currency),
        topic=b.topic,
        notes=b.notes,
        location=b.location,
        canceled_by=b.cancelled_by,
        cancel_reason_code=b.cancel_reason_code,
        cancel_reason=b.cancel_reason,
        rescheduled_from_id=b.rescheduled_from_id,
        rescheduled_to_id=b.rescheduled_to_id,
        dismissed=b.dismissed_at is not None,
        created_at=b.created_at,
    )


def refunded(settled: Settled) -> Money | None:
    """What a cancellation or rejection returned to the booker; None when nothing was held."""
    s = settled.settlement
    return Money.of(s.refunded, s.currency) if s is not None else None


class ChangeOut(BaseModel):
    at: datetime
    actor: str = Field(description="agent, specialist or system")
    from_status: str | None
    to_status: str
    note: str


class BookingDetailOut(BaseModel):
    booking: BookingOut
    role: str = Field(description="booker or provider: how you stand to this booking.")
    history: list[ChangeOut]
    refund_now: Money | None = Field(
        description="What the booker gets back if you cancel now; null when nothing is held."
    )
    full_refund_until: datetime | None = Field(
        description="As booker: until when a cancellation refunds in full."
    )


def booking_detail(view: BookingView) -> BookingDetailOut:
    """One booking as ``get-booking`` and ``GET /api/agent/bookings/{id}`` show it."""
    quote = view.refund_now
    return BookingDetailOut(
        booking=booking_out(view.booking),
        role=view.role,
        history=[
            ChangeOut(
                at=c.at,
                actor=c.actor,
                from_status=c.from_status,
                to_status=c.to_status,
                note=c.note,
            )
            for c in view.history
        ],
        refund_now=Money.of(quote.refund, quote.currency) if quote else None,
        full_refund_until=view.full_refund_until,
    )
