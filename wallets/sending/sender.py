"""The withdrawal sender: sign, record, broadcast, follow to confirmation, exactly once.

Each pass (``WithdrawalSender.run_once``) first follows what it already signed, then sends
what is approved:

- **follow** (status ``sending`` or ``sent``): every recorded transaction of the withdrawal
  is looked up on the node by its hash. Mined: its block and confirmations are recorded
  (a reorg that moved it is simply a new block); with ``confirmations`` blocks it is
  ``confirmed`` (settled in the ledger) or, if it failed on chain, ``failed`` (the money
  returned). In the mempool: ``sent``; waiting longer than ``replace_after``, an EVM
  transaction is replaced by one with a higher fee under the SAME nonce. Known nowhere (never
  broadcast because the sender died, or dropped by a reorg): the EVM hot wallet's mined nonce
  tells whether that nonce was used; if not, the recorded raw transaction is broadcast again.
  Nothing is ever signed under a second nonce for the same withdrawal.
- **send** (status ``approved``): sign, then in ONE database transaction move the
  withdrawal to ``sending`` (a conditional UPDATE, so one sender wins) with its nonce, hash and
  raw transaction and insert the send attempt; only after that commit is it broadcast.
  Nonces are unique per hot wallet in the database, so two senders never share one.

- **after confirmation**, until ``reorg_window`` blocks deep: confirmations are counted on,
  and a transaction a reorg dropped is broadcast again from its recorded bytes.

What a withdrawal's steps do beyond its row (ledger, events) is the ``WithdrawalFollowUp`` the
service layer implements, called in the same transaction as the status change.

``AGENT_SERVER_SENDER_PAUSE_AT`` (``recorded`` or ``broadcast``) stops the sender right after
that step, for tests that kill it there.
"""

# Long by design: one sender state machine (record, sign, broadcast, confirm) in order.

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, UnitOfWork
from wallets.currencies import CURRENCIES, Chain
from wallets.models import ChainToken
from wallets.sending.chains import (
    BcoinSigner,
    BroadcastRefused,
    EvmSigner,
    Lookup,
    Payment,
    Seen,
    Signed,
)
from wallets.withdrawal_models import (
    SendAttemptStatus,
    Withdrawal,
    WithdrawalSendAttempt,
    WithdrawalStatus,
)

log = get_logger(__name__)

PAUSE_VARIABLE = "AGENT_SERVER_SENDER_PAUSE_AT"
FOLLOWED = (WithdrawalStatus.SENDING.value, WithdrawalStatus.SENT.value)


class WithdrawalFollowUp(Protocol):
    """What each step does beyond the withdrawal's row, in the caller's transaction."""

    async def sent(self, uow: UnitOfWork, withdrawal: Withdrawal) -> None: ...

    async def confirmed(self, uow: UnitOfWork, withdrawal: Withdrawal) -> bool:
        """Mark it confirmed and settle it; False when another process did first."""

    async def failed(self, uow: UnitOfWork, withdrawal: Withdrawal, reason: str) -> bool:
        """Mark it failed and return the money; False when another process did first."""


@dataclass
class SendResult:
    signed: int = 0
    broadcast: int = 0
    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    replaced: int = 0
    rebroadcast: int = 0


def _pause(point: str) -> None:
    if os.environ.get(PAUSE_VARIABLE) == point:
        print(f"sender paused at {point}", file=sys.stderr, flush=True)
        while True:  # a test kills the process here
            time.sleep(3600)


Signer = EvmSigner | BcoinSigner


class WithdrawalSender:
    """Sends the approved withdrawals of one chain (one hot wallet) and follows them."""

    def __init__(
        self,
        db: Database,
        signer: Signer,
        follow_up: WithdrawalFollowUp,
        *,
        confirmations: int,
        replace_after: float = 120.0,
        reorg_window: int = 64,
    ) -> None:
        self.db = db
        self.signer = signer
        self.follow_up = follow_up
        self.confirmations = max(1, confirmations)
        self.replace_after = timedelta(seconds=replace_after)
        # A confirmed withdrawal's transaction is still watched until this deep.
        self.reorg_window = max(reorg_window, self.confirmations + 1)
        self.currencies = tuple(c for c, i in CURRENCIES.items() if i.chain is signer.chain)

    @property
    def network(self) -> str:
        return self.signer.network

    async def run_once(self) -> SendResult:
        result = SendResult()
        for withdrawal_id in await self._ids(FOLLOWED):
            await self.follow(withdrawal_id, result)
        for withdrawal_id in await self._recent_confirmed():
            await self.recheck(withdrawal_id, result)
        for withdrawal_id in await self._ids((WithdrawalStatus.APPROVED.value,)):
            await self.send(withdrawal_id, result)
        return result

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # the node or the database is away: next pass retries
                log.warning("withdrawals.sender_pass_failed", network=self.network, error=repr(exc))
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    async def _ids(self, statuses: Sequence[str]) -> list[int]:
        async with self.db.uow() as uow:
            rows = await uow.session.execute(
                select(Withdrawal.id)
                .where(Withdrawal.status.in_(statuses), Withdrawal.currency.in_(self.currencies))
                .order_by(Withdrawal.id)
            )
            return [int(r) for r in rows.scalars()]

    # -- sending ----------------------------------------------------------------------

    async def _token(self, uow: UnitOfWork, currency: str) -> str | None:
        if currency not in ("USDT", "USDC"):
            return None
        contract = (
            await uow.session.execute(
                select(ChainToken.contract).where(
                    ChainToken.network == self.network, ChainToken.currency == currency
                )
            )
        ).scalar_one_or_none()
        if contract is None:
            raise RuntimeError(f"no {currency} contract is known on {self.network}")
        return str(contract)

    async def _next_nonce(self, uow: UnitOfWork) -> int:
        assert isinstance(self.signer, EvmSigner)
        recorded = (
            await uow.session.execute(
                select(func.max(Withdrawal.nonce)).where(
                    Withdrawal.from_address == self.signer.sender_key,
                )
            )
        ).scalar_one_or_none()
        on_chain = await self.signer.pending_nonce()
        return max(on_chain, -1 if recorded is None else int(recorded) + 1)

    async def send(self, withdrawal_id: int, result: SendResult) -> None:
        async with self.db.uow() as uow:
            w = await uow.session.get(Withdrawal, withdrawal_id, populate_existing=True)
            if w is None or w.status != WithdrawalStatus.APPROVED:
                return
            payment = Payment(w.currency, w.address, w.amount, await self._token(uow, w.currency))
            if isinstance(self.signer, EvmSigner):
                signed = await self.signer.sign(payment, await self._next_nonce(uow))
            else:
                signed = await self.signer.sign(payment)
            if not await self._record(uow, w, signed):
                return
            try:
                await uow.commit()
            except IntegrityError:  # another sender took this nonce first: next pass
                log.info("withdrawals.nonce_taken", withdrawal=w.public_id, nonce=signed.nonce)
                return
        result.signed += 1
        log.info(
            "withdrawals.signed",
            withdrawal=w.public_id,
            network=self.network,
            tx_hash=signed.tx_hash,
            nonce=signed.nonce,
        )
        _pause("recorded")
        if await self._broadcast(withdrawal_id, signed.tx_hash, signed.raw, result):
            await self.follow(withdrawal_id, result)  # the node has it: sent

    async def _record(self, uow: UnitOfWork, w: Withdrawal, signed: Signed) -> bool:
        now = uow.clock.now()
        claimed = await uow.session.execute(
            update(Withdrawal)
            .where(Withdrawal.id == w.id, Withdrawal.status == WithdrawalStatus.APPROVED.value)
            .values(
                status=WithdrawalStatus.SENDING.value,
                claim_token=secrets.token_hex(8),
                claimed_at=now,
                from_address=self.signer.sender_key,
                nonce=signed.nonce,
                tx_hash=signed.tx_hash,
                raw_tx=signed.raw,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return False
        attempt = (
            await uow.session.execute(
                select(func.coalesce(func.max(WithdrawalSendAttempt.attempt), 0)).where(
                    WithdrawalSendAttempt.withdrawal_id == w.id
                )
            )
        ).scalar_one()
        uow.session.add(
            WithdrawalSendAttempt(
                withdrawal_id=w.id,
                attempt=int(attempt) + 1,
                network=self.network,
                nonce=signed.nonce,
                tx_hash=signed.tx_hash,
                raw_tx=signed.raw,
                max_fee_per_gas=signed.max_fee_per_gas,
                max_priority_fee_per_gas=signed.max_priority_fee_per_gas,
                gas_limit=signed.gas_limit,
                fee_rate=signed.fee_rate,
                fee=signed.fee,
                status=SendAttemptStatus.SIGNED.value,
                created_at=now,
            )
        )
        await uow.session.flush()
        return True

    async def _broadcast(
        self, withdrawal_id: int, tx_hash: str, raw: str, result: SendResult
    ) -> bool:
        try:
            await self.signer.broadcast(raw)
        except BroadcastRefused as exc:
            await self._refused(withdrawal_id, tx_hash, str(exc))
            return False
        result.broadcast += 1
        _pause("broadcast")
        async with self.db.uow() as uow:
            now = uow.clock.now()
            await uow.session.execute(
                update(WithdrawalSendAttempt)
                .where(
                    WithdrawalSendAttempt.withdrawal_id == withdrawal_id,
                    WithdrawalSendAttempt.tx_hash == tx_hash,
                    WithdrawalSendAttempt.status == SendAttemptStatus.SIGNED.value,
                )
                .values(status=SendAttemptStatus.BROADCAST.value, broadcast_at=now)
                .execution_options(synchronize_session=False)
            )
            await uow.session.execute(
                update(Withdrawal)
                .where(Withdrawal.id == withdrawal_id)
                .values(broadcast_at=func.coalesce(Withdrawal.broadcast_at, now), updated_at=now)
                .execution_options(synchronize_session=False)
            )
            await uow.commit()
        return True

    async def _refused(self, withdrawal_id: int, tx_hash: str, reason: str) -> None:
        """The node refuses the recorded payment because its inputs are spent: by itself
        (mined, and the wallet has not caught up) or by another payment. Signing again could
        pay twice, so the withdrawal stays as it is and an operator decides."""
        log.error(
            "withdrawals.broadcast_refused",
            withdrawal_id=withdrawal_id,
            tx_hash=tx_hash,
            reason=reason,
            message="left in sending: check the hot wallet's transactions before any retry",
        )

    # -- after confirmation -----------------------------------------------------------

    async def _recent_confirmed(self) -> list[int]:
        async with self.db.uow() as uow:
            rows = await uow.session.execute(
                select(Withdrawal.id)
                .where(
                    Withdrawal.status == WithdrawalStatus.CONFIRMED.value,
                    Withdrawal.currency.in_(self.currencies),
                    Withdrawal.raw_tx.is_not(None),
                    Withdrawal.confirmations < self.reorg_window,
                )
                .order_by(Withdrawal.id)
            )
            return [int(r) for r in rows.scalars()]

    async def recheck(self, withdrawal_id: int, result: SendResult) -> None:
        """A confirmed withdrawal inside the reorg window: its confirmations are counted on;
        if a reorg dropped its transaction, the recorded one is broadcast again (the ledger
        stays settled: the same transaction pays the same address)."""
        async with self.db.uow() as uow:
            w = await uow.session.get(Withdrawal, withdrawal_id, populate_existing=True)
            if w is None or w.tx_hash is None or w.raw_tx is None:
                return
            uow.session.expunge(w)
        seen = await self.signer.lookup(w.tx_hash)
        values: dict[str, object]
        if seen.seen is Seen.MINED:
            assert seen.block_number is not None
            head = await self.signer.head()
            values = {
                "block_number": seen.block_number,
                "block_hash": seen.block_hash,
                "confirmations": max(0, head - seen.block_number + 1),
            }
        elif seen.seen is Seen.PENDING:
            values = {"block_number": None, "block_hash": None, "confirmations": 0}
        else:
            if isinstance(self.signer, EvmSigner) and w.nonce is not None:
                if await self.signer.mined_nonce() > w.nonce:
                    log.error(  # nothing can be sent under that nonce again
                        "withdrawals.nonce_used_elsewhere", withdrawal=w.public_id, nonce=w.nonce
                    )
                    return
            log.warning("withdrawals.confirmed_dropped", withdrawal=w.public_id, tx_hash=w.tx_hash)
            try:
                await self.signer.broadcast(w.raw_tx)
            except BroadcastRefused as exc:
                await self._refused(w.id, w.tx_hash, str(exc))
                return
            result.rebroadcast += 1
            values = {"block_number": None, "block_hash": None, "confirmations": 0}
        async with self.db.uow() as uow:
            await uow.session.execute(
                update(Withdrawal)
                .where(
                    Withdrawal.id == w.id,
                    Withdrawal.status == WithdrawalStatus.CONFIRMED.value,
                    Withdrawal.tx_hash == w.tx_hash,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            await uow.commit()

    # -- following --------------------------------------------------------------------

    async def follow(self, withdrawal_id: int, result: SendResult) -> None:
        async with self.db.uow() as uow:
            w = await uow.session.get(Withdrawal, withdrawal_id, populate_existing=True)
            if w is None or w.status not in FOLLOWED:
                return
            attempts = list(
                (
                    await uow.session.execute(
                        select(WithdrawalSendAttempt)
                        .where(WithdrawalSendAttempt.withdrawal_id == w.id)
                        .where(WithdrawalSendAttempt.status != SendAttemptStatus.DROPPED.value)
                        .order_by(WithdrawalSendAttempt.attempt)
                    )
                ).scalars()
            )
            uow.session.expunge_all()
        if not attempts:
            return
        seen: list[tuple[WithdrawalSendAttempt, Lookup]] = [
            (a, await self.signer.lookup(a.tx_hash)) for a in attempts
        ]
        mined = [(a, s) for a, s in seen if s.seen is Seen.MINED]
        if mined:
            await self._mined(w, mined[0][0], mined[0][1], result)
            return
        latest = attempts[-1]
        if any(s.seen is Seen.PENDING for _, s in seen):
            await self._pending(w, latest, result)
            return
        # Known nowhere: never broadcast (a crash), or dropped from the chain by a reorg.
        if isinstance(self.signer, EvmSigner) and w.nonce is not None:
            if await self.signer.mined_nonce() > w.nonce:
                # The nonce is used but none of our transactions is found: never sign again.
                log.error(
                    "withdrawals.nonce_used_elsewhere",
                    withdrawal=w.public_id,
                    nonce=w.nonce,
                    message="an operator must check the hot wallet's transactions",
                )
                return
        log.info("withdrawals.rebroadcast", withdrawal=w.public_id, tx_hash=latest.tx_hash)
        if await self._broadcast(w.id, latest.tx_hash, latest.raw_tx, result):
            result.rebroadcast += 1
            await self._clear_block(w.id)

    async def _clear_block(self, withdrawal_id: int) -> None:
        async with self.db.uow() as uow:
            await uow.session.execute(
                update(Withdrawal)
                .where(Withdrawal.id == withdrawal_id)
                .values(block_number=None, block_hash=None, confirmations=0)
                .execution_options(synchronize_session=False)
            )
            await uow.commit()

    async def _to_sent(self, uow: UnitOfWork, w: Withdrawal, values: dict[str, object]) -> bool:
        """Move ``sending`` to ``sent`` (with ``values``) and tell the follow-up, once."""
        now = uow.clock.now()
        moved = await uow.session.execute(
            update(Withdrawal)
            .where(Withdrawal.id == w.id, Withdrawal.status == WithdrawalStatus.SENDING.value)
            .values(status=WithdrawalStatus.SENT.value, sent_at=now, updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if moved.rowcount != 1:  # type: ignore[attr-defined]
            return False
        fresh = await uow.session.get(Withdrawal, w.id, populate_existing=True)
        assert fresh is not None
        await self.follow_up.sent(uow, fresh)
        return True

    async def _pending(
        self, w: Withdrawal, latest: WithdrawalSendAttempt, result: SendResult
    ) -> None:
        async with self.db.uow() as uow:
            if await self._to_sent(uow, w, {}):
                result.sent += 1
            elif w.block_number is not None:  # it was mined, a reorg put it back in the pool
                await uow.session.execute(
                    update(Withdrawal)
                    .where(Withdrawal.id == w.id)
                    .values(block_number=None, block_hash=None, confirmations=0)
                    .execution_options(synchronize_session=False)
                )
            await uow.commit()
            now = uow.clock.now()
        since = latest.broadcast_at or latest.created_at
        if (
            isinstance(self.signer, EvmSigner)
            and w.nonce is not None
            and now - since >= self.replace_after
        ):
            await self._replace(w, latest, result)

    async def _replace(
        self, w: Withdrawal, latest: WithdrawalSendAttempt, result: SendResult
    ) -> None:
        """Outbid a stuck transaction under the same nonce: recorded first, then broadcast."""
        assert isinstance(self.signer, EvmSigner) and w.nonce is not None
        async with self.db.uow() as uow:
            token = await self._token(uow, w.currency)
        payment = Payment(w.currency, w.address, w.amount, token)
        signed = await self.signer.sign(
            payment,
            w.nonce,
            replacing=(int(latest.max_fee_per_gas or 0), int(latest.max_priority_fee_per_gas or 0)),
        )
        async with self.db.uow() as uow:
            now = uow.clock.now()
            uow.session.add(
                WithdrawalSendAttempt(
                    withdrawal_id=w.id,
                    attempt=latest.attempt + 1,
                    network=self.network,
                    nonce=w.nonce,
                    tx_hash=signed.tx_hash,
                    raw_tx=signed.raw,
                    max_fee_per_gas=signed.max_fee_per_gas,
                    max_priority_fee_per_gas=signed.max_priority_fee_per_gas,
                    gas_limit=signed.gas_limit,
                    status=SendAttemptStatus.SIGNED.value,
                    created_at=now,
                )
            )
            await uow.session.execute(
                update(Withdrawal)
                .where(Withdrawal.id == w.id, Withdrawal.status.in_(FOLLOWED))
                .values(tx_hash=signed.tx_hash, raw_tx=signed.raw, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            try:
                await uow.commit()
            except IntegrityError:  # another sender replaced it first
                return
        result.replaced += 1
        log.info(
            "withdrawals.replaced",
            withdrawal=w.public_id,
            nonce=w.nonce,
            old=latest.tx_hash,
            new=signed.tx_hash,
        )
        await self._broadcast(w.id, signed.tx_hash, signed.raw, result)

    async def _mined(
        self, w: Withdrawal, attempt: WithdrawalSendAttempt, seen: Lookup, result: SendResult
    ) -> None:
        assert seen.block_number is not None
        head = await self.signer.head()
        confirmations = max(0, head - seen.block_number + 1)
        chain = {
            "tx_hash": attempt.tx_hash,
            "raw_tx": attempt.raw_tx,
            "block_number": seen.block_number,
            "block_hash": seen.block_hash,
            "confirmations": confirmations,
            "chain_fee": seen.fee,
        }
        async with self.db.uow() as uow:
            if await self._to_sent(uow, w, chain):
                result.sent += 1
            else:
                await uow.session.execute(
                    update(Withdrawal)
                    .where(Withdrawal.id == w.id, Withdrawal.status == WithdrawalStatus.SENT.value)
                    .values(**chain, updated_at=uow.clock.now())
                    .execution_options(synchronize_session=False)
                )
            await self._mark_attempts(uow, w.id, attempt.id)
            if confirmations >= self.confirmations:
                if seen.succeeded:
                    if await self._finish(uow, w, WithdrawalStatus.CONFIRMED, ""):
                        result.confirmed += 1
                else:
                    reason = f"the transaction {attempt.tx_hash} failed on chain"
                    if await self._finish(uow, w, WithdrawalStatus.FAILED, reason):
                        result.failed += 1
            await uow.commit()

    async def _mark_attempts(self, uow: UnitOfWork, withdrawal_id: int, mined_id: int) -> None:
        await uow.session.execute(
            update(WithdrawalSendAttempt)
            .where(
                WithdrawalSendAttempt.withdrawal_id == withdrawal_id,
                WithdrawalSendAttempt.id == mined_id,
            )
            .values(status=SendAttemptStatus.MINED.value)
            .execution_options(synchronize_session=False)
        )
        await uow.session.execute(
            update(WithdrawalSendAttempt)
            .where(
                WithdrawalSendAttempt.withdrawal_id == withdrawal_id,
                WithdrawalSendAttempt.id != mined_id,
                WithdrawalSendAttempt.status != SendAttemptStatus.DROPPED.value,
            )
            .values(status=SendAttemptStatus.REPLACED.value)
            .execution_options(synchronize_session=False)
        )

    async def _finish(
        self, uow: UnitOfWork, w: Withdrawal, status: WithdrawalStatus, reason: str
    ) -> bool:
        """Confirmed or failed: the follow-up changes the status (conditionally, once) and
        settles or returns the money in this transaction."""
        fresh = await uow.session.get(Withdrawal, w.id, populate_existing=True)
        if fresh is None or fresh.status != WithdrawalStatus.SENT:
            return False
        if status is WithdrawalStatus.CONFIRMED:
            done = await self.follow_up.confirmed(uow, fresh)
        else:
            done = await self.follow_up.failed(uow, fresh, reason)
        if done:
            log.info("withdrawals.finished", withdrawal=w.public_id, status=status.value)
        return done


__all__ = ["Chain", "SendResult", "WithdrawalFollowUp", "WithdrawalSender"]
