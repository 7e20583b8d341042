"""oauth: registered clients, authorizations and their tokens

Revision ID: 0009
Revises: 0008

OAuth sign-in for remote MCP clients. ``oauth_grants`` holds one authorization from request to
revocation (the consent page's handle, the agent chosen, the code); ``oauth_tokens`` the access
and refresh tokens it issued. Codes, tokens and handles are stored as peppered HMACs only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
WHEN = agent_server.kernel.store.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'oauth_clients',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('info', sa.JSON(), nullable=False),
        sa.Column('secret_sealed', sa.Text(), nullable=True),
        sa.Column('created_at', WHEN, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_clients')),
        sa.UniqueConstraint('client_id', name=op.f('uq_oauth_clients_client_id')),
    )
    op.create_table(
        'oauth_grants',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('redirect_uri', sa.Text(), nullable=False),
        sa.Column('redirect_uri_explicit', sa.Boolean(), nullable=False),
        sa.Column('code_challenge', sa.String(length=128), nullable=False),
        sa.Column('state', sa.Text(), nullable=True),
        sa.Column('scopes', sa.String(length=1000), nullable=False),
        sa.Column('resource', sa.Text(), nullable=True),
        sa.Column('created_at', WHEN, nullable=False),
        sa.Column('expires_at', WHEN, nullable=False),
        sa.Column('agent_id', ID, nullable=True),
        sa.Column('owner_email', sa.String(length=255), nullable=True),
        sa.Column('consented_at', WHEN, nullable=True),
        sa.Column('code_hash', sa.String(length=64), nullable=True),
        sa.Column('code_expires_at', WHEN, nullable=True),
        sa.Column('exchanged_at', WHEN, nullable=True),
        sa.Column('revoked_at', WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ['agent_id'], ['agents.id'], name=op.f('fk_oauth_grants_agent_id_agents')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_grants')),
        sa.UniqueConstraint('code_hash', name=op.f('uq_oauth_grants_code_hash')),
        sa.UniqueConstraint('request_hash', name=op.f('uq_oauth_grants_request_hash')),
    )
    op.create_index(op.f('ix_oauth_grants_agent_id'), 'oauth_grants', ['agent_id'], unique=False)
    op.create_index(
        op.f('ix_oauth_grants_client_id'), 'oauth_grants', ['client_id'], unique=False
    )
    op.create_table(
        'oauth_tokens',
        sa.Column('id', ID, autoincrement=True, nullable=False),
        sa.Column('grant_id', ID, nullable=False),
        sa.Column('agent_id', ID, nullable=False),
        sa.Column('client_id', sa.String(length=64), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('scopes', sa.String(length=1000), nullable=False),
        sa.Column('resource', sa.Text(), nullable=True),
        sa.Column('created_at', WHEN, nullable=False),
        sa.Column('expires_at', WHEN, nullable=False),
        sa.Column('used_at', WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ['agent_id'], ['agents.id'], name=op.f('fk_oauth_tokens_agent_id_agents')
        ),
        sa.ForeignKeyConstraint(
            ['grant_id'], ['oauth_grants.id'], name=op.f('fk_oauth_tokens_grant_id_oauth_grants')
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_oauth_tokens')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_oauth_tokens_token_hash')),
    )
    op.create_index(op.f('ix_oauth_tokens_agent_id'), 'oauth_tokens', ['agent_id'], unique=False)
    op.create_index(op.f('ix_oauth_tokens_grant_id'), 'oauth_tokens', ['grant_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_oauth_tokens_grant_id'), table_name='oauth_tokens')
    op.drop_index(op.f('ix_oauth_tokens_agent_id'), table_name='oauth_tokens')
    op.drop_table('oauth_tokens')
    op.drop_index(op.f('ix_oauth_grants_client_id'), table_name='oauth_grants')
    op.drop_index(op.f('ix_oauth_grants_agent_id'), table_name='oauth_grants')
    op.drop_table('oauth_grants')
    op.drop_table('oauth_clients')
