"""billing: double-entry ledger (accounts, transactions, entries), holds, escrows, usage,
free quotas, idempotency keys and spending caps

Revision ID: 0003
Revises: 0002

On PostgreSQL a deferred constraint trigger refuses, at commit, any ledger transaction whose
entries do not sum to zero per currency (or that has no entries). On both backends, triggers
make ledger entries and transactions append-only.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PG_BALANCED = """
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    txn bigint;
    currencies integer;
    unbalanced integer;
BEGIN
    IF TG_TABLE_NAME = 'ledger_transactions' THEN
        txn := NEW.id;
    ELSE
        txn := NEW.transaction_id;
    END IF;
    SELECT count(*), count(*) FILTER (WHERE diff <> 0) INTO currencies, unbalanced
        FROM (SELECT SUM(debit) - SUM(credit) AS diff FROM ledger_entries
              WHERE transaction_id = txn GROUP BY currency) AS per_currency;
    IF currencies = 0 THEN
        RAISE EXCEPTION 'ledger transaction % has no entries', txn
            USING ERRCODE = 'check_violation';
    END IF;
    IF unbalanced > 0 THEN
        RAISE EXCEPTION 'ledger transaction % does not balance in % currencies', txn, unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
"""

PG_APPEND_ONLY = """
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: post a correcting transaction instead', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END $$;
"""

LEDGER_TABLES = ('ledger_transactions', 'ledger_entries')


def _create_triggers() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PG_BALANCED)
        op.execute(PG_APPEND_ONLY)
        for table in LEDGER_TABLES:
            op.execute(
                f'CREATE CONSTRAINT TRIGGER {table}_balanced AFTER INSERT ON {table} '
                'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced()'
            )
            op.execute(
                f'CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} '
                'FOR EACH ROW EXECUTE FUNCTION ledger_append_only()'
            )
    else:
        for table in LEDGER_TABLES:
            for action in ('UPDATE', 'DELETE'):
                op.execute(
                    f'CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} '
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )


def _drop_triggers() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in LEDGER_TABLES:
            op.execute(f'DROP TRIGGER IF EXISTS {table}_balanced ON {table}')
            op.execute(f'DROP TRIGGER IF EXISTS {table}_append_only ON {table}')
        op.execute('DROP FUNCTION IF EXISTS ledger_check_balanced()')
        op.execute('DROP FUNCTION IF EXISTS ledger_append_only()')
    else:
        for table in LEDGER_TABLES:
            for action in ('update', 'delete'):
                op.execute(f'DROP TRIGGER IF EXISTS {table}_no_{action}')


def upgrade() -> None:
    op.create_table('ledger_accounts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('specialist_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('balance', sa.BigInteger(), nullable=True),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'wallet') = (balance IS NOT NULL)", name=op.f('ck_ledger_accounts_wallet_balance_cached')),
    sa.CheckConstraint('balance >= 0', name=op.f('ck_ledger_accounts_balance_nonneg')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_ledger_accounts_agent_id_agents')),
    sa.ForeignKeyConstraint(['specialist_id'], ['specialists.id'], name=op.f('fk_ledger_accounts_specialist_id_specialists')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('id', 'currency', name='uq_ledger_accounts_id_currency'),
    sa.UniqueConstraint('key', name=op.f('uq_ledger_accounts_key'))
    )
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_accounts_agent', ['agent_id', 'kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_accounts_specialist_id'), ['specialist_id'], unique=False)

    op.create_table('ledger_transactions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('call_id', sa.String(length=64), nullable=True),
    sa.Column('tool', sa.String(length=64), nullable=True),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('price_usd_micros', sa.BigInteger(), nullable=True),
    sa.Column('rate', sa.BigInteger(), nullable=True),
    sa.Column('reverses_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('memo', sa.Text(), nullable=False),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_ledger_transactions_amount_nonneg')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_ledger_transactions_agent_id_agents')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_ledger_transactions_booking_id_bookings')),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_transactions_reverses_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('reference', name=op.f('uq_ledger_transactions_reference'))
    )
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_transactions_agent', ['agent_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_transactions_booking_id'), ['booking_id'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('debit', sa.BigInteger(), nullable=False),
    sa.Column('credit', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('(debit = 0) <> (credit = 0)', name=op.f('ck_ledger_entries_one_side')),
    sa.CheckConstraint('debit >= 0 AND credit >= 0', name=op.f('ck_ledger_entries_sides_nonneg')),
    sa.ForeignKeyConstraint(['account_id', 'currency'], ['ledger_accounts.id', 'ledger_accounts.currency'], name='fk_ledger_entries_account_currency'),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_entries_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entries'))
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_entries_account', ['account_id', 'id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_entries_transaction_id'), ['transaction_id'], unique=False)



    op.create_table('billing_holds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tool', sa.String(length=64), nullable=False),
    sa.Column('wallet_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('fee_amount', sa.BigInteger(), nullable=False),
    sa.Column('price_usd_micros', sa.BigInteger(), nullable=False),
    sa.Column('fee_usd_micros', sa.BigInteger(), nullable=False),
    sa.Column('rate', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('hold_transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('settled_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount > 0', name=op.f('ck_billing_holds_amount_pos')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_billing_holds_agent_id_agents')),
    sa.ForeignKeyConstraint(['hold_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_billing_holds_hold_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['wallet_account_id'], ['ledger_accounts.id'], name=op.f('fk_billing_holds_wallet_account_id_ledger_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_holds')),
    sa.UniqueConstraint('call_id', name=op.f('uq_billing_holds_call_id'))
    )
    with op.batch_alter_table('billing_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_holds_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index('ix_billing_holds_pending', ['status', 'created_at'], unique=False)

    op.create_table('billing_escrows',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('booking_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('wallet_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('price_usd_micros', sa.BigInteger(), nullable=False),
    sa.Column('rate', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('refunded', sa.BigInteger(), nullable=True),
    sa.Column('paid_to_payee', sa.BigInteger(), nullable=True),
    sa.Column('commission', sa.BigInteger(), nullable=True),
    sa.Column('escrow_transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('settle_transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('settled_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_billing_escrows_amount_nonneg')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_billing_escrows_agent_id_agents')),
    sa.ForeignKeyConstraint(['booking_id'], ['bookings.id'], name=op.f('fk_billing_escrows_booking_id_bookings')),
    sa.ForeignKeyConstraint(['escrow_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_billing_escrows_escrow_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['settle_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_billing_escrows_settle_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['wallet_account_id'], ['ledger_accounts.id'], name=op.f('fk_billing_escrows_wallet_account_id_ledger_accounts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_escrows')),
    sa.UniqueConstraint('booking_id', name=op.f('uq_billing_escrows_booking_id'))
    )
    with op.batch_alter_table('billing_escrows', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_billing_escrows_agent_id'), ['agent_id'], unique=False)

    op.create_table('billing_usage',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('call_id', sa.String(length=64), nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tool', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('free', sa.Boolean(), nullable=False),
    sa.Column('price_usd_micros', sa.BigInteger(), nullable=False),
    sa.Column('currency', sa.String(length=8), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('transaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_billing_usage_agent_id_agents')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_billing_usage_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_usage')),
    sa.UniqueConstraint('call_id', name=op.f('uq_billing_usage_call_id'))
    )
    with op.batch_alter_table('billing_usage', schema=None) as batch_op:
        batch_op.create_index('ix_billing_usage_agent_period', ['agent_id', 'period', 'tool'], unique=False)

    op.create_table('billing_free_quota',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tool', sa.String(length=64), nullable=False),
    sa.Column('period', sa.String(length=7), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.CheckConstraint('used >= 0', name=op.f('ck_billing_free_quota_used_nonneg')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_billing_free_quota_agent_id_agents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_free_quota')),
    sa.UniqueConstraint('agent_id', 'tool', 'period', name='uq_billing_free_quota_key')
    )
    op.create_table('billing_idempotency_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('tool', sa.String(length=64), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('lock_token', sa.String(length=64), nullable=False),
    sa.Column('locked_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('receipt', sa.JSON(), nullable=True),
    sa.Column('created_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_billing_idempotency_keys_agent_id_agents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_idempotency_keys')),
    sa.UniqueConstraint('agent_id', 'key', name='uq_billing_idempotency_keys_agent_key')
    )
    with op.batch_alter_table('billing_idempotency_keys', schema=None) as batch_op:
        batch_op.create_index('ix_billing_idempotency_keys_created', ['created_at'], unique=False)

    op.create_table('billing_spending_caps',
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('daily_usd_micros', sa.BigInteger(), nullable=True),
    sa.Column('monthly_usd_micros', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', agent_server.kernel.store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_billing_spending_caps_agent_id_agents')),
    sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_billing_spending_caps'))
    )
    op.create_table('billing_spending_tally',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('agent_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('period', sa.String(length=10), nullable=False),
    sa.Column('spent_usd_micros', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('spent_usd_micros >= 0', name=op.f('ck_billing_spending_tally_spent_nonneg')),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_billing_spending_tally_agent_id_agents')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_billing_spending_tally')),
    sa.UniqueConstraint('agent_id', 'period', name='uq_billing_spending_tally_key')
    )

    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    op.drop_table('billing_spending_tally')
    op.drop_table('billing_spending_caps')
    with op.batch_alter_table('billing_idempotency_keys', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_idempotency_keys_created')
    op.drop_table('billing_idempotency_keys')
    op.drop_table('billing_free_quota')
    with op.batch_alter_table('billing_usage', schema=None) as batch_op:
        batch_op.drop_index('ix_billing_usage_agent_period')
    op.drop_table('billing_usage')
    with op.batch_alter_table('billing_escrows', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_escrows_agent_id'))
    op.drop_table('billing_escrows')
    with op.batch_alter_table('billing_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_billing_holds_agent_id'))
        batch_op.drop_index('ix_billing_holds_pending')
    op.drop_table('billing_holds')
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_entries_account')
        batch_op.drop_index(batch_op.f('ix_ledger_entries_transaction_id'))
    op.drop_table('ledger_entries')
    with op.batch_alter_table('ledger_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_transactions_agent')
        batch_op.drop_index(batch_op.f('ix_ledger_transactions_booking_id'))
    op.drop_table('ledger_transactions')
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_index('ix_ledger_accounts_agent')
        batch_op.drop_index(batch_op.f('ix_ledger_accounts_specialist_id'))
    op.drop_table('ledger_accounts')
