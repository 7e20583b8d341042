"""What billing needs to know about a booking, in billing's own terms.

Billing never reads the booking tables: the service layer (``agent_server.services``) hands it
these facts, built from the booking and its schedule in the same unit of work.

* ``BookedSlot``: a booking's id and its booker; enough to hold its price in escrow or move the
  escrow to a rescheduled booking. The booking row itself satisfies it.
* ``BookingTerms``: the facts the refund policy and the payout need: who is paid (``Payee``),
  the slot start the price was paid for, and who ended the booking early (``EndedBy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class BookedSlot(Protocol):
    """A booking as escrow sees it: its id and the agent that pays for it."""

    @property
    def id(self) -> int: ...

    @property
    def booker_agent_id(self) -> int | None: ...


class EndedBy(StrEnum):
    """Who ended a booking before it took place, as the refund policy tells them apart."""

    BOOKER = "booker"  # the booking agent cancelled: refunded by how early it did
    PROVIDER = "provider"  # the specialist or the schedule's owner cancelled or rejected
    SYSTEM = "system"  # the platform cancelled


@dataclass(frozen=True)
class Payee:
    """Who is paid for a booking: exactly one of a specialist or an agent."""

    specialist_id: int | None = None
    agent_id: int | None = None

    def __post_init__(self) -> None:
        if (self.specialist_id is None) == (self.agent_id is None):
            raise ValueError("a payee is exactly one of specialist_id or agent_id")


@dataclass(frozen=True)
class BookingTerms:
    """One booking's money facts: enough to escrow, refund or pay it out."""

    id: int
    booker_agent_id: int | None
    payee: Payee
    slot_start: datetime
    # The slot start the price was paid for: a reschedule keeps the earlier one.
    refund_anchor_at: datetime | None = None
    ended_by: EndedBy | None = None
    ended_at: datetime | None = None
