"""``run_metered``: one admitted call, charged exactly once if, and only if, it succeeds.

Read tools (no hold in the price list)::

    one transaction: gate.before_work -> take a free call of the month's quota or choose the
    paying wallet -> run the operation -> charge the paying wallet (wallet -> revenue)
    -> record usage -> store the idempotency result -> gate.before_commit -> commit

Held tools (``hold = true``, or a slot price to escrow): the gate's checks, the key's claim, the
admission's ``price_lookup`` and the hold (``holds.hold_in``) in one committed transaction
(``_admit``), then the operation, the capture and the usage row in another; on failure the
hold is released.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from agent_server.kernel.errors import InsufficientFunds, RateLimited
from agent_server.kernel.logs import get_logger
from agent_server.kernel.store import Database, UnitOfWork
from billing import idempotency
from billing.caps import add_spending
from billing.config import BillingConfig
from billing.ledger import credit, debit, post, system_account
from billing.meter.admission import Admission, CallGate
from billing.meter.calls import Metered, MeteredCall, Operation, Receipt, record_usage
from billing.meter.holds import (
    RACE_ATTEMPTS,
    HoldLost,
    LostRace,
    capture,
    hold_in,
    outbid,
    place_hold,
    release_hold,
)
from billing.meter.payers import Payer, choose_payer, insufficient_funds, read_wallets
from billing.meter.quota import free_applies, take_free_call
from billing.models import AccountKind, Hold, TransactionKind
from billing.prices import ToolPrice

log = get_logger(__name__)

HOLD_ATTEMPTS = 2
"""Runs of a held call whose hold the sweeper keeps releasing before it gives up."""
HOLD_RETRY_AFTER = 60
"""Seconds an agent is told to wait when a call lost its payment reservation every time."""


async def run_metered(
    db: Database, admission: Admission, operation: Operation, *, config: BillingConfig
) -> Metered:
    """Run ``operation`` for the admitted call and charge for it exactly once if it succeeds.

    While a call with an idempotency key runs, its key's claim is renewed every
    ``key_renew_every``. Raises what the gate and the operation raise (after releasing any
    hold), ``InsufficientFunds``, ``SpendingCapReached``, ``IdempotencyMismatch``, and
    ``RateLimited`` for a held call whose hold the sweeper released twice while it ran."""
    price = config.prices.for_tool(admission.tool)
    if admission.price_lookup is not None and not price.hold:
        # Whether the call is held at all depends on its extra price: read it first.
        async with db.uow() as uow:
            admission = await admission.priced(uow, price, config)
    admission.check_max_price(price, config)
    held = admission.held(price)
    gate = admission.gate
    claimed: idempotency.Claim | idempotency.Replay | None = None
    first_hold: Hold | None = None
    if gate is not None and (held or admission.idempotency_key is not None):
        # The rate count, the key's claim, the extra price and a held call's hold, committed
        # together before the work.
        admission, claimed, first_hold = await _admit(db, admission, price, config, gate)
        gate = None
    elif admission.idempotency_key is not None or admission.price_lookup is not None:
        admission, claimed, first_hold = await _admit(db, admission, price, config, None)
    claim: idempotency.Claim | None = None
    if claimed is not None:
        if isinstance(claimed, idempotency.Replay):
            stored = claimed.receipt
            return Metered(
                result=claimed.result,
                receipt=Receipt(**stored) if stored else None,
                replayed=True,
            )
        claim = claimed
    run = _Run(db, admission, operation, config, price, claim, gate)
    if claim is None:
        return await (run.held(first_hold) if held else run.read())
    try:
        async with idempotency.leased(db, claim, config.key_renew_every):
            return await (run.held(first_hold) if held else run.read())
    except BaseException:
        if first_hold is not None:
            # Stopped before ``held`` took the hold over (a no-op once the call settled it).
            await release_hold(db, first_hold)
        await idempotency.abandon(db, claim)
        raise


async def _admit(
    db: Database,
    admission: Admission,
    price: ToolPrice,
    config: BillingConfig,
    gate: CallGate | None,
) -> tuple[Admission, idempotency.Claim | idempotency.Replay | None, Hold | None]:
    """In one committed transaction before the work: the gate's read-ahead and count, the
    key's claim, the extra price, and a held call's hold (none for a replay). A hold that
    loses the race for its wallet rolls all of it back and tries again (``RACE_ATTEMPTS``);
    then the call is refused for insufficient funds."""
    held = admission.held(price)
    for _ in range(RACE_ATTEMPTS):
        claimed: idempotency.Claim | idempotency.Replay | None = None
        hold: Hold | None = None
        try:
            async with db.uow() as uow:
                if gate is not None:
                    await gate.before_work(uow)
                if admission.idempotency_key is not None:
                    claimed = await _claim(uow, admission, config)
                if not isinstance(claimed, idempotency.Replay):
                    admission = await admission.priced(uow, price, config)
                    if held:
                        hold = await hold_in(
                            uow,
                            admission,
                            call_id=uuid.uuid4().hex,
                            fee_usd_micros=price.price_usd_micros,
                            config=config,
                        )
                if gate is not None:
                    await gate.before_commit(uow)
                await uow.commit()
            return admission, claimed, hold
        except LostRace:
            continue
    raise await outbid(db, admission, price.price_usd_micros, config)


async def _claim(
    uow: UnitOfWork, admission: Admission, config: BillingConfig
) -> idempotency.Claim | idempotency.Replay:
    assert admission.idempotency_key is not None
    return await idempotency.claim_in(
        uow,
        agent_id=admission.agent_id,
        key=admission.idempotency_key,
        tool=admission.tool,
        arguments=admission.arguments,
        stale_after=config.stale_key_after,
    )


@dataclass(slots=True)
class _Run:
    """One call's run, after its gate and idempotency claim: ``read`` or ``held``."""

    db: Database
    admission: Admission
    operation: Operation
    config: BillingConfig
    price: ToolPrice
    claim: idempotency.Claim | None
    gate: CallGate | None  # the admission's gate, while it still rides in the call's transaction

    async def read(self) -> Metered:
        """A read tool's call: the operation and its charge in one transaction. If a
        concurrent call empties the chosen wallet in between, the whole call starts over once
        with fresh balances (read tools change nothing, so running it again is harmless)."""
        call_id = uuid.uuid4().hex
        for _ in range(RACE_ATTEMPTS):
            try:
                return await self._read_once(call_id)
            except LostRace:
                continue
        admission = self.admission
        async with self.db.uow() as uow:
            raise await insufficient_funds(
                uow,
                admission.agent_id,
                admission.tool,
                self.price.price_usd_micros,
                None,
                self.config,
            )

    async def _read_once(self, call_id: str) -> Metered:
        admission, price, config = self.admission, self.price, self.config
        gate = self.gate
        async with self.db.uow() as uow:
            if gate is not None:
                await gate.before_work(uow)
            payer: Payer | None = None
            free_left = False
            if price.paid:
                # Refuse before doing the work; the conditional debit after it decides.
                free_left, payer = await self._free_or_payer(uow)
            call = MeteredCall(uow, admission.agent_id, admission.tool, call_id)
            result = await self.operation(call)
            receipt: Receipt | None = None
            txn: int | None = None
            if free_left and await take_free_call(uow, admission.agent_id, price):
                receipt = Receipt(call_id, admission.tool, 0, None, 0, None, free=True)
            elif price.paid:
                if payer is None:  # the last free call went to a concurrent call meanwhile
                    payer = await choose_payer(
                        uow,
                        admission.agent_id,
                        admission.tool,
                        price.price_usd_micros,
                        None,
                        config,
                    )
                receipt, txn = await self._charge(uow, call, payer)
            # A read call's commit need not wait for the disk unless settings say so
            # (``Admission.durable``): the usage row's insert turns the wait off.
            await record_usage(uow, call, receipt, txn, flush_wait=admission.durable)
            if self.claim is not None:
                await idempotency.complete(
                    uow, self.claim, result, receipt.to_dict() if receipt else None
                )
            if gate is not None:
                await gate.before_commit(uow)
            await uow.commit()
        return Metered(result=result, receipt=receipt)

    async def _free_or_payer(self, uow: UnitOfWork) -> tuple[bool, Payer | None]:
        """Before a paid read call's work, in one read: whether a free call of this month's
        quota is left (taken later by ``take_free_call``) or else the wallet that will pay.
        ``InsufficientFunds`` when neither."""
        admission, price = self.admission, self.price
        free = free_applies(price, held=False)
        wallets = await read_wallets(uow, admission.agent_id, price if free else None)
        if free and (wallets.quota_used or 0) < price.free_per_month:
            return True, None
        payer = await choose_payer(
            uow,
            admission.agent_id,
            admission.tool,
            price.price_usd_micros,
            None,
            self.config,
            wallets,
        )
        return False, payer

    async def _charge(
        self, uow: UnitOfWork, call: MeteredCall, payer: Payer
    ) -> tuple[Receipt, int]:
        """Charge a read tool's successful call in its transaction. ``payer`` was chosen
        before the operation ran; the conditional debit still decides, so a wallet emptied
        meanwhile by a concurrent call refuses the charge (``LostRace``)."""
        wallet, priced = payer.wallet, payer.price
        await add_spending(uow, call.agent_id, priced.total_usd_micros, uow.clock.now(), payer.caps)
        revenue = await system_account(uow, AccountKind.REVENUE, wallet.currency)
        try:
            posted = await post(
                uow,
                kind=TransactionKind.CHARGE,
                reference=f"charge:{call.call_id}",
                legs=[debit(wallet, priced.fee), credit(revenue, priced.fee)],
                currency=wallet.currency,
                amount=priced.fee,
                agent_id=call.agent_id,
                call_id=call.call_id,
                tool=call.tool,
                price_usd_micros=priced.fee_usd_micros,
                rate=priced.rate,
                memo=f"{call.tool} call",
            )
        except InsufficientFunds:
            raise LostRace from None
        await self.admission.debited(
            uow,
            wallet,
            posted.balances,
            priced.fee,
            priced.rate,
            self.config,
            payer.caps.balance_low if payer.caps else None,
        )
        receipt = Receipt(
            call_id=call.call_id,
            tool=call.tool,
            price_usd_micros=priced.fee_usd_micros,
            currency=wallet.currency,
            amount=priced.fee,
            balance_after=posted.balances[wallet.id],
            rate=priced.rate,
        )
        return receipt, posted.transaction_id

    async def held(self, first: Hold | None = None) -> Metered:
        """A side-effecting call: its whole price held in a committed transaction, then the
        operation and the capture in another. A call that ran so long that the sweeper
        released its hold meanwhile is rolled back and starts over once with a new hold and
        call id (the operation's work was undone, so running it again is safe); if that
        happens again, the server is too busy to finish it and the agent is told to retry."""
        admission = self.admission
        for attempt in range(HOLD_ATTEMPTS):
            if attempt == 0 and first is not None:
                hold = first  # placed with the key's claim (``_admit``)
            else:
                hold = await place_hold(
                    self.db,
                    admission,
                    call_id=uuid.uuid4().hex,
                    fee_usd_micros=self.price.price_usd_micros,
                    config=self.config,
                )
            call_id = hold.call_id
            try:
                async with self.db.uow() as uow:
                    call = MeteredCall(uow, admission.agent_id, admission.tool, call_id, hold=hold)
                    result = await self.operation(call)
                    receipt, txn = await capture(uow, call, hold)
                    await record_usage(uow, call, receipt, txn)
                    if self.claim is not None:
                        await idempotency.complete(uow, self.claim, result, receipt.to_dict())
                    await uow.commit()
            except HoldLost:
                log.warning(
                    "billing.hold_lost", tool=admission.tool, call_id=call_id, attempt=attempt + 1
                )
                continue
            except BaseException:
                await release_hold(self.db, hold)
                raise
            return Metered(result=result, receipt=receipt)
        raise RateLimited(
            f"The server is too busy to finish this {admission.tool} call: it ran so long that "
            f"its payment reservation was released, twice. Nothing was charged or changed; "
            f"retry in {HOLD_RETRY_AFTER} seconds.",
            {"retry_after": HOLD_RETRY_AFTER, "tool": admission.tool},
        )
