"""Reviews: the booker's one review of a finished booking, and the ratings they make.

``leave_review`` writes a review of a ``completed`` or ``dispute_done`` booking (its booker,
once; a rating 1 to 5 and a text) and recomputes its subject's ``rating`` and
``review_count`` in the same transaction. The subject is the schedule's provider: the
specialist, or the agent that owns the schedule (``agents.rating`` / ``review_count``).

Race safety, settled by the database:

* one review per booking: the booking is read under its row lock, and the unique index on
  ``reviews.booking_id`` refuses a second row (``already_reviewed``);
* two reviews of one subject at once both count: the subject's row is locked
  (``SELECT ... FOR NO KEY UPDATE``) before the review is inserted, so the second transaction
  waits for the first to commit, and its aggregate (a later statement, a new snapshot under
  READ COMMITTED) includes the first review. The lock is taken before the insert, whose
  foreign key takes a key-share lock on the same row: the other order would deadlock two
  reviewers. It does not wait for bookings being made (they share the key too). SQLite
  serialises writers anyway.

A specialist's rating change updates its row, which the catalogue version triggers count:
cached search pages and profiles are dropped.

``list_reviews`` pages a subject's reviews newest first with an opaque cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Update, func, select, update
from sqlalchemy.exc import IntegrityError

from agent_server.accounts.models import Agent
from agent_server.booking.events import emit_booking
from agent_server.booking.models import Booking, BookingStatus, Review, Schedule, Specialist
from agent_server.events.outbox import REVIEW_CREATED, iso
from agent_server.kernel.errors import BookingConflict, Forbidden, NotFound, ValidationFailed
from agent_server.kernel.inputs import check_id, check_text, require
from agent_server.kernel.store import UnitOfWork

REVIEWABLE = (BookingStatus.COMPLETED, BookingStatus.DISPUTE_DONE)
"""The statuses a booking may be reviewed in: the session happened."""
REASON_ALREADY_REVIEWED = "already_reviewed"
REASON_NOT_FINISHED = "invalid_status"
MAX_REVIEW_TEXT = 2000
REVIEWS_SHOWN = 3
"""Reviews a profile shows at once; its cursor pages the rest."""
MAX_REVIEWS_PAGE = 20


@dataclass(frozen=True)
class Subject:
    """Whom a review rates: a specialist, or an agent that publishes schedules."""

    specialist_id: int | None = None
    agent_id: int | None = None


@dataclass(frozen=True)
class ReviewPage:
    """Reviews newest first; pass ``next_cursor`` for older ones (None at the end)."""

    items: list[Review]
    next_cursor: str | None


def review_data(review: Review) -> dict[str, object]:
    """A review as tools, routes and events show it."""
    return {
        "id": review.id,
        "booking_id": review.booking_id,
        "rating": review.rating,
        "text": review.text,
        "created_at": iso(review.created_at),
    }


def check_rating(value: object) -> int:
    """A whole rating from 1 to 5, or ``ValidationFailed`` on ``rating``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ValidationFailed.field("rating", "give a whole number from 1 (worst) to 5 (best)")
    return value


async def _lock_booking(uow: UnitOfWork, booking_id: int) -> Booking:
    query = (
        select(Booking)
        .where(Booking.id == booking_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    booking = (await uow.session.execute(query)).scalar_one_or_none()
    if booking is None:
        raise NotFound(f"booking {booking_id} not found", {"booking_id": booking_id})
    return booking


async def subject_of(uow: UnitOfWork, booking: Booking) -> Subject:
    """The provider a review of ``booking`` rates."""
    if booking.specialist_id is not None:
        return Subject(specialist_id=booking.specialist_id)
    schedule = await uow.session.get(Schedule, booking.schedule_id)
    assert schedule is not None  # foreign key
    if schedule.specialist_id is not None:
        return Subject(specialist_id=schedule.specialist_id)
    return Subject(agent_id=schedule.agent_id)


def _rating_update(table: type[Specialist] | type[Agent], ids: Sequence[int]) -> Update:
    """Set each subject's review count and rating (mean of its reviews to two decimals, 0
    without any) from its review rows: one statement, the same for one subject or many."""
    column = Review.specialist_id if table is Specialist else Review.provider_agent_id
    mine = column == table.id
    count = select(func.count(Review.id)).where(mine).scalar_subquery()
    mean = select(func.round(func.avg(Review.rating), 2)).where(mine).scalar_subquery()
    return (
        update(table)
        .where(table.id.in_(list(ids)))
        .values(review_count=count, rating=func.coalesce(mean, 0))
        .execution_options(synchronize_session=False)
    )


async def recompute_ratings(uow: UnitOfWork, specialist_ids: Sequence[int]) -> None:
    """Set these specialists' ratings and review counts from their review rows (demo data
    writes reviews in bulk, then calls this once per chunk)."""
    if specialist_ids:
        await uow.session.execute(_rating_update(Specialist, specialist_ids))


def _subject_table(subject: Subject) -> tuple[type[Specialist] | type[Agent], int]:
    if subject.specialist_id is not None:
        return Specialist, subject.specialist_id
    assert subject.agent_id is not None
    return Agent, subject.agent_id


async def lock_subject(uow: UnitOfWork, subject: Subject) -> None:
    """Hold the subject's row lock until the transaction ends (before writing its review)."""
    table, subject_id = _subject_table(subject)
    await uow.session.execute(
        select(table.id).where(table.id == subject_id).with_for_update(key_share=True)
    )


async def recompute_rating(uow: UnitOfWork, subject: Subject) -> tuple[float, int]:
    """Set the subject's rating and review count from its review rows; the caller holds the
    subject's lock (``lock_subject``, see the module docstring). Returns (rating, count)."""
    table, subject_id = _subject_table(subject)
    await uow.session.execute(_rating_update(table, [subject_id]))
    row = (
        await uow.session.execute(
            select(table.rating, table.review_count).where(table.id == subject_id)
        )
    ).one()
    return float(row[0]), int(row[1])


async def leave_review(
    uow: UnitOfWork, agent_id: int, booking_id: int, rating: int, text: str = ""
) -> Review:
    """The booker's review of its completed (or dispute-settled) booking; flushes, never
    commits. Emits ``review.created`` and recomputes the subject's rating in the same
    transaction.

    Errors: unknown booking ``NotFound``; another agent's booking ``Forbidden``; a booking
    not yet completed ``BookingConflict`` (``invalid_status``); a second review
    ``BookingConflict`` (``already_reviewed``); a bad rating or text ``ValidationFailed``.
    """
    booking_id = check_id(booking_id)
    rating = check_rating(rating)
    if not isinstance(text, str) or len(text) > MAX_REVIEW_TEXT:
        raise ValidationFailed.field("text", f"give a text of at most {MAX_REVIEW_TEXT} characters")
    text = require("text", lambda v: check_text(v, multiline=True), text)
    booking = await _lock_booking(uow, booking_id)
    if booking.booker_agent_id != agent_id:
        raise Forbidden(
            f"booking {booking_id} was booked by someone else; only its booker reviews it",
            {"booking_id": booking_id},
        )
    if booking.status not in {s.value for s in REVIEWABLE}:
        raise BookingConflict(
            f"booking {booking_id} is {booking.status}; only completed bookings can be "
            "reviewed, after the session",
            {"reason": REASON_NOT_FINISHED, "status": booking.status, "next_available_slot": None},
        )
    subject = await subject_of(uow, booking)
    await lock_subject(uow, subject)
    review = Review(
        booking_id=booking.id,
        reviewer_agent_id=agent_id,
        specialist_id=subject.specialist_id,
        provider_agent_id=subject.agent_id,
        rating=rating,
        text=text,
        created_at=uow.clock.now(),
    )
    try:
        async with uow.session.begin_nested():
            uow.session.add(review)
    except IntegrityError:
        raise BookingConflict(
            f"booking {booking_id} already has your review; a booking is reviewed once",
            {
                "reason": REASON_ALREADY_REVIEWED,
                "status": booking.status,
                "next_available_slot": None,
            },
        ) from None
    new_rating, count = await recompute_rating(uow, subject)
    await emit_booking(
        uow,
        REVIEW_CREATED,
        booking,
        extra={
            "review": {
                **review_data(review),
                "subject_rating": new_rating,
                "subject_review_count": count,
            }
        },
    )
    return review


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"r": last_id}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, field: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return check_id(json.loads(base64.urlsafe_b64decode(padded.encode()))["r"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise ValidationFailed.field(
            field, "pass the next_reviews_cursor of the previous answer unchanged"
        ) from None


async def list_reviews(
    uow: UnitOfWork,
    subject: Subject,
    *,
    cursor: str | None = None,
    limit: int = REVIEWS_SHOWN,
    cursor_field: str = "reviews_cursor",
) -> ReviewPage:
    """A subject's reviews, newest first, ``limit`` (1-20) a page."""
    if not 1 <= limit <= MAX_REVIEWS_PAGE:
        raise ValidationFailed.field("limit", f"give a page size from 1 to {MAX_REVIEWS_PAGE}")
    if subject.specialist_id is not None:
        query = select(Review).where(Review.specialist_id == subject.specialist_id)
    else:
        query = select(Review).where(Review.provider_agent_id == subject.agent_id)
    if cursor is not None:
        query = query.where(Review.id < _decode_cursor(cursor, cursor_field))
    rows = await uow.session.execute(query.order_by(Review.id.desc()).limit(limit + 1))
    items = list(rows.scalars())
    more = len(items) > limit
    items = items[:limit]
    return ReviewPage(items, _encode_cursor(items[-1].id) if more and items else None)


async def reviewed_bookings(uow: UnitOfWork, booking_ids: Sequence[int]) -> dict[int, int]:
    """Of these bookings, those reviewed: booking id to its review's rating."""
    if not booking_ids:
        return {}
    rows = await uow.session.execute(
        select(Review.booking_id, Review.rating).where(Review.booking_id.in_(list(booking_ids)))
    )
    return {int(b): int(r) for b, r in rows}


async def review_of(uow: UnitOfWork, booking_id: int) -> Review | None:
    """The review of a booking, if it has one (no access check)."""
    rows = await uow.session.execute(select(Review).where(Review.booking_id == booking_id))
    return rows.scalar_one_or_none()
