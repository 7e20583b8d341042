"""search covering indexes: a walk checks its filters in the index it walks

Revision ID: 0015
Revises: 0014

A search walks an index in its sort order and checks each entry against the filters. The
entry's schedule row (dates, privacy, price or next free slot, slot length) and its
specialist's row (rating, country, city) were read for that, one look-up each. The walk's
indexes now carry those columns after their sort columns, so the check reads the index
alone (an index-only scan on PostgreSQL once the visibility map is set): about half of a
rare filter's walk on a catalogue of 100,000 specialists. ``ix_specialists_walk`` is the
specialist side of the price and next-available walks; ``ix_schedules_owner_search`` the
"has a matching schedule" check of the rating walk.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILTERED = ["private", "deleted_at", "start_date", "end_date", "slot_minutes"]
WIDENED = {
    "ix_schedules_price_order": (
        "schedules",
        ["price_usd_micros", "specialist_id", "id"],
        ["next_free_at", *FILTERED],
    ),
    "ix_schedules_next_free": (
        "schedules",
        ["next_free_at", "specialist_id", "id"],
        ["price_usd_micros", *FILTERED],
    ),
    "ix_specialists_rating": (
        "specialists",
        ["rating", "review_count", "id"],
        ["country", "city"],
    ),
}
ADDED = {
    "ix_specialists_walk": ("specialists", ["id", "rating", "review_count", "country", "city"]),
    "ix_schedules_owner_search": (
        "schedules",
        ["specialist_id", "id", "next_free_at", "price_usd_micros", *FILTERED],
    ),
}


def upgrade() -> None:
    for name, (table, key, carried) in WIDENED.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [*key, *carried])
    for name, (table, columns) in ADDED.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _) in ADDED.items():
        op.drop_index(name, table_name=table)
    for name, (table, key, _) in WIDENED.items():
        op.drop_index(name, table_name=table)
        op.create_index(name, table, key)
