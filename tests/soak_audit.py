"""The soak's audit: the database checked against itself and against what the clients saw.

``audit(db, agents, calls, received, pepper)`` returns an ``AuditReport`` whose ``problems``
is empty when all of this holds:

* every ledger transaction sums to zero in each currency;
* every wallet's cached balance equals the sum of its entries, and replaying its entries in
  order never takes it below zero; the holds account holds exactly the pending holds and the
  escrow account exactly the held escrows;
* charges equal the paid successes the clients saw. A call whose outcome the client could not
  know (cut off by a disconnect, or in flight to the killed server) may have been charged at
  most once: a keyed call (book-slot, create-schedule) only through its idempotency key's
  stored receipt, an unkeyed one only as one of the unexplained usage records of that agent
  and tool, never more of them than such calls;
* every priced booking has its escrow and every escrow its booking (a rescheduled booking's
  escrow moved to its successor), held while the booking holds a seat, refunded once it is
  canceled; no slot has more seat-holding bookings than seats;
* whatever raced (``booking_consistency``): every active (pending, accepted) or disputed
  priced booking has exactly one escrow, held; a completed one holds it at most until the
  dispute window passed, then it is paid out; no other booking has a held one; no booking's
  escrow is taken or settled by more than one ledger transaction (nothing paid twice); an
  open dispute stands behind every disputed booking and a resolved one, whose refund is the
  escrow's, behind every settled dispute; each booking's history is one chain of transitions
  from its creation to its status; and the outbox holds exactly one booking event per
  transition and recipient (and one review.created per review);
* with the booking clock's times (``Deadlines``, the soak's): nothing is held past its time,
  no pending booking past its TTL or start, no accepted one past its auto-completion, no
  completed one's escrow past its dispute window (each with a grace of one clock tick);
* every outbox event is delivered or pending (none failed or skipped), every delivered event
  reached the receiver, and every request the receiver got carries a valid signature;
* a reference model, plain Python replaying the receipts and refunds the clients saw (and,
  for the unknown outcomes, what the database proves happened; for the clock's expiries and
  the operator's dispute decisions, the refunds the escrows record, each equal to what the
  operator decided), agrees with every agent wallet to the base unit.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import func, select

from agent_server.accounts.models import Agent
from agent_server.booking.clock import EXPIRED
from agent_server.booking.demo.loader import DEMO_REVIEWER_EMAIL
from agent_server.booking.events import BOOKING_EVENTS
from agent_server.booking.models import (
    Booking,
    BookingChange,
    BookingStatus,
    Dispute,
    DisputeStatus,
    Review,
    Schedule,
)
from agent_server.booking.service import RESCHEDULED
from agent_server.events.models import OutboxEvent
from agent_server.events.outbox import (
    BOOKING_CANCELLED,
    BOOKING_COMPLETED,
    BOOKING_CONFIRMED,
    BOOKING_CREATED,
    BOOKING_DISPUTED,
    BOOKING_EXPIRED,
    BOOKING_PAID_OUT,
    BOOKING_RESCHEDULED,
    DISPUTE_RESOLVED,
    REVIEW_CREATED,
)
from agent_server.events.signing import verify_signature
from agent_server.kernel.errors import ERROR_CODES
from agent_server.kernel.store import Database
from agent_server.services.clock import RELEASED
from billing.meter import release_stale_holds
from billing.models import (
    AccountKind,
    Escrow,
    EscrowStatus,
    Hold,
    HoldStatus,
    IdempotencyKey,
    IdempotencyStatus,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    UsageRecord,
)

KEYED = ("book-slot", "create-schedule")
SEAT_HOLDING = {BookingStatus.PENDING.value, BookingStatus.ACCEPTED.value}
SETTLED = {BookingStatus.CANCELED.value, BookingStatus.REJECTED.value}


@dataclass(frozen=True)
class AgentSetup:
    """An agent the soak signed up: its key, webhook secret and opening balances."""

    agent_id: int
    key: str
    email: str
    webhook_secret: str
    funding: dict[str, int]


@dataclass
class Call:
    """One tool call as its client saw it: ``ok``, ``error`` (a tool error) or ``unknown``
    (cut off, or the server died under it: the client cannot tell whether it happened)."""

    agent_id: int
    tool: str
    arguments: dict[str, Any]
    server: str
    started: float
    outcome: str = "pending"
    body: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    seconds: float = 0.0

    def succeeded(self, body: dict[str, Any]) -> None:
        self.outcome, self.body = "ok", body
        self.seconds = time.monotonic() - self.started

    def failed(self, error: dict[str, Any]) -> None:
        self.outcome, self.error = "error", error
        self.seconds = time.monotonic() - self.started

    def unknown(self, reason: str) -> None:
        self.outcome, self.reason = "unknown", reason
        self.seconds = time.monotonic() - self.started

    @property
    def code(self) -> str | None:
        code = self.error.get("code")
        return str(code) if code is not None else None

    @property
    def key(self) -> str | None:
        key = self.arguments.get("idempotency_key")
        return str(key) if key is not None else None

    @property
    def receipt(self) -> dict[str, Any] | None:
        receipt = self.body.get("receipt")
        return receipt if isinstance(receipt, dict) else None

    @property
    def charged(self) -> int:
        """The fee the receipt says the wallet paid, in base units (0 for a free call)."""
        paid = (self.receipt or {}).get("amount")
        return int(paid["amount"]) if isinstance(paid, dict) else 0

    @property
    def spent(self) -> tuple[str, int] | None:
        """What the receipt took from a wallet: its currency, and the fee plus any slot price
        put into escrow; None when no wallet paid."""
        receipt = self.receipt or {}
        paid, escrowed = receipt.get("amount"), receipt.get("escrowed")
        if not isinstance(paid, dict):
            return None
        held = int(escrowed["amount"]) if isinstance(escrowed, dict) else 0
        return str(paid["currency"]), int(paid["amount"]) + held

    @property
    def refund(self) -> tuple[int, str | None]:
        """What a cancel-booking returned: the amount and its currency (0, None: nothing)."""
        refunded = self.body.get("refunded")
        if not isinstance(refunded, dict):
            return 0, None
        return int(refunded["amount"]), str(refunded["currency"])


@dataclass
class AuditReport:
    problems: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)


def _half_up(amount: int) -> int:
    return -(-amount // 2)


async def audit(
    db: Database,
    agents: list[AgentSetup],
    calls: list[Call],
    received: list[Any],
    *,
    pepper: str,
    deadlines: Deadlines | None = None,
) -> AuditReport:
    """Check everything in this module's docstring; the servers must be stopped."""
    report = AuditReport()
    await _sweep(db, report)
    await _ledger(db, report)
    await _bookings(db, report)
    report.problems.extend(await booking_consistency(db, deadlines))
    await _outbox(db, agents, received, report)
    await _reference_model(db, agents, calls, report)
    _call_figures(calls, report)
    return report


async def _sweep(db: Database, report: AuditReport) -> None:
    """What the killed process left held goes back, as the servers' housekeeping does once
    a hold is stale (15 minutes); the soak does not wait that long."""
    async with db.uow() as uow:
        pending = (
            await uow.session.execute(
                select(func.count(), func.coalesce(func.sum(Hold.amount), 0)).where(
                    Hold.status == HoldStatus.PENDING.value
                )
            )
        ).one()
        in_flight = await uow.session.scalar(
            select(func.count())
            .select_from(IdempotencyKey)
            .where(IdempotencyKey.status == IdempotencyStatus.IN_FLIGHT.value)
        )
    released = await release_stale_holds(db, timedelta(0))
    report.check(released == pending[0], f"{pending[0]} holds pending, {released} released")
    report.figures.update(
        holds_left_pending=int(pending[0]),
        holds_released_by_sweep=released,
        idempotency_keys_left_in_flight=int(in_flight or 0),
    )


async def _ledger(db: Database, report: AuditReport) -> None:
    async with db.uow() as uow:
        session = uow.session
        unbalanced = (
            await session.execute(
                select(LedgerEntry.transaction_id, LedgerEntry.currency)
                .group_by(LedgerEntry.transaction_id, LedgerEntry.currency)
                .having(func.sum(LedgerEntry.debit) != func.sum(LedgerEntry.credit))
            )
        ).all()
        report.check(not unbalanced, f"transactions not summing to zero: {unbalanced[:10]}")
        empty = await session.scalar(
            select(func.count())
            .select_from(LedgerTransaction)
            .where(~LedgerTransaction.id.in_(select(LedgerEntry.transaction_id)))
        )
        report.check(not empty, f"{empty} ledger transactions without entries")
        accounts = {a.id: a for a in (await session.scalars(select(LedgerAccount))).all()}
        entries = (
            await session.execute(
                select(LedgerEntry.account_id, LedgerEntry.credit, LedgerEntry.debit).order_by(
                    LedgerEntry.id
                )
            )
        ).all()
        pending_holds = dict(
            (
                await session.execute(
                    select(Hold.currency, func.sum(Hold.amount))
                    .where(Hold.status == HoldStatus.PENDING.value)
                    .group_by(Hold.currency)
                )
            ).all()
        )
        held_escrows = dict(
            (
                await session.execute(
                    select(Escrow.currency, func.sum(Escrow.amount))
                    .where(Escrow.status == EscrowStatus.HELD.value)
                    .group_by(Escrow.currency)
                )
            ).all()
        )
        transactions = await session.scalar(select(func.count()).select_from(LedgerTransaction))
        session.expunge_all()  # keep the rows loaded once this read-only transaction ends
    running: dict[int, int] = defaultdict(int)
    lowest: dict[int, int] = {}
    for account_id, credit, debit in entries:
        running[account_id] += credit - debit
        lowest[account_id] = min(lowest.get(account_id, 0), running[account_id])
    wallets = [a for a in accounts.values() if a.kind == AccountKind.WALLET.value]
    for wallet in wallets:
        report.check(
            wallet.balance == running[wallet.id],
            f"{wallet.key}: cached balance {wallet.balance} but entries sum to "
            f"{running[wallet.id]}",
        )
        report.check(
            lowest.get(wallet.id, 0) >= 0,
            f"{wallet.key} went to {lowest.get(wallet.id)} when its entries are replayed",
        )
    for account in accounts.values():
        # A platform account's balance is credit minus debit: what it holds for others.
        if account.kind == AccountKind.HOLDS.value:
            expected = int(pending_holds.get(account.currency, 0))
            report.check(
                running[account.id] == expected,
                f"{account.key} holds {running[account.id]}, pending holds add to {expected}",
            )
        if account.kind == AccountKind.ESCROW.value:
            expected = int(held_escrows.get(account.currency, 0))
            report.check(
                running[account.id] == expected,
                f"{account.key} holds {running[account.id]}, held escrows add to {expected}",
            )
    report.figures.update(
        ledger_transactions=int(transactions or 0),
        ledger_entries=len(entries),
        wallets=len(wallets),
    )


async def _bookings(db: Database, report: AuditReport) -> None:
    async with db.uow() as uow:
        session = uow.session
        bookings = list((await session.scalars(select(Booking))).all())
        escrows = {e.booking_id: e for e in (await session.scalars(select(Escrow))).all()}
        capacity = dict((await session.execute(select(Schedule.id, Schedule.capacity))).all())
        session.expunge_all()
    by_id = {b.id: b for b in bookings}
    seats: dict[tuple[int, Any], list[int]] = defaultdict(list)
    for booking in bookings:
        if booking.status in SEAT_HOLDING or booking.status == BookingStatus.COMPLETED.value:
            seats[(booking.schedule_id, booking.slot_start)].append(booking.seat)
        escrow = escrows.get(booking.id)
        name = f"booking {booking.id} ({booking.status}, price {booking.price_amount})"
        if booking.price_amount <= 0:
            report.check(escrow is None, f"{name}: an escrow for a free booking")
            continue
        if booking.rescheduled_to_id is not None:
            report.check(escrow is None, f"{name}: kept its escrow after being rescheduled")
            continue
        if escrow is None:
            report.problems.append(f"{name}: no escrow")
            continue
        report.check(escrow.agent_id == booking.booker_agent_id, f"{name}: escrow of another agent")
        parts = (escrow.refunded or 0) + (escrow.paid_to_payee or 0) + (escrow.commission or 0)
        if escrow.status != EscrowStatus.HELD.value:
            report.check(parts == escrow.amount, f"{name}: settled {parts} of {escrow.amount}")
        if booking.status in SEAT_HOLDING or booking.status == BookingStatus.IN_DISPUTE.value:
            report.check(
                escrow.status == EscrowStatus.HELD.value, f"{name}: escrow {escrow.status}"
            )
        elif booking.status in SETTLED:
            report.check(
                escrow.status == EscrowStatus.REFUNDED.value, f"{name}: escrow {escrow.status}"
            )
            full = booking.cancel_reason_code == EXPIRED or booking.status == "rejected"
            report.check(
                escrow.refunded
                in ((escrow.amount,) if full else (escrow.amount, _half_up(escrow.amount))),
                f"{name}: refunded {escrow.refunded} of {escrow.amount}",
            )
        elif booking.status == BookingStatus.COMPLETED.value:
            report.check(
                escrow.status in (EscrowStatus.HELD.value, EscrowStatus.PAID_OUT.value)
                and not escrow.refunded,
                f"{name}: escrow {escrow.status}, refunded {escrow.refunded}",
            )
        elif booking.status == BookingStatus.DISPUTE_DONE.value:
            report.check(escrow.status != EscrowStatus.HELD.value, f"{name}: escrow still held")
    for booking_id in escrows:
        report.check(booking_id in by_id, f"escrow for booking {booking_id}, which is missing")
    overbooked = [
        (slot, held)
        for slot, held in seats.items()
        if len(held) > capacity[slot[0]] or len(set(held)) != len(held)
    ]
    report.check(not overbooked, f"double-booked slots: {overbooked[:5]}")
    statuses = Counter(b.status for b in bookings)
    report.figures.update(
        bookings=len(bookings),
        bookings_by_status=dict(statuses),
        rescheduled=sum(1 for b in bookings if b.rescheduled_to_id is not None),
        escrows=len(escrows),
        escrows_held=sum(1 for e in escrows.values() if e.status == EscrowStatus.HELD.value),
        escrows_refunded=sum(
            1 for e in escrows.values() if e.status == EscrowStatus.REFUNDED.value
        ),
        escrows_paid_out=sum(
            1 for e in escrows.values() if e.status == EscrowStatus.PAID_OUT.value
        ),
        slots_with_more_than_one_seat_taken=sum(1 for held in seats.values() if len(held) > 1),
    )


ACTIVE = (BookingStatus.PENDING.value, BookingStatus.ACCEPTED.value)


def _events_of_change(booking: Booking, change: BookingChange) -> list[str]:
    """The booking events one history line calls for (to each recipient)."""
    if change.from_status is None:
        if booking.rescheduled_from_id is not None:
            return [BOOKING_RESCHEDULED]
        confirmed = change.to_status == BookingStatus.ACCEPTED.value
        return [BOOKING_CREATED, *([BOOKING_CONFIRMED] if confirmed else [])]
    if change.from_status == change.to_status:  # a note, or the clock's escrow release
        return [BOOKING_PAID_OUT] if (change.note or "").startswith(RELEASED) else []
    if change.to_status == BookingStatus.ACCEPTED.value:
        return [BOOKING_CONFIRMED]
    if change.to_status == BookingStatus.COMPLETED.value:
        return [BOOKING_COMPLETED]
    if change.to_status == BookingStatus.IN_DISPUTE.value:
        return [BOOKING_DISPUTED]
    if change.to_status == BookingStatus.DISPUTE_DONE.value:
        return [DISPUTE_RESOLVED]
    if change.to_status == BookingStatus.CANCELED.value:
        if booking.cancel_reason_code == EXPIRED:
            return [BOOKING_EXPIRED]
        # A move is told once, by the new booking's booking.rescheduled.
        return [] if booking.cancel_reason_code == RESCHEDULED else [BOOKING_CANCELLED]
    return [BOOKING_CANCELLED]  # rejected


@dataclass(frozen=True)
class Deadlines:
    """The booking clock's times the servers ran with, and how late a tick may come."""

    pending_ttl: timedelta
    auto_complete_after: timedelta
    dispute_window: timedelta
    grace: timedelta

    def overdue(self, booking: Booking, escrow_held: bool, now: datetime) -> str | None:
        """What the clock should have done to this booking by ``now``, if anything."""
        late = now - self.grace
        if booking.status == BookingStatus.PENDING.value:
            due = min(booking.created_at + self.pending_ttl, booking.slot_start)
            return f"pending past its expiry at {due}" if due <= late else None
        if booking.status == BookingStatus.ACCEPTED.value:
            due = booking.slot_end + self.auto_complete_after
            return f"accepted past its completion at {due}" if due <= late else None
        if booking.status == BookingStatus.COMPLETED.value and escrow_held:
            due = booking.slot_end + self.dispute_window
            return f"escrow held past the dispute window at {due}" if due <= late else None
        return None


HOLDING_ESCROW = {*ACTIVE, BookingStatus.IN_DISPUTE.value}


async def booking_consistency(db: Database, deadlines: Deadlines | None = None) -> list[str]:
    """What must hold of every booking, its escrow, its history and its events, however many
    changes of it raced (see the module docstring); the problems found. With ``deadlines``,
    also that the clock left nothing past its time (the database clock's now)."""
    async with db.uow() as uow:
        session = uow.session
        now = uow.clock.now()
        bookings = list((await session.scalars(select(Booking).order_by(Booking.id))).all())
        escrows = list((await session.scalars(select(Escrow))).all())
        disputes = {d.booking_id: d for d in (await session.scalars(select(Dispute))).all()}
        reviewed = set((await session.scalars(select(Review.booking_id))).all())
        # The demo data's past sessions are imported as they ended: no history, no events.
        imported = set(
            await session.scalars(select(Agent.id).where(Agent.email == DEMO_REVIEWER_EMAIL))
        )
        moves = (
            await session.execute(
                select(LedgerTransaction.booking_id, LedgerTransaction.kind, func.count())
                .where(LedgerTransaction.booking_id.is_not(None))
                .group_by(LedgerTransaction.booking_id, LedgerTransaction.kind)
            )
        ).all()
        changes = list(
            (await session.scalars(select(BookingChange).order_by(BookingChange.id))).all()
        )
        providers = dict((await session.execute(select(Schedule.id, Schedule.agent_id))).all())
        events = (
            await session.execute(
                select(OutboxEvent.type, OutboxEvent.payload).where(
                    OutboxEvent.type.in_(BOOKING_EVENTS)
                )
            )
        ).all()
        session.expunge_all()
    problems: list[str] = []
    by_booking: dict[int, list[Escrow]] = defaultdict(list)
    for escrow in escrows:
        by_booking[escrow.booking_id].append(escrow)
    history: dict[int, list[BookingChange]] = defaultdict(list)
    for change in changes:
        history[change.booking_id].append(change)
    expected: Counter[tuple[int, str, str]] = Counter()
    for booking in bookings:
        if booking.booker_agent_id in imported:
            continue
        name = f"booking {booking.id} ({booking.status})"
        held = [e for e in by_booking[booking.id] if e.status == EscrowStatus.HELD.value]
        if booking.status in HOLDING_ESCROW and booking.price_amount > 0:
            if len(by_booking[booking.id]) != 1 or len(held) != 1:
                problems.append(
                    f"{name}: active and priced, with {len(held)} held escrows of "
                    f"{len(by_booking[booking.id])}"
                )
        elif held and booking.status != BookingStatus.COMPLETED.value:
            problems.append(f"{name}: settled but its escrow is still held")
        if deadlines is not None and (late := deadlines.overdue(booking, bool(held), now)):
            problems.append(f"{name}: {late} (now {now})")
        dispute = disputes.get(booking.id)
        if booking.status == BookingStatus.IN_DISPUTE.value:
            if dispute is None or dispute.status != DisputeStatus.OPEN.value:
                problems.append(f"{name}: no open dispute")
        elif booking.status == BookingStatus.DISPUTE_DONE.value:
            settled = by_booking[booking.id][0] if by_booking[booking.id] else None
            if dispute is None or dispute.status != DisputeStatus.RESOLVED.value:
                problems.append(f"{name}: no resolved dispute")
            elif settled is not None and (
                dispute.refund_amount != settled.refunded
                or dispute.settle_transaction_id != settled.settle_transaction_id
                or not dispute.resolved_by
                or dispute.resolved_at is None
            ):
                problems.append(f"{name}: its dispute's resolution is not its escrow's")
        elif dispute is not None:
            problems.append(f"{name}: a dispute, but the booking is not disputed")
        lines = history[booking.id]
        chain = [(c.from_status, c.to_status) for c in lines]
        linked = bool(lines) and lines[0].from_status is None
        linked = linked and all(b.from_status == a.to_status for a, b in pairwise(lines))
        if not linked or lines[-1].to_status != booking.status:
            problems.append(f"{name}: its history is not one chain of transitions: {chain}")
        roles = []
        if booking.booker_agent_id is not None:
            roles.append("booker")
        if providers.get(booking.schedule_id) is not None:
            roles.append("provider")
        for change in lines:
            for kind in _events_of_change(booking, change):
                for role in roles:
                    expected[(booking.id, kind, role)] += 1
        if booking.id in reviewed:
            for role in roles:
                expected[(booking.id, REVIEW_CREATED, role)] += 1
    counts: Counter[tuple[int, str]] = Counter()
    for booking_id, kind, n in moves:
        group = "settle" if kind in ("refund", "payout") else str(kind)
        counts[(int(booking_id), group)] += int(n)
    twice = sorted(k for k, n in counts.items() if n > 1 and k[1] in ("escrow", "settle"))
    if twice:
        problems.append(f"escrows taken or settled more than once (booking, step): {twice[:10]}")
    emitted: Counter[tuple[int, str, str]] = Counter(
        (int(payload["booking"]["id"]), str(kind), str(payload["role"])) for kind, payload in events
    )
    wrong = sorted(
        (key, emitted[key], expected[key])
        for key in set(expected) | set(emitted)
        if emitted[key] != expected[key]
    )
    if wrong:
        problems.append(
            f"{len(wrong)} booking events not one per transition ((booking, event, role), "
            f"emitted, expected): {wrong[:10]}"
        )
    return problems


async def _outbox(
    db: Database, agents: list[AgentSetup], received: list[Any], report: AuditReport
) -> None:
    async with db.uow() as uow:
        events = list((await uow.session.scalars(select(OutboxEvent))).all())
        uow.session.expunge_all()
    statuses = Counter(e.status for e in events)
    report.check(
        set(statuses) <= {"delivered", "pending"}, f"outbox events by status: {dict(statuses)}"
    )
    secrets = {a.agent_id: a.webhook_secret for a in agents}
    got: Counter[str] = Counter()
    bad_signatures = 0
    for request in received:
        envelope = json.loads(request.body)
        got[envelope["id"]] += 1
        header = request.headers.get("x-agent-server-signature", "")
        secret = secrets.get(int(envelope["agent_id"]), "")
        if not verify_signature(secret, header, request.body, tolerance=3600):
            bad_signatures += 1
    known = {e.event_id for e in events}
    report.check(bad_signatures == 0, f"{bad_signatures} deliveries with a bad signature")
    report.check(set(got) <= known, f"received {len(set(got) - known)} unknown events")
    missing = [e.event_id for e in events if e.status == "delivered" and e.event_id not in got]
    report.check(not missing, f"{len(missing)} events marked delivered never arrived")
    report.figures.update(
        outbox_events=len(events),
        outbox_by_status=dict(statuses),
        outbox_by_type=dict(Counter(e.type for e in events)),
        webhook_requests_received=len(received),
        events_received_more_than_once=sum(1 for n in got.values() if n > 1),
    )


async def _reference_model(
    db: Database, agents: list[AgentSetup], calls: list[Call], report: AuditReport
) -> None:
    """Replay what the clients saw; settle what they could not see from the database."""
    async with db.uow() as uow:
        session = uow.session
        usage = (
            await session.execute(
                select(
                    UsageRecord.call_id,
                    UsageRecord.agent_id,
                    UsageRecord.tool,
                    UsageRecord.currency,
                    UsageRecord.amount,
                )
            )
        ).all()
        keys = {
            (row.agent_id, row.key): row
            for row in (await session.execute(select(IdempotencyKey))).scalars()
        }
        escrows = list((await session.scalars(select(Escrow))).all())
        expired = set(
            await session.scalars(select(Booking.id).where(Booking.cancel_reason_code == EXPIRED))
        )
        decided = dict(
            (
                await session.execute(
                    select(Dispute.booking_id, Dispute.refund_amount).where(
                        Dispute.status == DisputeStatus.RESOLVED.value
                    )
                )
            ).all()
        )
        keyed_bookings = (
            await session.execute(
                select(Booking.booker_agent_id, Booking.idempotency_key, Booking.id).where(
                    Booking.idempotency_key.is_not(None)
                )
            )
        ).all()
        wallets = (
            await session.execute(
                select(LedgerAccount.agent_id, LedgerAccount.currency, LedgerAccount.balance).where(
                    LedgerAccount.kind == AccountKind.WALLET.value
                )
            )
        ).all()
        session.expunge_all()

    model: dict[tuple[int, str], int] = defaultdict(int)
    for agent in agents:
        for currency, amount in agent.funding.items():
            model[(agent.agent_id, currency)] += amount

    # 1. What the clients saw: each receipt once (a replay repeats its first call's receipt).
    seen: dict[str, dict[str, Any]] = {}
    receipts_by_key: dict[tuple[int, str], set[str]] = defaultdict(set)
    refunds_seen: dict[int, tuple[int, str | None]] = {}
    paid_seen = 0
    for call in calls:
        if call.outcome != "ok":
            continue
        receipt = call.receipt
        if receipt is not None:
            if call.key is not None:
                receipts_by_key[(call.agent_id, call.key)].add(str(receipt["call_id"]))
            if receipt["call_id"] not in seen:
                seen[receipt["call_id"]] = receipt
                spent = call.spent
                if spent is not None:
                    model[(call.agent_id, spent[0])] -= spent[1]
                if call.charged > 0:
                    paid_seen += 1
        if call.tool == "cancel-booking":
            booking_id = int(call.arguments["booking_id"])
            refunded, refund_currency = call.refund
            refunds_seen[booking_id] = (refunded, refund_currency)
            if refunded:
                model[(call.agent_id, str(refund_currency))] += refunded
    for (agent_id, key), call_ids in receipts_by_key.items():
        report.check(
            len(call_ids) == 1, f"agent {agent_id} key {key}: answered by calls {call_ids}"
        )

    # 2. Calls whose outcome the clients could not know.
    unknown: Counter[tuple[int, str]] = Counter()
    unknown_keys: set[tuple[int, str]] = set()
    unknown_cancels: set[tuple[int, int]] = set()
    for call in calls:
        if call.outcome != "unknown":
            continue
        unknown[(call.agent_id, call.tool)] += 1
        if call.key is not None:
            unknown_keys.add((call.agent_id, call.key))
        if call.tool == "cancel-booking":
            unknown_cancels.add((call.agent_id, int(call.arguments["booking_id"])))
    answered_keys = set(receipts_by_key)

    # Keyed calls: charged only if their key is done, by exactly its stored receipt.
    resolved_charged = 0
    key_receipts: dict[str, tuple[int, str]] = {}
    for agent_key in sorted(unknown_keys - answered_keys):
        row = keys.get(agent_key)
        if row is not None and row.status == IdempotencyStatus.DONE.value and row.receipt:
            key_receipts[str(row.receipt["call_id"])] = agent_key
    unexplained: Counter[tuple[int, str]] = Counter()
    charged_db = 0
    for use in usage:
        call_id, agent_id, tool = str(use.call_id), int(use.agent_id), str(use.tool)
        currency, amount = str(use.currency), int(use.amount)
        if amount <= 0 and call_id not in key_receipts:
            continue
        charged_db += 1
        if call_id in seen:
            paid = seen[call_id].get("amount") or {}
            report.check(
                int(paid.get("amount", 0)) == amount,
                f"call {call_id}: the client saw {paid.get('text')}, usage says {amount}",
            )
            continue
        if call_id in key_receipts:
            stored = keys[key_receipts[call_id]].receipt or {}
            report.check(
                int(stored.get("amount", -1)) == amount, f"call {call_id}: receipt != usage"
            )
            model[(agent_id, currency)] -= amount + int(stored.get("escrowed") or 0)
            resolved_charged += 1
            continue
        if tool in KEYED:
            report.problems.append(
                f"agent {agent_id}: a {tool} charge ({call_id}) that no key or client explains"
            )
            continue
        unexplained[(agent_id, tool)] += 1
        model[(agent_id, currency)] -= amount
        resolved_charged += 1
    for agent_tool, count in unexplained.items():
        report.check(
            count <= unknown[agent_tool],
            f"agent {agent_tool[0]}: {count} {agent_tool[1]} charges nobody saw, but only "
            f"{unknown[agent_tool]} calls with unknown outcome",
        )
    # Every done book-slot key made exactly one booking; no booking without its key's charge.
    done_keys = {k for k, row in keys.items() if row.status == IdempotencyStatus.DONE.value}
    for booker, booking_key, booking_id in keyed_bookings:
        report.check(
            (booker, booking_key) in done_keys,
            f"booking {booking_id} with key {booking_key} but the key's call is not done",
        )
    per_key = Counter((booker, booking_key) for booker, booking_key, _ in keyed_bookings)
    report.check(all(n == 1 for n in per_key.values()), "an idempotency key made two bookings")

    # Refunds: as seen, or (unknown cancels) as the database settled them.
    resolved_refunds = 0
    for escrow in escrows:
        if escrow.status != EscrowStatus.REFUNDED.value:
            continue
        refunded = int(escrow.refunded or 0)
        if escrow.booking_id in refunds_seen:
            seen_refund = refunds_seen[escrow.booking_id][0]
            report.check(
                seen_refund == refunded,
                f"booking {escrow.booking_id}: the client saw a refund of {seen_refund}, the "
                f"escrow says {refunded}",
            )
            continue
        if escrow.booking_id in decided:  # an operator's resolution of a dispute
            report.check(
                decided[escrow.booking_id] == refunded,
                f"booking {escrow.booking_id}: refunded {refunded}, the operator decided "
                f"{decided[escrow.booking_id]}",
            )
            explained = True
        else:  # a cancel whose answer was lost, or the clock's expiry
            explained = (escrow.agent_id, escrow.booking_id) in unknown_cancels
            explained = explained or escrow.booking_id in expired
        report.check(explained, f"booking {escrow.booking_id}: a refund nobody asked for")
        model[(escrow.agent_id, escrow.currency)] += refunded
        resolved_refunds += 1

    # 3. The model against every agent wallet, to the base unit.
    actual = {(int(w.agent_id), str(w.currency)): int(w.balance or 0) for w in wallets}
    ours = {a.agent_id for a in agents}
    mismatched = []
    for agent_currency in sorted(set(model) | {k for k in actual if k[0] in ours}):
        if model.get(agent_currency, 0) != actual.get(agent_currency, 0):
            mismatched.append(
                (agent_currency, model.get(agent_currency, 0), actual.get(agent_currency, 0))
            )
    report.check(not mismatched, f"model != database (agent, currency), model, db: {mismatched}")
    report.figures.update(
        paid_successes_seen=paid_seen,
        charges_in_database=charged_db,
        unknown_outcomes=sum(unknown.values()),
        unknown_resolved_as_charged=resolved_charged,
        unknown_cancels_resolved_as_refunded=resolved_refunds,
        wallets_checked_against_model=len(actual.keys() & set(model)),
        model_total_base_units=sum(model.values()),
    )


def _call_figures(calls: list[Call], report: AuditReport) -> None:
    codes: Counter[str] = Counter()
    per_tool: Counter[str] = Counter()
    unknown: Counter[str] = Counter()
    attempts: Counter[tuple[int, str]] = Counter()
    for call in calls:
        per_tool[call.tool] += 1
        if call.key is not None:
            attempts[(call.agent_id, call.key)] += 1
        if call.outcome == "error":
            codes[call.code or "?"] += 1
        if call.outcome == "unknown":
            unknown[call.reason.split(":")[0]] += 1
    internal = [c for c in calls if c.outcome == "error" and c.code not in ERROR_CODES]
    report.check(
        not internal,
        f"{len(internal)} errors outside SPEC's codes, e.g. "
        f"{[(c.tool, c.error) for c in internal[:3]]}",
    )
    report.figures.update(
        calls_by_tool=dict(per_tool),
        errors_by_code=dict(codes),
        unknown_by_reason=dict(unknown),
        repeated_keyed_calls=sum(n - 1 for n in attempts.values()),
    )
