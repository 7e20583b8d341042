"""Turning observed deposits into money, and taking it back when a reorg removes them.

``credit_confirmed`` posts a confirmed deposit to the ledger (``DepositFollowUp.credit``,
idempotent by reference) at the USD rate of that moment, has a ``pending_deposit`` agent
activated when the deposit is worth at least the activation amount, and records
``deposit.confirmed``. What is credited is the amount received on chain in base units,
rounded down (wei to gwei for ETH; the dust below one gwei stays on the deposit row); the
minimum deposit and the activation amount are checked against that credited amount.
``orphan`` marks a deposit whose block left the chain and, if it had been credited, reverses
it with a new ledger transaction (``DepositFollowUp.reverse``) and records
``deposit.reversed``; an agent that a deposit activated goes back to ``pending_deposit`` once
none of its credited deposits left reaches the activation amount (a deposit that activates
an account and is then reorged away must not leave the account open). Both claim the deposit
row with a conditional UPDATE first, so two watcher processes never post the same deposit
twice.

What a deposit changes outside the wallets (the ledger, the agent's account status, the
agent's event outbox) goes through ``DepositFollowUp``, a protocol the wallets own and the
service layer implements (``agent_server.services.deposits``); it runs in the crediting
transaction.
"""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import exists, select, update

from agent_server.kernel.logs import get_logger
from agent_server.kernel.money import amount_text, decimal_text, usd_text
from agent_server.kernel.store import UnitOfWork
from wallets.currencies import currency_info
from wallets.events import (
    DEPOSIT_CONFIRMED,
    DEPOSIT_REVERSED,
    DepositEventData,
    record_deposit_event,
)
from wallets.models import Deposit, DepositStatus
from wallets.rates import RateSource, base_units_to_usd

log = get_logger(__name__)


class DepositFollowUp(Protocol):
    """What a deposit does beyond the wallets, in the caller's transaction (no commit)."""

    async def credit(
        self,
        uow: UnitOfWork,
        *,
        agent_id: int,
        currency: str,
        amount: int,
        usd_micros: int,
        reference: str,
    ) -> int:
        """Credit the deposit to the agent's wallet in the ledger, idempotent by ``reference``;
        the ledger transaction's id."""

    async def reverse(self, uow: UnitOfWork, *, reference: str, reason: str) -> int | None:
        """Reverse the credit made under ``reference``; the reversal's id (None if none)."""

    async def lock_holder(self, uow: UnitOfWork, agent_id: int) -> None:
        """Hold the agent's row until the transaction ends: one funding decision at a time."""

    async def funded(self, uow: UnitOfWork, agent_id: int, note: str) -> bool:
        """A deposit worth the activation amount arrived: activate the agent if it awaits
        one; whether this activated it."""

    async def unfunded(self, uow: UnitOfWork, agent_id: int, note: str) -> bool:
        """No credited deposit funds the agent any longer: back to awaiting a deposit;
        whether this changed its status."""

    async def publish(self, uow: UnitOfWork, event: DepositEventData) -> None:
        """Tell the agent about a ``deposit.*`` event (its outbox)."""


def deposit_reference(deposit: Deposit) -> str:
    """The ledger reference of one crediting of ``deposit`` (a new one after each re-inclusion)."""
    base = f"{deposit.network}:{deposit.tx_hash}:{deposit.position}"
    return base if deposit.generation == 0 else f"{base}:g{deposit.generation}"


async def _claim(uow: UnitOfWork, deposit: Deposit, source: str, target: str) -> bool:
    """Move ``deposit`` from ``source`` to ``target`` status unless someone else did first."""
    now = uow.clock.now()
    values: dict[str, object] = {"status": target}
    if target in (DepositStatus.CREDITED, DepositStatus.BELOW_MINIMUM):
        values["confirmed_at"] = now
    if target == DepositStatus.ORPHANED:
        values["orphaned_at"] = now
    result = await uow.session.execute(
        update(Deposit)
        .where(
            Deposit.id == deposit.id,
            Deposit.status == source,
            Deposit.generation == deposit.generation,
            Deposit.block_hash == deposit.block_hash,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _event(
    kind: str, deposit: Deposit, confirmations: int, txn: int | None, activated: bool, at: str
) -> DepositEventData:
    info = currency_info(deposit.currency)
    credited, _ = info.chain_to_base(deposit.amount)
    return DepositEventData(
        kind=kind,
        deposit_id=deposit.id,
        agent_id=deposit.agent_id,
        currency=info.code,
        amount=credited,
        amount_on_chain=str(deposit.amount),
        usd_micros=deposit.usd_micros,
        network=deposit.network,
        tx_hash=deposit.tx_hash,
        position=deposit.position,
        block_number=deposit.block_number,
        confirmations=confirmations,
        ledger_transaction_id=txn,
        activated=activated,
        at=at,
    )


async def credit_confirmed(
    uow: UnitOfWork,
    deposit: Deposit,
    *,
    rates: RateSource,
    activation_usd_micros: int,
    confirmations: int,
    follow_up: DepositFollowUp,
) -> bool:
    """Credit a pending deposit that has its confirmations; False if it was not ours to credit.

    Runs in the caller's transaction; does not commit.
    """
    info = currency_info(deposit.currency)
    credited, dust = info.chain_to_base(deposit.amount)
    if credited < info.min_deposit:
        if await _claim(uow, deposit, DepositStatus.PENDING, DepositStatus.BELOW_MINIMUM):
            log.warning(
                "wallets.deposit_below_minimum",
                deposit_id=deposit.id,
                agent_id=deposit.agent_id,
                currency=info.code,
                amount=info.format_on_chain(deposit.amount),
                minimum=decimal_text(info.min_deposit, info.code),
            )
            return True
        return False
    if not await _claim(uow, deposit, DepositStatus.PENDING, DepositStatus.CREDITED):
        return False
    rate = rates.usd_micros_per_coin(info.code)
    usd = base_units_to_usd(credited, info.code, rate)
    reference = deposit_reference(deposit)
    txn = await follow_up.credit(
        uow,
        agent_id=deposit.agent_id,
        currency=info.code,
        amount=credited,
        usd_micros=usd,
        reference=reference,
    )
    activated = False
    if usd >= activation_usd_micros:
        # A reversal deciding meanwhile that nothing funds the agent waits for this credit
        # to commit, or this activation waits for its return to pending_deposit.
        await follow_up.lock_holder(uow, deposit.agent_id)
        activated = await follow_up.funded(
            uow,
            deposit.agent_id,
            f"deposit of {amount_text(credited, info.code)} (~{usd_text(usd)}) confirmed: "
            f"{reference}",
        )
    await uow.session.execute(
        update(Deposit)
        .where(Deposit.id == deposit.id)
        .values(
            rate_usd_micros=rate,
            usd_micros=usd,
            ledger_txn_id=txn,
            activated_agent=activated,
            dust=dust,
        )
        .execution_options(synchronize_session=False)
    )
    deposit.usd_micros = usd
    await record_deposit_event(
        uow,
        _event(
            DEPOSIT_CONFIRMED,
            deposit,
            confirmations,
            txn,
            activated,
            uow.clock.now().isoformat(),
        ),
        follow_up.publish,
    )
    log.info(
        "wallets.deposit_credited",
        deposit_id=deposit.id,
        agent_id=deposit.agent_id,
        currency=info.code,
        amount=decimal_text(credited, info.code),
        dust_on_chain=str(dust),
        usd_micros=usd,
        activated=activated,
        reference=reference,
    )
    return True


async def orphan(
    uow: UnitOfWork,
    deposit: Deposit,
    reason: str,
    *,
    activation_usd_micros: int,
    follow_up: DepositFollowUp,
) -> int | None:
    """Mark a deposit whose block left the chain; reverse its credit (and the activation it
    paid for, see the module docstring). The reversal's id.

    Runs in the caller's transaction; does not commit.
    """
    previous = deposit.status
    if previous == DepositStatus.ORPHANED:
        return None
    if not await _claim(uow, deposit, previous, DepositStatus.ORPHANED):
        return None
    reversal: int | None = None
    if previous == DepositStatus.CREDITED:
        reversal = await follow_up.reverse(uow, reference=deposit_reference(deposit), reason=reason)
        await uow.session.execute(
            update(Deposit)
            .where(Deposit.id == deposit.id)
            .values(reversal_txn_id=reversal)
            .execution_options(synchronize_session=False)
        )
        await record_deposit_event(
            uow,
            _event(DEPOSIT_REVERSED, deposit, 0, reversal, False, uow.clock.now().isoformat()),
            follow_up.publish,
        )
        await _unfund_if_activated(uow, deposit, activation_usd_micros, follow_up)
    log.warning(
        "wallets.deposit_orphaned",
        deposit_id=deposit.id,
        agent_id=deposit.agent_id,
        was=previous,
        reversal_txn_id=reversal,
        reason=reason,
    )
    return reversal


async def _unfund_if_activated(
    uow: UnitOfWork, deposit: Deposit, activation_usd_micros: int, follow_up: DepositFollowUp
) -> None:
    """After ``deposit``'s credit was reversed: if deposits activated its agent and no credited
    deposit left is worth the activation amount, the agent is pending a deposit again."""
    agent = deposit.agent_id
    await follow_up.lock_holder(uow, agent)  # one decision at a time (see credit_confirmed)
    mine = Deposit.agent_id == agent
    activated_by_deposit = exists().where(mine, Deposit.activated_agent.is_(True))
    still_funded = exists().where(
        mine,
        Deposit.status == DepositStatus.CREDITED,
        Deposit.usd_micros >= activation_usd_micros,
    )
    unfunded = (
        await uow.session.execute(select(activated_by_deposit & ~still_funded))
    ).scalar_one()
    if unfunded and await follow_up.unfunded(
        uow, agent, f"the deposit {deposit_reference(deposit)} that funded it left the chain"
    ):
        log.warning("wallets.agent_unfunded", agent_id=agent, deposit_id=deposit.id)
