"""The billing store: a double-entry ledger, holds, escrows, usage, idempotency keys and caps.

Ledger (three nouns, as in hordak): ``LedgerAccount``, ``LedgerTransaction``, ``LedgerEntry``.

* An entry has separate, non-negative ``debit`` and ``credit`` columns; exactly one is positive.
* The entries of a transaction sum to zero per currency. PostgreSQL refuses an unbalanced
  transaction at commit (a deferred constraint trigger, migration 0003); on SQLite the posting
  function checks it before anything is written.
* An entry's currency is its account's currency (a composite foreign key).
* Entries and transactions are append-only (triggers refuse UPDATE and DELETE on both
  backends); a correction is a new transaction.
* Every transaction has a unique ``reference`` chosen by the caller: posting the same reference
  twice moves money once.

Balances are credit-minus-debit for every account. Agent wallets cache theirs in
``LedgerAccount.balance``, changed in the same database transaction as their entries by a
conditional ``UPDATE ... WHERE balance >= :x`` and guarded by ``CHECK (balance >= 0)``. Platform
accounts (clearing, holds, escrow, payable, revenue, adjustments, receivable) are shared by
every agent, so caching their totals would serialise every charge on one row: their balance
is ``NULL`` and is summed from entries when needed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime


class AccountKind(StrEnum):
    """What an account holds. Only ``WALLET`` accounts belong to an agent's balance."""

    WALLET = "wallet"  # an agent's prepaid balance in one currency
    DEPOSITS = "deposits"  # clearing: coins received on chain, per currency
    HOLDS = "holds"  # reserved for side-effecting calls in progress
    ESCROW = "escrow"  # slot prices of bookings not yet completed or refunded
    PAYABLE = "payable"  # owed to a specialist (or schedule-owning agent)
    REVENUE = "revenue"  # the platform's fees and commissions
    ADJUSTMENTS = "adjustments"  # operator credits and debits
    RECEIVABLE = "receivable"  # owed by an agent: reversed deposits already spent
    WITHDRAWING = "withdrawing"  # requested withdrawals and payouts not yet on chain
    WITHDRAWN = "withdrawn"  # sent to external addresses (the outflow to the chain)
    NETWORK_FEES = "network_fees"  # fees charged for withdrawals, paying the chain's fee
    FORFEITED = "forfeited"  # balances an owner chose to give up when closing an account


class TransactionKind(StrEnum):
    """The type of a ledger transaction, as shown in the agent's history."""

    DEPOSIT = "deposit"  # deposits clearing -> wallet
    CHARGE = "charge"  # wallet or hold -> revenue (a paid tool call)
    HOLD = "hold"  # wallet -> holds
    RELEASE = "release"  # holds -> wallet (the call failed or was abandoned)
    ESCROW = "escrow"  # wallet or hold -> escrow (a booking's slot price)
    REFUND = "refund"  # escrow -> wallet (a cancelled booking), remainder -> payable
    PAYOUT = "payout"  # escrow -> payable and revenue (a completed booking)
    ADJUSTMENT = "adjustment"  # operator credit or debit
    REVERSAL = "reversal"  # undoes a deposit reorged out of the chain
    WITHDRAWAL = "withdrawal"  # wallet or payable -> withdrawing (amount and fee)
    WITHDRAWN = "withdrawn"  # withdrawing -> withdrawn and network fees (confirmed on chain)
    WITHDRAW_RETURN = "withdraw_return"  # withdrawing -> back where it came from


class LedgerAccount(Base):
    """An account of the ledger, in one currency."""

    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_nonneg"),
        CheckConstraint("(kind = 'wallet') = (balance IS NOT NULL)", name="wallet_balance_cached"),
        UniqueConstraint("id", "currency", name="uq_ledger_accounts_id_currency"),
        Index("ix_ledger_accounts_agent", "agent_id", "kind"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # A readable unique name: "wallet:agent:12:USDC", "revenue:BTC", "payable:specialist:3:ETH".
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(8))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    specialist_id: Mapped[int | None] = mapped_column(ForeignKey("specialists.id"), index=True)
    # Cached credit-minus-debit for wallets; NULL for platform accounts.
    balance: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerTransaction(Base):
    """One balanced movement of money; the context of a set of entries."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint("amount >= 0", name="amount_nonneg"),
        Index("ix_ledger_transactions_agent", "agent_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    # Chosen by the caller; a retried posting with the same reference moves no more money.
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id"), index=True)
    call_id: Mapped[str | None] = mapped_column(String(64))
    tool: Mapped[str | None] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(8))
    # What moved, in base units of ``currency`` (the agent-facing figure of the transaction).
    amount: Mapped[int] = mapped_column(BigInteger)
    # The USD price or value in micro-dollars, and the rate used (USD micros per whole coin).
    price_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    rate: Mapped[int | None] = mapped_column(BigInteger)
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    memo: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerEntry(Base):
    """One leg of a transaction: a debit or a credit of one account."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint("debit >= 0 AND credit >= 0", name="sides_nonneg"),
        CheckConstraint("(debit = 0) <> (credit = 0)", name="one_side"),
        ForeignKeyConstraint(
            ["account_id", "currency"],
            ["ledger_accounts.id", "ledger_accounts.currency"],
            name="fk_ledger_entries_account_currency",
        ),
        Index("ix_ledger_entries_account", "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(BigIntPK)
    currency: Mapped[str] = mapped_column(String(8))
    debit: Mapped[int] = mapped_column(BigInteger, default=0)
    credit: Mapped[int] = mapped_column(BigInteger, default=0)


class HoldStatus(StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    RELEASED = "released"


class Hold(Base):
    """Money reserved from a wallet while a side-effecting call runs (two-phase transfer).

    It leaves ``pending`` exactly once, by a conditional update: captured when the call
    succeeds, released when it fails or when the sweeper finds it stale after a crash.
    """

    __tablename__ = "billing_holds"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_pos"),
        Index("ix_billing_holds_pending", "status", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    tool: Mapped[str] = mapped_column(String(64))
    wallet_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    currency: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)
    # The part of ``amount`` that is the tool's fee; the rest is destined for escrow.
    fee_amount: Mapped[int] = mapped_column(BigInteger)
    price_usd_micros: Mapped[int] = mapped_column(BigInteger)
    fee_usd_micros: Mapped[int] = mapped_column(BigInteger)
    rate: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.PENDING.value)
    hold_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EscrowStatus(StrEnum):
    HELD = "held"
    REFUNDED = "refunded"
    PAID_OUT = "paid_out"


class Escrow(Base):
    """A booking's slot price held between booking and completion or cancellation."""

    __tablename__ = "billing_escrows"
    __table_args__ = (CheckConstraint("amount >= 0", name="amount_nonneg"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    booking_id: Mapped[int] = mapped_column(ForeignKey("bookings.id"), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), index=True)
    wallet_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    currency: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)
    price_usd_micros: Mapped[int] = mapped_column(BigInteger)
    rate: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default=EscrowStatus.HELD.value)
    # How the escrow was settled: back to the agent, to the payee, and the platform's share.
    refunded: Mapped[int | None] = mapped_column(BigInteger)
    paid_to_payee: Mapped[int | None] = mapped_column(BigInteger)
    commission: Mapped[int | None] = mapped_column(BigInteger)
    escrow_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    settle_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsageRecord(Base):
    """One successful metered tool call: what it cost and who paid (free calls cost zero)."""

    __tablename__ = "billing_usage"
    __table_args__ = (Index("ix_billing_usage_agent_period", "agent_id", "period", "tool"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    tool: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM, UTC
    free: Mapped[bool] = mapped_column(Boolean, default=False)
    price_usd_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str | None] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger, default=0)
    transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class FreeQuotaUse(Base):
    """How many free calls of a tool an agent used in a month; bumped by a conditional update."""

    __tablename__ = "billing_free_quota"
    __table_args__ = (
        UniqueConstraint("agent_id", "tool", "period", name="uq_billing_free_quota_key"),
        CheckConstraint("used >= 0", name="used_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    tool: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(7))
    used: Mapped[int] = mapped_column(Integer, default=0)


class IdempotencyStatus(StrEnum):
    IN_FLIGHT = "in_flight"
    DONE = "done"


class IdempotencyKey(Base):
    """A client-chosen key of one call: in flight, or done with its stored result."""

    __tablename__ = "billing_idempotency_keys"
    __table_args__ = (
        UniqueConstraint("agent_id", "key", name="uq_billing_idempotency_keys_agent_key"),
        Index("ix_billing_idempotency_keys_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    key: Mapped[str] = mapped_column(String(255))
    tool: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=IdempotencyStatus.IN_FLIGHT.value)
    # Who holds the key while in flight; a stale owner can be replaced.
    lock_token: Mapped[str] = mapped_column(String(64))
    locked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    receipt: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SpendingCap(Base):
    """An owner's controls over one agent's money: optional daily and monthly USD caps on
    spending and on withdrawals (UTC days and months), and the codes that loosen them."""

    __tablename__ = "billing_spending_caps"

    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), primary_key=True)
    daily_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    monthly_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The owner's threshold for ``balance.low`` (None: the server's default).
    balance_low_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    # A raise asked for over REST, applied when the code mailed to the owner is confirmed
    # (None: that cap is to be removed).
    raise_daily_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    raise_monthly_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    raise_code_hash: Mapped[str | None] = mapped_column(String(128))
    raise_code_tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    raise_code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The owner's limits on what the agent withdraws per UTC day and month (USD micro-dollars
    # at each withdrawal's rate; None: no limit), and the raise of them waiting for the code.
    withdraw_daily_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    withdraw_monthly_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    raise_withdraw_daily_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    raise_withdraw_monthly_usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    # Giving up a balance on closing over REST: the code mailed to the owner.
    forfeit_code_hash: Mapped[str | None] = mapped_column(String(128))
    forfeit_code_tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    forfeit_code_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SpendingTally(Base):
    """USD spent by an agent in one UTC day (``YYYY-MM-DD``) or month (``YYYY-MM``)."""

    __tablename__ = "billing_spending_tally"
    __table_args__ = (
        UniqueConstraint("agent_id", "period", name="uq_billing_spending_tally_key"),
        CheckConstraint("spent_usd_micros >= 0", name="spent_nonneg"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    period: Mapped[str] = mapped_column(String(10))
    spent_usd_micros: Mapped[int] = mapped_column(BigInteger, default=0)
