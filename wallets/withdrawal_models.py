"""Money out: destination addresses, withdrawals and payouts, and their signed transactions.

- ``withdrawal_addresses``: an owner's external destination for one currency. A new address
  holds the hash of an emailed confirmation code (tries limited, expiring); once confirmed it
  can be used from ``usable_after`` (the cooling-off time) on.
- ``withdrawals``: one request to send money out, with its own public id. ``kind`` is
  ``withdrawal`` (an agent's wallet) or ``payout`` (what a provider agent or a specialist is
  owed). Its status moves requested -> awaiting_confirmation -> awaiting_approval -> approved
  -> sending -> sent -> confirmed, or ends rejected, cancelled or failed. The chain side (nonce,
  hash, signed raw transaction) is recorded before anything is broadcast.
- ``withdrawal_send_attempts``: one row per signed transaction of a withdrawal, so a stuck
  EVM transaction is replaced with a higher fee under the same nonce, never duplicated.

The owner is an agent or a specialist (exactly one); ``owner`` is its readable key
(``agent:12``, ``specialist:3``) so uniqueness holds without NULL columns.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime
from wallets.models import BaseUnits


class WithdrawalKind(StrEnum):
    WITHDRAWAL = "withdrawal"  # from an agent's wallet
    PAYOUT = "payout"  # from what a provider agent or specialist is owed


class WithdrawalStatus(StrEnum):
    REQUESTED = "requested"
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # the address waits for its code or cooling-off
    AWAITING_APPROVAL = "awaiting_approval"  # above the limit: an operator decides
    APPROVED = "approved"  # ready for the sender
    SENDING = "sending"  # signed and recorded; broadcast may have happened
    SENT = "sent"  # seen on chain, waiting for confirmations
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    FAILED = "failed"


OPEN_STATUSES = (
    WithdrawalStatus.REQUESTED,
    WithdrawalStatus.AWAITING_CONFIRMATION,
    WithdrawalStatus.AWAITING_APPROVAL,
    WithdrawalStatus.APPROVED,
)
FINAL_STATUSES = (
    WithdrawalStatus.CONFIRMED,
    WithdrawalStatus.REJECTED,
    WithdrawalStatus.CANCELLED,
    WithdrawalStatus.FAILED,
)
_STATUS_SQL = ", ".join(f"'{s.value}'" for s in WithdrawalStatus)
_ONE_OWNER = "(agent_id IS NULL) <> (specialist_id IS NULL)"


class WithdrawalAddress(Base):
    __tablename__ = "withdrawal_addresses"
    __table_args__ = (
        UniqueConstraint("owner", "currency", "address", name="uq_withdrawal_addresses_owner"),
        CheckConstraint(_ONE_OWNER, name="one_owner"),
        CheckConstraint("code_tries >= 0", name="tries_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[int | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    specialist_id: Mapped[int | None] = mapped_column(ForeignKey("specialists.id"), index=True)
    currency: Mapped[str] = mapped_column(String(8))
    network: Mapped[str] = mapped_column(String(64))  # eip155:1, bitcoin:regtest
    address: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(80), default="")
    code_hash: Mapped[str | None] = mapped_column(String(128))
    code_tries: Mapped[int] = mapped_column(Integer, default=0)
    code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    usable_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Withdrawal(Base):
    __tablename__ = "withdrawals"
    __table_args__ = (
        UniqueConstraint("owner", "request_key", name="uq_withdrawals_owner_request_key"),
        CheckConstraint(_ONE_OWNER, name="one_owner"),
        CheckConstraint(f"status IN ({_STATUS_SQL})", name="status_known"),
        CheckConstraint("kind IN ('withdrawal', 'payout')", name="kind_known"),
        CheckConstraint("amount > 0 AND fee >= 0", name="amounts_valid"),
        Index("ix_withdrawals_status", "status", "id"),
        Index("ix_withdrawals_owner", "owner", "id"),
        # One nonce per hot wallet (``from_address`` names its network).
        Index("uq_withdrawals_sender_nonce", "from_address", "nonce", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(40))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    specialist_id: Mapped[int | None] = mapped_column(ForeignKey("specialists.id"))
    # A retried request with the same key returns the first withdrawal.
    request_key: Mapped[str | None] = mapped_column(String(255))
    currency: Mapped[str] = mapped_column(String(8))
    network: Mapped[str] = mapped_column(String(64))
    address_id: Mapped[int] = mapped_column(ForeignKey("withdrawal_addresses.id"), index=True)
    address: Mapped[str] = mapped_column(String(100))
    # Base units of ``currency``: what arrives at the address, and the fee charged on top.
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    network_fee_estimate: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(24), default=WithdrawalStatus.REQUESTED.value)
    needs_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")  # why it ended rejected/failed
    # The operator's decision (approval or rejection): who, when, why.
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision_note: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Ledger: the request (source -> pending), settlement (pending -> chain and fee), return.
    request_txn_id: Mapped[int | None] = mapped_column(BigInteger)
    settle_txn_id: Mapped[int | None] = mapped_column(BigInteger)
    return_txn_id: Mapped[int | None] = mapped_column(BigInteger)
    # Chain side, written by the sender before it broadcasts.
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    from_address: Mapped[str | None] = mapped_column(String(100))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str | None] = mapped_column(String(80), index=True)
    raw_tx: Mapped[str | None] = mapped_column(Text)
    chain_fee: Mapped[int | None] = mapped_column(BaseUnits)  # paid on chain, chain's unit
    broadcast_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    block_hash: Mapped[str | None] = mapped_column(String(80))
    confirmations: Mapped[int] = mapped_column(Integer, default=0)


class SendAttemptStatus(StrEnum):
    SIGNED = "signed"  # recorded, not known to be broadcast
    BROADCAST = "broadcast"
    MINED = "mined"
    REPLACED = "replaced"  # superseded by a higher fee under the same nonce
    DROPPED = "dropped"


class WithdrawalSendAttempt(Base):
    __tablename__ = "withdrawal_send_attempts"
    __table_args__ = (
        UniqueConstraint("withdrawal_id", "attempt", name="uq_withdrawal_send_attempts_attempt"),
        UniqueConstraint("network", "tx_hash", name="uq_withdrawal_send_attempts_tx"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    withdrawal_id: Mapped[int] = mapped_column(ForeignKey("withdrawals.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    network: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[int | None] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(80))
    raw_tx: Mapped[str] = mapped_column(Text)
    # EVM: max fee and tip per gas (wei) and gas limit; BTC: fee rate (sat/vB) and fee (sat).
    max_fee_per_gas: Mapped[int | None] = mapped_column(BaseUnits)
    max_priority_fee_per_gas: Mapped[int | None] = mapped_column(BaseUnits)
    gas_limit: Mapped[int | None] = mapped_column(BigInteger)
    fee_rate: Mapped[int | None] = mapped_column(BigInteger)
    fee: Mapped[int | None] = mapped_column(BaseUnits)
    status: Mapped[str] = mapped_column(String(16), default=SendAttemptStatus.SIGNED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    broadcast_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
