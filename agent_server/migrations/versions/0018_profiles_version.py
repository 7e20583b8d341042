"""profiles version: a change counter of what search's profile filters read

Revision ID: 0018
Revises: 0017

``catalogue_state.profiles`` counts the transactions that add or remove a specialist or
change their skills, languages, country or city: what ``booking.search.profiles`` keeps in
memory. Bookings and schedules leave it alone, so the kept index outlives them. As for
``version`` (0007): SQLite adds one per changed row; PostgreSQL one per transaction, at
commit, through a deferred constraint trigger guarded by ``profiles_txid``.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENTS = ("INSERT", "UPDATE OF skills, languages, country, city", "DELETE")

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION profiles_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalogue_state
       SET profiles = profiles + 1, profiles_txid = txid_current()
     WHERE id = 1 AND profiles_txid IS DISTINCT FROM txid_current();
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.add_column(
        "catalogue_state",
        sa.Column("profiles", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("catalogue_state", sa.Column("profiles_txid", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE CONSTRAINT TRIGGER specialists_profiles_changed "
            f"AFTER {' OR '.join(EVENTS)} ON specialists "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION profiles_changed()"
        )
    else:
        for event in EVENTS:
            op.execute(
                f"CREATE TRIGGER specialists_profiles_{event.split()[0].lower()} "
                f"AFTER {event} ON specialists "
                "BEGIN UPDATE catalogue_state SET profiles = profiles + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS specialists_profiles_changed ON specialists")
        op.execute("DROP FUNCTION IF EXISTS profiles_changed()")
    else:
        for event in EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS specialists_profiles_{event.split()[0].lower()}")
    op.drop_column("catalogue_state", "profiles_txid")
    op.drop_column("catalogue_state", "profiles")
