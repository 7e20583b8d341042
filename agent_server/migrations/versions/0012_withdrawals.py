"""withdrawals: money out to external addresses, payouts, owner controls

Revision ID: 0012
Revises: 0011

``withdrawal_addresses`` holds an owner's destinations (confirmed by an emailed code, usable
after a cooling-off time); ``withdrawals`` one request each, withdrawal or payout, from its
request to its confirmation on chain; ``withdrawal_send_attempts`` every signed transaction of
a withdrawal (fee replacement keeps the nonce). Ledger accounts gain the kinds
``withdrawing``, ``withdrawn`` and ``network_fees`` (no schema change: kinds are text).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import agent_server.kernel.store.base
import wallets.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = agent_server.kernel.store.base.UTCDateTime(timezone=True)
UNITS = wallets.models.BaseUnits(precision=78, scale=0)
ONE_OWNER = "(agent_id IS NULL) <> (specialist_id IS NULL)"
STATUSES = (
    "'requested', 'awaiting_confirmation', 'awaiting_approval', 'approved', 'sending', "
    "'sent', 'confirmed', 'rejected', 'cancelled', 'failed'"
)


def upgrade() -> None:
    op.create_table(
        "withdrawal_addresses",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(length=40), nullable=False),
        sa.Column("agent_id", ID, nullable=True),
        sa.Column("specialist_id", ID, nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("label", sa.String(length=80), nullable=False),
        sa.Column("code_hash", sa.String(length=128), nullable=True),
        sa.Column("code_tries", sa.Integer(), nullable=False),
        sa.Column("code_expires_at", WHEN, nullable=True),
        sa.Column("confirmed_at", WHEN, nullable=True),
        sa.Column("usable_after", WHEN, nullable=True),
        sa.Column("removed_at", WHEN, nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.CheckConstraint(ONE_OWNER, name=op.f("ck_withdrawal_addresses_one_owner")),
        sa.CheckConstraint("code_tries >= 0", name=op.f("ck_withdrawal_addresses_tries_nonneg")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            ondelete="SET NULL",
            name=op.f("fk_withdrawal_addresses_agent_id_agents"),
        ),
        sa.ForeignKeyConstraint(
            ["specialist_id"],
            ["specialists.id"],
            name=op.f("fk_withdrawal_addresses_specialist_id_specialists"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withdrawal_addresses")),
        sa.UniqueConstraint("owner", "currency", "address", name="uq_withdrawal_addresses_owner"),
    )
    op.create_index(op.f("ix_withdrawal_addresses_agent_id"), "withdrawal_addresses", ["agent_id"])
    op.create_index(
        op.f("ix_withdrawal_addresses_specialist_id"), "withdrawal_addresses", ["specialist_id"]
    )

    op.create_table(
        "withdrawals",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=40), nullable=False),
        sa.Column("agent_id", ID, nullable=True),
        sa.Column("specialist_id", ID, nullable=True),
        sa.Column("request_key", sa.String(length=255), nullable=True),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("address_id", ID, nullable=False),
        sa.Column("address", sa.String(length=100), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("fee", sa.BigInteger(), nullable=False),
        sa.Column("network_fee_estimate", sa.BigInteger(), nullable=False),
        sa.Column("rate_usd_micros", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.Column("decided_at", WHEN, nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("requested_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("approved_at", WHEN, nullable=True),
        sa.Column("ended_at", WHEN, nullable=True),
        sa.Column("request_txn_id", sa.BigInteger(), nullable=True),
        sa.Column("settle_txn_id", sa.BigInteger(), nullable=True),
        sa.Column("return_txn_id", sa.BigInteger(), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claimed_at", WHEN, nullable=True),
        sa.Column("from_address", sa.String(length=100), nullable=True),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=80), nullable=True),
        sa.Column("raw_tx", sa.Text(), nullable=True),
        sa.Column("chain_fee", UNITS, nullable=True),
        sa.Column("broadcast_at", WHEN, nullable=True),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("confirmed_at", WHEN, nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", sa.String(length=80), nullable=True),
        sa.Column("confirmations", sa.Integer(), nullable=False),
        sa.CheckConstraint(ONE_OWNER, name=op.f("ck_withdrawals_one_owner")),
        sa.CheckConstraint(f"status IN ({STATUSES})", name=op.f("ck_withdrawals_status_known")),
        sa.CheckConstraint(
            "kind IN ('withdrawal', 'payout')", name=op.f("ck_withdrawals_kind_known")
        ),
        sa.CheckConstraint("amount > 0 AND fee >= 0", name=op.f("ck_withdrawals_amounts_valid")),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.id"],
            ondelete="SET NULL",
            name=op.f("fk_withdrawals_agent_id_agents"),
        ),
        sa.ForeignKeyConstraint(
            ["specialist_id"],
            ["specialists.id"],
            name=op.f("fk_withdrawals_specialist_id_specialists"),
        ),
        sa.ForeignKeyConstraint(
            ["address_id"],
            ["withdrawal_addresses.id"],
            name=op.f("fk_withdrawals_address_id_withdrawal_addresses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withdrawals")),
        sa.UniqueConstraint("public_id", name=op.f("uq_withdrawals_public_id")),
        sa.UniqueConstraint("owner", "request_key", name="uq_withdrawals_owner_request_key"),
    )
    op.create_index("ix_withdrawals_status", "withdrawals", ["status", "id"])
    op.create_index("ix_withdrawals_owner", "withdrawals", ["owner", "id"])
    op.create_index(op.f("ix_withdrawals_address_id"), "withdrawals", ["address_id"])
    op.create_index(op.f("ix_withdrawals_tx_hash"), "withdrawals", ["tx_hash"])
    # One nonce per hot wallet (``from_address`` names its network): two senders never share it.
    op.create_index(
        "uq_withdrawals_sender_nonce", "withdrawals", ["from_address", "nonce"], unique=True
    )

    op.create_table(
        "withdrawal_send_attempts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("withdrawal_id", ID, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("network", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=True),
        sa.Column("tx_hash", sa.String(length=80), nullable=False),
        sa.Column("raw_tx", sa.Text(), nullable=False),
        sa.Column("max_fee_per_gas", UNITS, nullable=True),
        sa.Column("max_priority_fee_per_gas", UNITS, nullable=True),
        sa.Column("gas_limit", sa.BigInteger(), nullable=True),
        sa.Column("fee_rate", sa.BigInteger(), nullable=True),
        sa.Column("fee", UNITS, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("broadcast_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["withdrawal_id"],
            ["withdrawals.id"],
            name=op.f("fk_withdrawal_send_attempts_withdrawal_id_withdrawals"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_withdrawal_send_attempts")),
        sa.UniqueConstraint("withdrawal_id", "attempt", name="uq_withdrawal_send_attempts_attempt"),
        sa.UniqueConstraint("network", "tx_hash", name="uq_withdrawal_send_attempts_tx"),
    )
    op.create_index(
        op.f("ix_withdrawal_send_attempts_withdrawal_id"),
        "withdrawal_send_attempts",
        ["withdrawal_id"],
    )

    # --- owner controls: a low-balance threshold and a pending raise of the caps ------------
    with op.batch_alter_table("billing_spending_caps") as batch:
        batch.add_column(sa.Column("balance_low_usd_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("raise_daily_usd_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("raise_monthly_usd_micros", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("raise_code_hash", sa.String(length=128), nullable=True))
        batch.add_column(
            sa.Column("raise_code_tries", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("raise_code_expires_at", WHEN, nullable=True))
    # --- end owner controls ------------------------------------------------------------------


def downgrade() -> None:
    # --- owner controls ----------------------------------------------------------------------
    with op.batch_alter_table("billing_spending_caps") as batch:
        for name in (
            "raise_code_expires_at",
            "raise_code_tries",
            "raise_code_hash",
            "raise_monthly_usd_micros",
            "raise_daily_usd_micros",
            "balance_low_usd_micros",
        ):
            batch.drop_column(name)
    # --- end owner controls ------------------------------------------------------------------
    op.drop_table("withdrawal_send_attempts")
    op.drop_table("withdrawals")
    op.drop_table("withdrawal_addresses")
