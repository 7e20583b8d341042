"""withdrawal limits: an owner's daily and monthly limits on what an agent withdraws

Revision ID: 0014
Revises: 0013

``billing_spending_caps`` gains the withdrawal limits (USD micro-dollars, null: none), the
raise of them waiting for the owner's mailed code, and the code that confirms giving up a
balance when an account is closed over REST. All nullable (the tries default to 0), so
existing rows keep meaning what they meant: no withdrawal limit, no code waiting.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = agent_server.kernel.store.base.UTCDateTime(timezone=True)
AMOUNTS = (
    "withdraw_daily_usd_micros",
    "withdraw_monthly_usd_micros",
    "raise_withdraw_daily_usd_micros",
    "raise_withdraw_monthly_usd_micros",
)


def upgrade() -> None:
    with op.batch_alter_table("billing_spending_caps") as batch:
        for name in AMOUNTS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("forfeit_code_hash", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("forfeit_code_tries", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("forfeit_code_expires_at", WHEN, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_spending_caps") as batch:
        for name in ("forfeit_code_expires_at", "forfeit_code_tries", "forfeit_code_hash"):
            batch.drop_column(name)
        for name in reversed(AMOUNTS):
            batch.drop_column(name)
