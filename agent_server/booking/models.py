"""The booking store: specialists, schedules, bookings and their history.

Money amounts are integers in the base unit of their currency (``USD`` in micro-dollars).
No double booking is enforced by the database: a partial unique index on
(schedule, slot start, seat) over the bookings that hold a seat.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from agent_server.booking.availability import ALL_BLOCKS
from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime


class BookingStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELED = "canceled"
    COMPLETED = "completed"
    IN_DISPUTE = "in_dispute"
    DISPUTE_DONE = "dispute_done"


# Bookings in these states occupy their seat.
SEAT_HOLDING = (
    BookingStatus.PENDING,
    BookingStatus.ACCEPTED,
    BookingStatus.COMPLETED,
    BookingStatus.IN_DISPUTE,
    BookingStatus.DISPUTE_DONE,
)
_SEAT_HOLDING_SQL = "status IN ('pending', 'accepted', 'completed', 'in_dispute', 'dispute_done')"


class CancelledBy(StrEnum):
    AGENT = "agent"
    SPECIALIST = "specialist"
    SYSTEM = "system"


_FILTERED = ("private", "deleted_at", "start_date", "end_date", "slot_minutes", "start_blocks")
"""Schedule columns a search's filters check, carried by the indexes it walks."""


class Specialist(Base):
    """A human expert; contact fields are revealed only by view-profile."""

    __tablename__ = "specialists"
    # The walk order of sort=rating (ties by review count, then id), and the specialist side
    # of the other walks, each with the columns their filters check (migration 0015).
    __table_args__ = (
        Index("ix_specialists_rating", "rating", "review_count", "id", "country", "city"),
        Index("ix_specialists_walk", "id", "rating", "review_count", "country", "city"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(String(255), default="")
    about: Mapped[str] = mapped_column(Text, default="")
    city: Mapped[str] = mapped_column(String(100), default="", index=True)
    country: Mapped[str] = mapped_column(String(2), default="")
    timezone: Mapped[str] = mapped_column(String(64))
    languages: Mapped[list[str]] = mapped_column(JSON, default=list)
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    education: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    hourly_rate: Mapped[int | None] = mapped_column(BigInteger)
    rate_currency: Mapped[str] = mapped_column(String(8), default="USD")
    rating: Mapped[float] = mapped_column(Float, default=0.0)
    review_count: Mapped[int] = mapped_column(Integer, default=0)
    email: Mapped[str] = mapped_column(String(255), unique=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    # Which booking mails the specialist receives.
    notify_new_booking: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    notify_cancelled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    notify_reminder: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Lower-cased name, title, about and skills, for free-text search.
    search_text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    schedules: Mapped[list[Schedule]] = relationship(back_populates="specialist")


class SpecialistSkill(Base):
    """One skill of a specialist, as an index answers it (``Specialist.skills`` as rows).

    Kept equal to ``Specialist.skills`` by database triggers (migration 0011), whatever code
    writes a specialist; search filters and facet counts read it, nothing writes it.
    """

    __tablename__ = "specialist_skills"
    __table_args__ = (Index("ix_specialist_skills_specialist", "specialist_id", "skill"),)

    skill: Mapped[str] = mapped_column(Text, primary_key=True)
    specialist_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("specialists.id", ondelete="CASCADE"), primary_key=True
    )


class SpecialistLanguage(Base):
    """One language of a specialist, as an index answers it (``Specialist.languages`` as
    rows), kept like ``SpecialistSkill``."""

    __tablename__ = "specialist_languages"
    __table_args__ = (Index("ix_specialist_languages_specialist", "specialist_id", "language"),)

    language: Mapped[str] = mapped_column(Text, primary_key=True)
    specialist_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("specialists.id", ondelete="CASCADE"), primary_key=True
    )


class Schedule(Base):
    """Weekly availability in an IANA time zone, cut into bookable slots.

    ``weekly_hours`` maps weekday names (``mon``..``sun``) to ``[["09:00", "12:00"], ...]``
    in the schedule's local time; ``overrides`` maps ISO dates to replacement ranges (an
    empty list closes the day); ``blackout_dates`` lists closed ISO dates.
    """

    __tablename__ = "schedules"
    __table_args__ = (
        CheckConstraint("(specialist_id IS NULL) <> (agent_id IS NULL)", name="exactly_one_owner"),
        CheckConstraint("slot_minutes >= 15", name="slot_minutes_min"),
        CheckConstraint("buffer_minutes >= 0", name="buffer_nonneg"),
        CheckConstraint("min_notice_minutes >= 0", name="notice_nonneg"),
        CheckConstraint("capacity >= 1", name="capacity_min"),
        CheckConstraint("price_amount >= 0", name="price_nonneg"),
        Index("ix_schedules_searchable", "private", "deleted_at", "price_usd_micros"),
        # Keyset orders of search (sort by price, by next available slot), and a specialist's
        # schedules for the rating walk, each with the columns the filters check.
        Index(
            "ix_schedules_price_order",
            "price_usd_micros",
            "specialist_id",
            "id",
            "next_free_at",
            *_FILTERED,
        ),
        Index(
            "ix_schedules_next_free",
            "next_free_at",
            "specialist_id",
            "id",
            "price_usd_micros",
            *_FILTERED,
        ),
        Index(
            "ix_schedules_owner_search",
            "specialist_id",
            "id",
            "next_free_at",
            "price_usd_micros",
            *_FILTERED,
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    specialist_id: Mapped[int | None] = mapped_column(
        ForeignKey("specialists.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    skills: Mapped[list[str]] = mapped_column(JSON, default=list)
    timezone: Mapped[str] = mapped_column(String(64))
    weekly_hours: Mapped[dict[str, list[list[str]]]] = mapped_column(JSON, default=dict)
    overrides: Mapped[dict[str, list[list[str]]]] = mapped_column(JSON, default=dict)
    blackout_dates: Mapped[list[str]] = mapped_column(JSON, default=list)
    slot_minutes: Mapped[int] = mapped_column(Integer, default=60)
    buffer_minutes: Mapped[int] = mapped_column(Integer, default=0)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=0)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    price_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    price_currency: Mapped[str] = mapped_column(String(8), default="USD")
    # The price in USD micro-dollars at the rate of the last write, for search and sorting.
    price_usd_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    private: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_accept: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # No free slot starts before this instant (a lower bound, exact when just refreshed);
    # NULL: unknown. Kept by agent_server.booking.next_free; search sorts and prunes on it.
    next_free_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where in a week (UTC) a slot may start, for search (availability.start_blocks).
    start_blocks: Mapped[int] = mapped_column(
        BigInteger, default=ALL_BLOCKS, server_default=text(str(ALL_BLOCKS))
    )

    specialist: Mapped[Specialist | None] = relationship(back_populates="schedules")


class Booking(Base):
    """One seat of one slot, booked by an agent."""

    __tablename__ = "bookings"
    __table_args__ = (
        Index(
            "uq_bookings_seat",
            "schedule_id",
            "slot_start",
            "seat",
            unique=True,
            sqlite_where=text(_SEAT_HOLDING_SQL),
            postgresql_where=text(_SEAT_HOLDING_SQL),
        ),
        UniqueConstraint("booker_agent_id", "idempotency_key", name="uq_bookings_idempotency"),
        CheckConstraint("slot_end > slot_start", name="slot_order"),
        CheckConstraint("seat >= 1", name="seat_min"),
        Index("ix_bookings_slot", "schedule_id", "slot_start"),
        Index("ix_bookings_clock_created", "status", "created_at"),
        Index("ix_bookings_clock_end", "status", "slot_end"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id"))
    specialist_id: Mapped[int | None] = mapped_column(ForeignKey("specialists.id"), index=True)
    booker_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    slot_start: Mapped[datetime] = mapped_column(UTCDateTime)
    slot_end: Mapped[datetime] = mapped_column(UTCDateTime)
    seat: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=BookingStatus.PENDING.value)
    price_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    price_currency: Mapped[str] = mapped_column(String(8), default="USD")
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(Text, default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    cancel_reason_code: Mapped[str | None] = mapped_column(String(64))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    rescheduled_from_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    rescheduled_to_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    location: Mapped[str | None] = mapped_column(Text)
    """Where the session happens (an address or a video link), set by the provider."""
    dismissed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    """When the booker dismissed this finished booking from its lists."""
    reminder_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The slot start the cancellation refund band is measured from: the start the booking
    # was paid for, never moved later by a reschedule (``billing.escrow.refund_percent``).
    refund_anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The ORM's version counter: every UPDATE names the version it read
    # (``WHERE id = ? AND version = ?``); a row changed meanwhile raises ``StaleDataError``.
    version: Mapped[int] = mapped_column(Integer, server_default="1")

    __mapper_args__ = {"version_id_col": version}


class BookingChange(Base):
    """An append-only history line of a booking: every status change, reschedule and note."""

    __tablename__ = "booking_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")


class DisputeStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Dispute(Base):
    """The booker's contest of a completed session, from opening to an operator's resolution.

    One per booking. While open, the booking is ``in_dispute`` and its escrow stays held; the
    resolution (``refund``, ``release`` or ``split`` with ``refund_amount``) settles the escrow
    and moves the booking to ``dispute_done``, recording who resolved it, when and why.
    """

    __tablename__ = "disputes"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status_known"),
        CheckConstraint("refund_amount IS NULL OR refund_amount >= 0", name="refund_nonneg"),
        Index("ix_disputes_status", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), unique=True)
    opened_by_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL")
    )
    reason_code: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default=DisputeStatus.OPEN.value)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(String(16))
    refund_amount: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(String(255))
    resolution_note: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    settle_transaction_id: Mapped[int | None] = mapped_column(BigInteger)


class Review(Base):
    """The booker's one review of a completed booking: 1 to 5 and a text.

    Its subject is the schedule's provider: the specialist, or the agent that owns the
    schedule. Ratings and review counts shown in search and profiles come from these rows.
    """

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        CheckConstraint(
            "(specialist_id IS NULL) <> (provider_agent_id IS NULL)", name="exactly_one_subject"
        ),
        Index("ix_reviews_specialist", "specialist_id", "id"),
        Index("ix_reviews_provider", "provider_agent_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), unique=True)
    reviewer_agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL")
    )
    specialist_id: Mapped[int | None] = mapped_column(ForeignKey("specialists.id"))
    provider_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    rating: Mapped[int] = mapped_column(SmallInteger)
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


CATALOGUE_ROW = 1
"""The id of ``catalogue_state``'s one row."""


class CatalogueState(Base):
    """How often the catalogue (specialists, schedules, bookings) has changed.

    One row, kept by triggers: ``version`` (0007) counts changes to specialists, bookings and
    schedules (but ``next_free_at``), for ``booking.cache``; ``profiles`` (0018) to skills,
    languages and places, for ``booking.search.profiles``. ``zone_rules``: ``booking.schedules``.
    """

    __tablename__ = "catalogue_state"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    last_txid: Mapped[int | None] = mapped_column(BigInteger)
    zone_rules: Mapped[str | None] = mapped_column(String(64))
    profiles: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    profiles_txid: Mapped[int | None] = mapped_column(BigInteger)


class CalendarToken(Base):
    """The one live iCal feed token of an agent or a specialist, stored as a peppered hash."""

    __tablename__ = "calendar_tokens"
    __table_args__ = (
        CheckConstraint("(agent_id IS NULL) <> (specialist_id IS NULL)", name="exactly_one_owner"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="CASCADE"), unique=True
    )
    specialist_id: Mapped[int | None] = mapped_column(
        ForeignKey("specialists.id", ondelete="CASCADE"), unique=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
