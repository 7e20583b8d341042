"""Reviews: the booker's review of a finished booking and the provider's rating it changes.

``leave_review`` is the one use case every surface calls (the ``leave-review`` tool, the REST
route, the owner's dashboard form): it writes the review, recomputes the reviewed provider's
rating and review count from its review rows under the provider's row lock, and emits
``review.created``, all in the caller's unit of work (flushed, never committed).
"""

from __future__ import annotations

from agent_server.booking import reviews
from agent_server.booking.models import Review
from agent_server.kernel.store import UnitOfWork


async def leave_review(
    uow: UnitOfWork, agent_id: int, booking_id: int, rating: int, text: str = ""
) -> Review:
    """The agent's review of its completed or dispute-settled booking (once per booking)."""
    return await reviews.leave_review(uow, agent_id, booking_id, rating, text)
