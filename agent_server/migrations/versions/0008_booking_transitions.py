"""booking transitions: a version per booking row and the refund band's anchor

Revision ID: 0008
Revises: 0007

``bookings.version`` is the ORM's version counter: every UPDATE of a booking names the version
it read, so two concurrent changes of one booking cannot both succeed. ``refund_anchor_at`` is
the slot start from which the cancellation refund band is measured: the start the booking was
first paid for, carried (never moved later) through reschedules.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy on SQLite): the table keeps its catalogue triggers.
    op.add_column(
        'bookings', sa.Column('version', sa.Integer(), nullable=False, server_default='1')
    )
    op.add_column(
        'bookings',
        sa.Column(
            'refund_anchor_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True
        ),
    )
    op.execute('UPDATE bookings SET refund_anchor_at = slot_start')


def downgrade() -> None:
    op.drop_column('bookings', 'refund_anchor_at')
    op.drop_column('bookings', 'version')
