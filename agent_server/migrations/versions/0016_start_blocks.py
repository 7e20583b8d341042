"""schedule start blocks: a search with days or hours skips schedules that never meet them

Revision ID: 0016
Revises: 0015

A search asking for days of the week or hours used to read and cut every schedule its walk
met, only to find that many of them never open at those times. ``schedules.start_blocks``
holds the three-hour blocks of a week in UTC where a slot of the schedule may start
(``availability.start_blocks``), and the walked indexes carry it, so the walk leaves such a
schedule behind in the index. Existing schedules get their blocks here; a row written
without them holds every block, which only costs speed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from agent_server.booking.availability import ALL_BLOCKS, start_blocks_changes

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = {
    "ix_schedules_price_order": ["price_usd_micros", "specialist_id", "id", "next_free_at"],
    "ix_schedules_next_free": ["next_free_at", "specialist_id", "id", "price_usd_micros"],
    "ix_schedules_owner_search": ["specialist_id", "id", "next_free_at", "price_usd_micros"],
}
FILTERED = ["private", "deleted_at", "start_date", "end_date", "slot_minutes"]
BATCH = 1000

SCHEDULES = sa.table(
    "schedules",
    sa.column("id", sa.BigInteger),
    sa.column("timezone", sa.String),
    sa.column("weekly_hours", sa.JSON),
    sa.column("overrides", sa.JSON),
    sa.column("slot_minutes", sa.Integer),
    sa.column("start_blocks", sa.BigInteger),
)


def _fill() -> None:
    bind = op.get_bind()
    update = (
        sa.update(SCHEDULES)
        .where(SCHEDULES.c.id == sa.bindparam("sid"))
        .values(start_blocks=sa.bindparam("blocks"))
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(
                SCHEDULES.c.id,
                SCHEDULES.c.timezone,
                SCHEDULES.c.weekly_hours,
                SCHEDULES.c.overrides,
                SCHEDULES.c.slot_minutes,
                SCHEDULES.c.start_blocks,  # every block, as the new column's default
            )
            .where(SCHEDULES.c.id > last)
            .order_by(SCHEDULES.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        values = start_blocks_changes(rows)
        if values:
            bind.execute(update, values)
        last = rows[-1][0]


def upgrade() -> None:
    op.add_column(
        "schedules",
        sa.Column(
            "start_blocks",
            sa.BigInteger(),
            nullable=False,
            server_default=sa.text(str(ALL_BLOCKS)),
        ),
    )
    _fill()
    for name, key in KEYS.items():
        op.drop_index(name, table_name="schedules")
        op.create_index(name, "schedules", [*key, *FILTERED, "start_blocks"])


def downgrade() -> None:
    for name, key in KEYS.items():
        op.drop_index(name, table_name="schedules")
        op.create_index(name, "schedules", [*key, *FILTERED])
    op.drop_column("schedules", "start_blocks")
