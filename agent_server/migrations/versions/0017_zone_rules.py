"""zone rules: the digest of the time zone rules behind the schedules' start blocks

Revision ID: 0017
Revises: 0016

``schedules.start_blocks`` holds a schedule's hours at every offset its zone takes, by the
time zone rules the writing process read. ``catalogue_state.zone_rules`` keeps the digest
of those rules, so a server that reads other rules (a new tzdata release) computes the
blocks again (``booking.schedules.zone_rules``). Unknown (NULL) here: the first server to
start checks every schedule once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("catalogue_state", sa.Column("zone_rules", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("catalogue_state", "zone_rules")
