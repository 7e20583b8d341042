"""The chain-agnostic deposit watcher: scan, checkpoint, detect reorgs, confirm, credit.

A ``ChainSource`` (``wallets.evm.EvmSource``, ``wallets.btc.BtcSource``) reads blocks and
the transfers to our addresses in them. ``DepositWatcher.poll_once`` then:

1. checks that the checkpoint block is still on the chain; if not (a reorg), walks back
   through the stored hashes of recent blocks to the fork, marks every deposit above it
   orphaned (reversing the credited ones with new ledger transactions) and rewinds;
2. scans forward to the tip in batches. Each batch must link to the checkpoint by parent
   hash; its deposits, block hashes and the new checkpoint are written in ONE database
   transaction, so a watcher killed at any point resumes from the last committed batch,
   with no gap and no double record (deposits are unique by network, tx hash, position);
3. credits every pending deposit that has ``confirmations`` blocks (its own included), each
   in its own transaction, claimed by a conditional UPDATE so concurrent watchers credit it
   once.

Re-inclusion: a transfer seen again after its deposit was orphaned becomes pending again
with a new ``generation``, so its next credit has a new ledger reference.
"""

# Long by design: one watcher whose confirmation, reorg and re-inclusion rules read together.

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, UnitOfWork
from wallets.addresses import all_addresses
from wallets.crediting import DepositFollowUp, credit_confirmed, orphan
from wallets.currencies import Chain, currency_info
from wallets.models import ChainCheckpoint, Deposit, DepositStatus, ScannedBlock
from wallets.rates import RateSource

log = get_logger(__name__)


@dataclass(frozen=True)
class ObservedBlock:
    number: int
    hash: str
    parent_hash: str | None


@dataclass(frozen=True)
class ObservedTransfer:
    """Value sent to one of our addresses: an ERC-20 log, a native value, a BTC output."""

    tx_hash: str
    position: int  # log index, vout, or -1 for the native value of an EVM transaction
    address: str
    currency: str
    amount: int  # in the chain's unit (wei for ETH), exactly as transferred
    block_number: int
    block_hash: str


@dataclass
class ScanBatch:
    blocks: list[ObservedBlock]
    transfers: list[ObservedTransfer]


class ChainSource(Protocol):
    """One chain as the watcher reads it."""

    chain: Chain
    network: str  # e.g. "eip155:1", "bitcoin:mainnet"

    async def prepare(self, uow: UnitOfWork) -> None:
        """Load per-network configuration (token contracts) before a poll."""

    async def head(self) -> int: ...

    async def block_hash(self, number: int) -> str | None:
        """The canonical hash at ``number``; None above the tip."""

    async def scan(self, first: int, last: int, addresses: Mapping[str, int]) -> ScanBatch:
        """Blocks ``first..last`` and the transfers in them to ``addresses``."""

    async def aclose(self) -> None: ...


class DeepReorg(RuntimeError):
    """The chain forked below every block we remember: refuse to guess, an operator decides."""


@dataclass
class PollResult:
    head: int = -1
    scanned_to: int = -1
    seen: int = 0
    credited: int = 0
    orphaned: int = 0
    reorgs: int = 0
    complete: bool = True  # False when a batch did not link up and the scan stopped early
    credited_ids: list[int] = field(default_factory=list)


class DepositWatcher:
    """Watches one chain for deposits to our addresses and credits them once confirmed."""

    def __init__(
        self,
        db: Database,
        source: ChainSource,
        *,
        rates: RateSource,
        confirmations: int,
        activation_usd_micros: int,
        follow_up: DepositFollowUp,
        batch_blocks: int = 100,
        reorg_window: int = 256,
        start_block: int | None = None,
        initial_lookback: int = 100,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.db = db
        self.source = source
        self.rates = rates
        self.confirmations = confirmations
        self.activation_usd_micros = activation_usd_micros
        self.follow_up = follow_up
        self.batch_blocks = max(1, batch_blocks)
        self.reorg_window = max(reorg_window, confirmations + 1)
        self.start_block = start_block
        self.initial_lookback = initial_lookback

    @property
    def network(self) -> str:
        return self.source.network

    async def _checkpoint(self, uow: UnitOfWork) -> ChainCheckpoint | None:
        return await uow.session.get(ChainCheckpoint, self.network, populate_existing=True)

    async def poll_once(self) -> PollResult:
        """One pass: reorg check, scan to the tip, credit what is confirmed."""
        result = PollResult()
        # The tip is read BEFORE the addresses: every block up to it was mined before any
        # address allocated later existed, so no deposit to a new address is skipped.
        head = await self.source.head()
        result.head = head
        async with self.db.uow() as uow:
            await self.source.prepare(uow)
            addresses = await all_addresses(uow, self.source.chain.value)
            checkpoint = await self._checkpoint(uow)
            cp = (checkpoint.block_number, checkpoint.block_hash) if checkpoint else None
        if cp is not None and await self.source.block_hash(cp[0]) != cp[1]:
            cp = await self._rewind(cp, result)
        next_block = cp[0] + 1 if cp else self._first_block(head)
        result.scanned_to = cp[0] if cp else next_block - 1
        while next_block <= head:
            last = min(head, next_block + self.batch_blocks - 1)
            batch = await self.source.scan(next_block, last, addresses)
            if not self._links(batch, cp, next_block, last):
                log.info("wallets.scan_unlinked", network=self.network, first=next_block)
                result.complete = False
                break
            cp = await self._commit_batch(batch, cp, addresses, result)
            if cp is None:  # another watcher moved the checkpoint; next poll continues
                result.complete = False
                break
            next_block = cp[0] + 1
            result.scanned_to = cp[0]
        await self._credit_confirmed(head, result)
        return result

    def _first_block(self, head: int) -> int:
        if self.start_block is not None:
            return self.start_block
        return max(0, head - self.initial_lookback)

    @staticmethod
    def _links(batch: ScanBatch, cp: tuple[int, str] | None, first: int, last: int) -> bool:
        """Whether the batch is one unbroken chain from the checkpoint (no reorg mid-scan)."""
        if [b.number for b in batch.blocks] != list(range(first, last + 1)):
            return False
        previous = cp[1] if cp else None
        for block in batch.blocks:
            if previous is not None and block.parent_hash != previous:
                return False
            previous = block.hash
        hashes = {b.number: b.hash for b in batch.blocks}
        return all(hashes.get(t.block_number) == t.block_hash for t in batch.transfers)

    async def _commit_batch(
        self,
        batch: ScanBatch,
        cp: tuple[int, str] | None,
        addresses: Mapping[str, int],
        result: PollResult,
    ) -> tuple[int, str] | None:
        last = batch.blocks[-1]
        async with self.db.uow() as uow:
            if not await self._move_checkpoint(uow, cp, (last.number, last.hash)):
                return None
            for transfer in batch.transfers:
                if await self._record(uow, transfer, addresses):
                    result.seen += 1
            await self._remember_blocks(uow, batch.blocks)
            await uow.commit()
        return (last.number, last.hash)

    async def _move_checkpoint(
        self, uow: UnitOfWork, old: tuple[int, str] | None, new: tuple[int, str]
    ) -> bool:
        """Advance the checkpoint from exactly ``old``: a conditional write, so two watchers
        never both commit the same batch."""
        now = uow.clock.now()
        if old is None:
            dialect = uow.session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            done = await uow.session.execute(
                insert(ChainCheckpoint)
                .values(
                    network=self.network, block_number=new[0], block_hash=new[1], updated_at=now
                )
                .on_conflict_do_nothing(index_elements=["network"])
            )
        else:
            done = await uow.session.execute(
                update(ChainCheckpoint)
                .where(
                    ChainCheckpoint.network == self.network,
                    ChainCheckpoint.block_number == old[0],
                    ChainCheckpoint.block_hash == old[1],
                )
                .values(block_number=new[0], block_hash=new[1], updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    async def _record(
        self, uow: UnitOfWork, transfer: ObservedTransfer, addresses: Mapping[str, int]
    ) -> bool:
        """Store a transfer as a pending deposit; True if it is new or came back after a reorg."""
        existing = (
            await uow.session.execute(
                select(Deposit).where(
                    Deposit.network == self.network,
                    Deposit.tx_hash == transfer.tx_hash,
                    Deposit.position == transfer.position,
                )
            )
        ).scalar_one_or_none()
        agent_id = addresses.get(transfer.address)
        if agent_id is None:
            return False
        if existing is None:
            uow.session.add(
                Deposit(
                    network=self.network,
                    tx_hash=transfer.tx_hash,
                    position=transfer.position,
                    agent_id=agent_id,
                    address=transfer.address,
                    currency=transfer.currency,
                    amount=transfer.amount,
                    dust=currency_info(transfer.currency).chain_to_base(transfer.amount)[1],
                    block_number=transfer.block_number,
                    block_hash=transfer.block_hash,
                    status=DepositStatus.PENDING.value,
                    generation=0,
                    activated_agent=False,
                    seen_at=uow.clock.now(),
                )
            )
            await uow.session.flush()
            log.info(
                "wallets.deposit_seen",
                network=self.network,
                tx_hash=transfer.tx_hash,
                position=transfer.position,
                agent_id=agent_id,
                currency=transfer.currency,
                amount=str(transfer.amount),
                block=transfer.block_number,
            )
            return True
        if existing.status == DepositStatus.ORPHANED:
            await uow.session.execute(
                update(Deposit)
                .where(Deposit.id == existing.id, Deposit.status == DepositStatus.ORPHANED)
                .values(
                    status=DepositStatus.PENDING.value,
                    generation=Deposit.generation + 1,
                    block_number=transfer.block_number,
                    block_hash=transfer.block_hash,
                    orphaned_at=None,
                    confirmed_at=None,
                    ledger_txn_id=None,
                    reversal_txn_id=None,
                    usd_micros=None,
                    rate_usd_micros=None,
                    activated_agent=False,
                )
                .execution_options(synchronize_session=False)
            )
            log.info("wallets.deposit_reincluded", deposit_id=existing.id)
            return True
        return False  # a replay of what we already have

    async def _remember_blocks(self, uow: UnitOfWork, blocks: Sequence[ObservedBlock]) -> None:
        numbers = [b.number for b in blocks]
        await uow.session.execute(
            delete(ScannedBlock).where(
                ScannedBlock.network == self.network,
                (ScannedBlock.number >= min(numbers))
                | (ScannedBlock.number <= max(numbers) - self.reorg_window),
            )
        )
        uow.session.add_all(
            ScannedBlock(network=self.network, number=b.number, hash=b.hash) for b in blocks
        )
        await uow.session.flush()

    async def _rewind(self, cp: tuple[int, str], result: PollResult) -> tuple[int, str] | None:
        """The checkpoint's block left the chain: find the fork, orphan what was above it."""
        async with self.db.uow() as uow:
            remembered = (
                await uow.session.execute(
                    select(ScannedBlock.number, ScannedBlock.hash)
                    .where(ScannedBlock.network == self.network)
                    .order_by(ScannedBlock.number.desc())
                )
            ).all()
        fork: tuple[int, str] | None = None
        for number, block_hash in remembered:
            if await self.source.block_hash(number) == block_hash:
                fork = (int(number), str(block_hash))
                break
        if fork is None:
            raise DeepReorg(
                f"{self.network}: the chain no longer contains any of the last "
                f"{len(remembered)} blocks scanned (checkpoint {cp[0]}); is the node on "
                "another network? Deposits are left untouched."
            )
        log.warning("wallets.reorg", network=self.network, checkpoint=cp[0], fork_block=fork[0])
        result.reorgs += 1
        async with self.db.uow() as uow:
            gone = (
                (
                    await uow.session.execute(
                        select(Deposit).where(
                            Deposit.network == self.network,
                            Deposit.block_number > fork[0],
                            Deposit.status != DepositStatus.ORPHANED,
                        )
                    )
                )
                .scalars()
                .all()
            )
            for deposit in gone:
                await orphan(
                    uow,
                    deposit,
                    f"block {deposit.block_number} left the chain (reorg)",
                    activation_usd_micros=self.activation_usd_micros,
                    follow_up=self.follow_up,
                )
                result.orphaned += 1
            await uow.session.execute(
                delete(ScannedBlock).where(
                    ScannedBlock.network == self.network, ScannedBlock.number > fork[0]
                )
            )
            if not await self._move_checkpoint(uow, cp, fork):
                return None  # another watcher handled it
            await uow.commit()
        return fork

    async def _credit_confirmed(self, head: int, result: PollResult) -> None:
        deepest = head - self.confirmations + 1
        async with self.db.uow() as uow:
            ready = (
                (
                    await uow.session.execute(
                        select(Deposit.id)
                        .where(
                            Deposit.network == self.network,
                            Deposit.status == DepositStatus.PENDING,
                            Deposit.block_number <= deepest,
                        )
                        .order_by(Deposit.block_number, Deposit.id)
                    )
                )
                .scalars()
                .all()
            )
        for deposit_id in ready:
            async with self.db.uow() as uow:
                deposit = await uow.session.get(Deposit, deposit_id, populate_existing=True)
                if deposit is None or deposit.status != DepositStatus.PENDING:
                    continue
                done = await credit_confirmed(
                    uow,
                    deposit,
                    rates=self.rates,
                    activation_usd_micros=self.activation_usd_micros,
                    confirmations=head - deposit.block_number + 1,
                    follow_up=self.follow_up,
                )
                if done:
                    await uow.commit()
                    result.credited += 1
                    result.credited_ids.append(deposit_id)

    async def run(self, stop: asyncio.Event, interval: float = 5.0) -> None:
        """Poll until ``stop`` is set; errors are logged and retried on the next poll."""
        while not stop.is_set():
            try:
                outcome = await self.poll_once()
                if outcome.seen or outcome.credited or outcome.orphaned:
                    log.info(
                        "wallets.poll",
                        network=self.network,
                        head=outcome.head,
                        seen=outcome.seen,
                        credited=outcome.credited,
                        orphaned=outcome.orphaned,
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the node or database is down: try again later
                log.warning("wallets.poll_failed", network=self.network, error=repr(exc))
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
