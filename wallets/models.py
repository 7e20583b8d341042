"""Wallet tables: deposit addresses, observed deposits, chain checkpoints and deposit events.

- ``wallet_derivation_counters``: one row per chain holding the next HD index; an index is
  taken with one atomic ``UPDATE ... RETURNING`` and never handed out twice.
- ``deposit_addresses``: one address per agent and chain (ETH, USDT and USDC share the EVM
  address; BTC has its own), unique by agent, by index and by address.
- ``deposits``: every transfer to one of our addresses, unique by (network, tx hash,
  position) where position is the log index of an ERC-20 ``Transfer``, the output index
  (vout) of a Bitcoin output, or -1 for the native value of an EVM transaction. ``amount``
  is exactly what arrived, in the chain's unit (wei for ETH); the credit is that amount in
  base units rounded down (gwei for ETH) and the remainder, never credited, is ``dust``. The
  block hash is kept so a reorg is noticed; ``generation`` counts re-inclusions after a reorg.
- ``chain_checkpoints`` and ``chain_scanned_blocks``: the last block a watcher scanned and
  the hashes of recent blocks, so a restart resumes without gaps and a reorg finds its fork.
- ``chain_tokens``: the ERC-20 contracts the EVM watcher follows, per network.
- ``deposit_events``: ``deposit.confirmed`` / ``deposit.reversed`` records written in the
  crediting transaction, for the event delivery to pick up.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeEngine

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime


class BaseUnits(TypeDecorator[int]):
    """A non-negative integer amount too large for BIGINT (wei on chain): NUMERIC(78, 0) on
    PostgreSQL, decimal text on SQLite (whose NUMERIC would round through a float)."""

    impl = Numeric(78, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(80))
        return dialect.type_descriptor(Numeric(78, 0))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return str(int(value))
        return Decimal(int(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value)


class DepositStatus(StrEnum):
    PENDING = "pending"  # seen, waiting for confirmations
    CREDITED = "credited"  # confirmed and posted to the ledger
    BELOW_MINIMUM = "below_minimum"  # confirmed but smaller than the minimum deposit
    ORPHANED = "orphaned"  # its block left the chain; a credit was reversed


class DerivationCounter(Base):
    __tablename__ = "wallet_derivation_counters"

    chain: Mapped[str] = mapped_column(String(16), primary_key=True)
    next_index: Mapped[int] = mapped_column(BigInteger, default=0)


class DepositAddressRecord(Base):
    __tablename__ = "deposit_addresses"
    __table_args__ = (
        UniqueConstraint("agent_id", "chain", name="uq_deposit_addresses_agent_chain"),
        UniqueConstraint("chain", "derivation_index", name="uq_deposit_addresses_index"),
        UniqueConstraint("chain", "address", name="uq_deposit_addresses_address"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    agent_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("agents.id"))
    chain: Mapped[str] = mapped_column(String(16))
    derivation_index: Mapped[int] = mapped_column(BigInteger)
    address: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Deposit(Base):
    __tablename__ = "deposits"
    __table_args__ = (
        UniqueConstraint("network", "tx_hash", "position", name="uq_deposits_network_tx_position"),
        Index("ix_deposits_network_status", "network", "status"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    network: Mapped[str] = mapped_column(String(64))  # e.g. eip155:1, bitcoin:regtest
    tx_hash: Mapped[str] = mapped_column(String(80))
    position: Mapped[int] = mapped_column(Integer)
    agent_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("agents.id"), index=True)
    address: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BaseUnits)  # as received, in the chain's unit (wei)
    dust: Mapped[int] = mapped_column(BaseUnits, default=0)  # part of amount below 1 base unit
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(16), default=DepositStatus.PENDING.value)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    rate_usd_micros: Mapped[int | None] = mapped_column(BigInteger)  # per whole coin
    usd_micros: Mapped[int | None] = mapped_column(BigInteger)
    ledger_txn_id: Mapped[int | None] = mapped_column(BigInteger)
    reversal_txn_id: Mapped[int | None] = mapped_column(BigInteger)
    activated_agent: Mapped[bool] = mapped_column(default=False)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    orphaned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ChainCheckpoint(Base):
    __tablename__ = "chain_checkpoints"

    network: Mapped[str] = mapped_column(String(64), primary_key=True)
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_hash: Mapped[str] = mapped_column(String(80))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScannedBlock(Base):
    __tablename__ = "chain_scanned_blocks"

    network: Mapped[str] = mapped_column(String(64), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(80))


class ChainToken(Base):
    __tablename__ = "chain_tokens"
    __table_args__ = (UniqueConstraint("network", "contract", name="uq_chain_tokens_contract"),)

    network: Mapped[str] = mapped_column(String(64), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    contract: Mapped[str] = mapped_column(String(42))
    decimals: Mapped[int] = mapped_column(Integer)


class DepositEvent(Base):
    __tablename__ = "deposit_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    deposit_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("deposits.id"), index=True)
    agent_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("agents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # deposit.confirmed | deposit.reversed
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
