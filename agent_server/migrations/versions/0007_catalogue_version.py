"""catalogue version: a change counter kept by triggers on specialists, schedules, bookings

Revision ID: 0007
Revises: 0006

Cached search pages and profiles are valid while ``catalogue_state.version`` is unchanged.
SQLite: AFTER triggers add one per changed row (writers are serialised anyway). PostgreSQL:
deferred constraint triggers add one per transaction, at commit, so the counter row is the
last lock a transaction takes and is held only while it commits (no lock-order cycles with
wallet rows). Schedules count only for columns other than the ``next_free_at`` hint, which
search itself refreshes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEDULE_COLUMNS = (
    'specialist_id', 'agent_id', 'label', 'description', 'skills', 'timezone',
    'weekly_hours', 'overrides', 'blackout_dates', 'slot_minutes', 'buffer_minutes',
    'min_notice_minutes', 'start_date', 'end_date', 'price_amount', 'price_currency',
    'price_usd_micros', 'capacity', 'private', 'auto_accept', 'created_at', 'updated_at',
    'deleted_at',
)
EVENTS = {
    'specialists': ('INSERT', 'UPDATE', 'DELETE'),
    'schedules': ('INSERT', 'UPDATE OF ' + ', '.join(SCHEDULE_COLUMNS), 'DELETE'),
    'bookings': ('INSERT', 'UPDATE', 'DELETE'),
}

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION catalogue_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalogue_state
       SET version = version + 1, last_txid = txid_current()
     WHERE id = 1 AND last_txid IS DISTINCT FROM txid_current();
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    op.create_table('catalogue_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('last_txid', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalogue_state'))
    )
    op.execute('INSERT INTO catalogue_state (id, version) VALUES (1, 0)')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_FUNCTION)
        for table, events in EVENTS.items():
            op.execute(
                f'CREATE CONSTRAINT TRIGGER {table}_catalogue_changed '
                f'AFTER {" OR ".join(events)} ON {table} '
                'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION catalogue_changed()'
            )
    else:
        for table, events in EVENTS.items():
            for event in events:
                name = event.split()[0].lower()
                op.execute(
                    f'CREATE TRIGGER {table}_catalogue_{name} AFTER {event} ON {table} '
                    'BEGIN UPDATE catalogue_state SET version = version + 1 WHERE id = 1; END'
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in EVENTS:
            op.execute(f'DROP TRIGGER IF EXISTS {table}_catalogue_changed ON {table}')
        op.execute('DROP FUNCTION IF EXISTS catalogue_changed()')
    else:
        for table, events in EVENTS.items():
            for event in events:
                op.execute(f'DROP TRIGGER IF EXISTS {table}_catalogue_{event.split()[0].lower()}')
    op.drop_table('catalogue_state')
