"""The soak, reduced to fit the test suite: two ``agent-server serve`` processes on one
PostgreSQL database, 10 agents, 600 mixed tool calls with client disconnects, concurrent
changes of one booking at both servers and one server killed with SIGKILL and restarted, then
the audit (``soak_audit``). ``make soak`` runs it at full size (50 agents, 10,000 calls).

The audit is then shown to catch what it claims to: the same database and observations,
each doctored in one way, must each be reported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from datetime import UTC, datetime

import pytest
from db_support import PG_ADMIN_URL
from soak import PEPPER, SoakConfig, SoakResult, run_soak
from soak_audit import audit
from sqlalchemy import select, text

from agent_server.booking.models import Booking
from agent_server.events.models import OutboxEvent
from agent_server.kernel.store import Database, make_engine
from billing.wallet_funds import adjust_balance

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> SoakResult:
    """One reduced soak on a database of its own (``pg_url`` only decides whether
    PostgreSQL is there: skipped without it, failed under CI)."""
    config = SoakConfig(
        agents=10,
        calls=600,
        specialists=120,
        seed=3,
        pg_admin_url=PG_ADMIN_URL,
        keep_database=True,  # the doctoring test below reuses it, then drops it
        workdir=tmp_path_factory.mktemp("soak"),
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run_soak(config)).result()


def test_reduced_soak_passes_the_audit(soaked: SoakResult) -> None:
    figures = soaked.summary()
    assert soaked.report.problems == [], json.dumps(figures, indent=2)
    # It really ran under the faults it claims.
    assert figures["calls"] >= 600
    assert figures["server_kills"] == 1 and figures["server_restarts"] == 1
    assert figures["calls_in_flight_at_kill"] >= 1
    assert figures["calls_served_after_restart"] > 0
    assert figures["unknown_by_reason"].get("disconnect", 0) > 0
    assert figures["repeated_keyed_calls"] > 0
    assert figures["bookings"] > 0 and figures["escrows_refunded"] > 0
    assert figures["outbox_by_status"].get("delivered", 0) > 0
    assert figures["wallets_checked_against_model"] >= 10
    assert figures["booking_races"] > 0 and figures["rescheduled"] > 0
    # The booking clocks of both servers expired the unanswered bookings and paid out the
    # session kept from the disputes once its window closed; the agents disputed others,
    # whose window stays open a slot longer, and the operator settled them.
    assert figures["bookings_expired"] >= 2
    assert figures["clock_releases"] >= 1 and figures["escrows_paid_out"] > 0
    assert figures["disputes_opened"] > 0
    assert figures["disputes_resolved"] == figures["disputes_opened"]


async def test_the_audit_catches_doctored_books(soaked: SoakResult) -> None:
    db = Database(make_engine(soaked.database_url))
    try:
        agents = soaked.setups
        received = soaked.received
        calls = list(soaked.calls)

        # 1. A call the clients saw succeed is forgotten: its charge is then unexplained.
        seen = next(
            c
            for c in calls
            if c.tool == "book-slot"
            and c.outcome == "ok"
            and sum(1 for d in calls if d.key == c.key) == 1
        )
        forgotten = [c for c in calls if c is not seen]
        report = await audit(db, agents, forgotten, received, pepper=PEPPER)
        assert any("that no key or client explains" in p for p in report.problems)

        # 2. Money moved that no client saw: the model and the wallet disagree.
        victim = agents[0]
        async with db.uow() as uow:
            await adjust_balance(
                uow, agent_id=victim.agent_id, currency="USDC", amount=1, reason="doctored"
            )
            await uow.commit()
        report = await audit(db, agents, calls, received, pepper=PEPPER)
        assert any(
            "model != database" in p and f"({victim.agent_id}, 'USDC')" in p
            for p in report.problems
        ), report.problems

        # 3. A priced booking without escrow.
        async with db.uow() as uow:
            model = (
                await uow.session.scalars(select(Booking).where(Booking.price_amount > 0).limit(1))
            ).one()
            start = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
            await uow.session.execute(
                text(
                    "INSERT INTO bookings (schedule_id, specialist_id, booker_agent_id, "
                    "slot_start, slot_end, seat, status, price_amount, price_currency, topic, "
                    "notes, created_at, updated_at) VALUES (:s, :sp, :a, :start, :end, 1, "
                    "'accepted', :p, :c, '', '', :start, :start)"
                ),
                {
                    "s": model.schedule_id,
                    "sp": model.specialist_id,
                    "a": model.booker_agent_id,
                    "start": start,
                    "end": start.replace(hour=10),
                    "p": model.price_amount,
                    "c": model.price_currency,
                },
            )
            await uow.commit()
        report = await audit(db, agents, calls, received, pepper=PEPPER)
        assert any(": no escrow" in p for p in report.problems), report.problems
        assert any("active and priced, with 0 held escrows" in p for p in report.problems)
        assert any("not one chain of transitions: []" in p for p in report.problems)

        # 4. A cancellation told twice: one event per transition no longer holds.
        async with db.uow() as uow:
            told = (
                await uow.session.scalars(
                    select(OutboxEvent).where(OutboxEvent.type == "booking.cancelled").limit(1)
                )
            ).one()
            uow.session.add(
                OutboxEvent(
                    event_id=f"{told.event_id[:30]}-again",
                    type=told.type,
                    agent_id=told.agent_id,
                    payload=told.payload,
                    created_at=told.created_at,
                    status="pending",
                    attempts=0,
                    next_attempt_at=told.next_attempt_at,
                    updated_at=told.updated_at,
                )
            )
            await uow.commit()
        report = await audit(db, agents, calls, received, pepper=PEPPER)
        booking_id = told.payload["booking"]["id"]
        assert any(
            "not one per transition" in p and f"(({booking_id}, 'booking.cancelled'" in p
            for p in report.problems
        ), report.problems
    finally:
        await db.dispose()
        await soaked.drop_database()
