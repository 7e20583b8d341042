"""accounts: agent profile columns, labels, email codes, status history, mail outbox, rate counters

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mail_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('to_addr', sa.String(length=255), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox'))
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_outbox_to_addr'), ['to_addr'], unique=False)

    op.create_table('rate_counters',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('window_start', sa.BigInteger(), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_counters'))
    )
    op.create_table('agent_labels',
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_labels_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'kind', 'value', name=op.f('pk_agent_labels'))
    )
    with op.batch_alter_table('agent_labels', schema=None) as batch_op:
        batch_op.create_index('ix_agent_labels_lookup', ['kind', 'value'], unique=False)

    op.create_table('agent_status_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=False),
    sa.Column('to_status', sa.String(length=20), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_agent_status_changes_agent_id_agents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_status_changes'))
    )
    with op.batch_alter_table('agent_status_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_agent_status_changes_agent_id'), ['agent_id'], unique=False)

    op.create_table('email_codes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.Column('superseded_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_email_codes_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_email_codes'))
    )
    with op.batch_alter_table('email_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_email_codes_agent_id'), ['agent_id'], unique=False)

    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('license', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('last_updated_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_accessed_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('api_key_created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('email_verified_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=False, server_default=''))
        batch_op.drop_index(batch_op.f('ix_agents_email'))
        batch_op.create_index(batch_op.f('ix_agents_email'), ['email'], unique=True)
        batch_op.create_index(batch_op.f('ix_agents_license'), ['license'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agents_license'))
        batch_op.drop_index(batch_op.f('ix_agents_email'))
        batch_op.create_index(batch_op.f('ix_agents_email'), ['email'], unique=False)
        batch_op.drop_column('search_text')
        batch_op.drop_column('email_verified_at')
        batch_op.drop_column('api_key_created_at')
        batch_op.drop_column('last_accessed_at')
        batch_op.drop_column('last_updated_at')
        batch_op.drop_column('license')
        batch_op.drop_column('currency')

    with op.batch_alter_table('email_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_email_codes_agent_id'))
    op.drop_table('email_codes')
    with op.batch_alter_table('agent_status_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agent_status_changes_agent_id'))
    op.drop_table('agent_status_changes')
    with op.batch_alter_table('agent_labels', schema=None) as batch_op:
        batch_op.drop_index('ix_agent_labels_lookup')
    op.drop_table('agent_labels')
    op.drop_table('rate_counters')
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_outbox_to_addr'))
    op.drop_table('mail_outbox')
