"""key history: every API key an agent was issued, and when and why it was revoked

Revision ID: 0013
Revises: 0012

``agent_keys`` holds one row per key: its shown prefix, when and how it was issued and, once
replaced or closed, when and why it was revoked. Each existing agent gets one row for its
current key (issued when ``api_key_created_at`` says, else when the agent was created; revoked
already if the account is closed).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = agent_server.kernel.store.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "agent_keys",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("agent_id", ID, nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("issued_at", WHEN, nullable=False),
        sa.Column("issued_by", sa.String(length=20), nullable=False),
        sa.Column("revoked_at", WHEN, nullable=True),
        sa.Column("revoked_reason", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_agent_keys_agent_id_agents")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_keys")),
    )
    with op.batch_alter_table("agent_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_agent_keys_agent_id"), ["agent_id"], unique=False)
    op.execute(
        "INSERT INTO agent_keys (agent_id, prefix, issued_at, issued_by, revoked_at, "
        "revoked_reason) "
        "SELECT id, api_key_prefix, COALESCE(api_key_created_at, created_at), 'migration', "
        "deleted_at, CASE WHEN deleted_at IS NULL THEN NULL ELSE 'closed' END "
        "FROM agents ORDER BY id"
    )


def downgrade() -> None:
    with op.batch_alter_table("agent_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agent_keys_agent_id"))
    op.drop_table("agent_keys")
