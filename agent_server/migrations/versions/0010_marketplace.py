"""marketplace: disputes, reviews, the booking clock, where a session happens, notifications

Revision ID: 0010
Revises: 0009

Bookings gain the statuses ``in_dispute`` and ``dispute_done`` (both keep their seat, as
``completed`` does, so the seat index is rebuilt over the five seat-holding statuses), where
the session happens (``location``, set by the provider), when the booker dismissed a finished
booking from its lists, and when its reminder was mailed. ``disputes`` holds one dispute per
booking from opening to the operator's resolution; ``reviews`` one review per completed booking.
Providers that are agents get a rating and a review count, as specialists have. Specialists
choose which booking mails they receive; the mail outbox becomes a queue that the change's
own transaction writes to and a sender empties by SMTP; a sign-up code remembers the name
given with it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = agent_server.kernel.store.base.UTCDateTime(timezone=True)
OLD_SEATS = "status IN ('pending', 'accepted', 'completed')"
NEW_SEATS = "status IN ('pending', 'accepted', 'completed', 'in_dispute', 'dispute_done')"


def _seat_index(where: str) -> None:
    op.create_index(
        "uq_bookings_seat",
        "bookings",
        ["schedule_id", "slot_start", "seat"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.drop_index("uq_bookings_seat", table_name="bookings")
    _seat_index(NEW_SEATS)
    op.add_column("bookings", sa.Column("location", sa.Text(), nullable=True))
    op.add_column("bookings", sa.Column("dismissed_at", WHEN, nullable=True))
    op.add_column("bookings", sa.Column("reminder_sent_at", WHEN, nullable=True))
    op.create_index("ix_bookings_clock_created", "bookings", ["status", "created_at"])
    op.create_index("ix_bookings_clock_end", "bookings", ["status", "slot_end"])

    op.add_column("agents", sa.Column("rating", sa.Float(), nullable=False, server_default="0"))
    op.add_column(
        "agents", sa.Column("review_count", sa.Integer(), nullable=False, server_default="0")
    )
    for column, default in (
        ("notify_new_booking", sa.true()),
        ("notify_cancelled", sa.true()),
        ("notify_reminder", sa.true()),
    ):
        op.add_column(
            "specialists", sa.Column(column, sa.Boolean(), nullable=False, server_default=default)
        )

    # Mail queued in the transaction of the change it is about, delivered by SMTP afterwards.
    op.add_column("mail_outbox", sa.Column("status", sa.String(length=16), nullable=True))
    op.add_column(
        "mail_outbox", sa.Column("attempts", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("mail_outbox", sa.Column("next_attempt_at", WHEN, nullable=True))
    op.add_column("mail_outbox", sa.Column("claim_token", sa.String(length=32), nullable=True))
    op.add_column("mail_outbox", sa.Column("sent_at", WHEN, nullable=True))
    op.create_index("ix_mail_outbox_due", "mail_outbox", ["status", "next_attempt_at"])
    op.add_column(
        "dashboard_sign_in_codes",
        sa.Column("signup_name", sa.String(length=255), nullable=True),
    )

    op.create_table(
        "disputes",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("booking_id", ID, nullable=False),
        sa.Column("opened_by_agent_id", ID, nullable=True),
        sa.Column("reason_code", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", WHEN, nullable=False),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("refund_amount", sa.BigInteger(), nullable=True),
        sa.Column("resolved_by", sa.String(length=255), nullable=True),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("resolved_at", WHEN, nullable=True),
        sa.Column("settle_transaction_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f("ck_disputes_status_known")),
        sa.CheckConstraint(
            "refund_amount IS NULL OR refund_amount >= 0",
            name=op.f("ck_disputes_refund_nonneg"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_disputes_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["opened_by_agent_id"],
            ["agents.id"],
            ondelete="SET NULL",
            name=op.f("fk_disputes_opened_by_agent_id_agents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_disputes")),
        sa.UniqueConstraint("booking_id", name=op.f("uq_disputes_booking_id")),
    )
    op.create_index("ix_disputes_status", "disputes", ["status", "opened_at"])

    op.create_table(
        "reviews",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("booking_id", ID, nullable=False),
        sa.Column("reviewer_agent_id", ID, nullable=True),
        sa.Column("specialist_id", ID, nullable=True),
        sa.Column("provider_agent_id", ID, nullable=True),
        sa.Column("rating", sa.SmallInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.CheckConstraint("rating BETWEEN 1 AND 5", name=op.f("ck_reviews_rating_range")),
        sa.CheckConstraint(
            "(specialist_id IS NULL) <> (provider_agent_id IS NULL)",
            name=op.f("ck_reviews_exactly_one_subject"),
        ),
        sa.ForeignKeyConstraint(
            ["booking_id"], ["bookings.id"], name=op.f("fk_reviews_booking_id_bookings")
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_agent_id"],
            ["agents.id"],
            ondelete="SET NULL",
            name=op.f("fk_reviews_reviewer_agent_id_agents"),
        ),
        sa.ForeignKeyConstraint(
            ["specialist_id"],
            ["specialists.id"],
            name=op.f("fk_reviews_specialist_id_specialists"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_agent_id"],
            ["agents.id"],
            name=op.f("fk_reviews_provider_agent_id_agents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("booking_id", name=op.f("uq_reviews_booking_id")),
    )
    op.create_index("ix_reviews_specialist", "reviews", ["specialist_id", "id"])
    op.create_index("ix_reviews_provider", "reviews", ["provider_agent_id", "id"])
    # sort=rating breaks ties by review count, then id: the index walks that order.
    with op.batch_alter_table("specialists") as batch_op:
        batch_op.drop_index("ix_specialists_rating")
        batch_op.create_index("ix_specialists_rating", ["rating", "review_count", "id"])


def downgrade() -> None:
    with op.batch_alter_table("specialists") as batch_op:
        batch_op.drop_index("ix_specialists_rating")
        batch_op.create_index("ix_specialists_rating", ["rating", "id"])
    op.drop_index("ix_reviews_provider", table_name="reviews")
    op.drop_index("ix_reviews_specialist", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index("ix_disputes_status", table_name="disputes")
    op.drop_table("disputes")
    op.drop_column("dashboard_sign_in_codes", "signup_name")
    op.drop_index("ix_mail_outbox_due", table_name="mail_outbox")
    for column in ("sent_at", "claim_token", "next_attempt_at", "attempts", "status"):
        op.drop_column("mail_outbox", column)
    for column in ("notify_reminder", "notify_cancelled", "notify_new_booking"):
        op.drop_column("specialists", column)
    op.drop_column("agents", "review_count")
    op.drop_column("agents", "rating")
    op.drop_index("ix_bookings_clock_end", table_name="bookings")
    op.drop_index("ix_bookings_clock_created", table_name="bookings")
    op.drop_column("bookings", "reminder_sent_at")
    op.drop_column("bookings", "dismissed_at")
    op.drop_column("bookings", "location")
    op.drop_index("uq_bookings_seat", table_name="bookings")
    _seat_index(OLD_SEATS)
