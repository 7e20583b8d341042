"""Concurrent changes of one booking: exactly one of them happens, the rest are refused.

Every change of a booking (cancel, reschedule, accept, reject, complete) is one conditional
transition: the booking is read under a row lock, so a second concurrent change reads the
first's result and answers ``BOOKING_CONFLICT`` (reason ``invalid_status``) having written
nothing. Each race leaves one consistent outcome, checked by the proof suite's
``booking_consistency`` (escrow held exactly while the booking is active, one history chain,
one event per transition) and a balanced ledger.

First at service level on SQLite and PostgreSQL (concurrent units of work, each with its own
connection); then over the wire, with two ``agent-server serve`` processes sharing one
PostgreSQL database and the calls split across both: MCP tools through the SDK's client and
the specialist's dashboard actions over HTTP.

Also here: the refund band follows the money (a reschedule never moves the 24-hour window
later), and the version column refuses an update of a booking changed meanwhile.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import httpx2
import pytest
from billing_support import audit_ledger, fund, make_agent, make_schedule, wallet_balance
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_support import body
from mcp_support import make_agent as make_keyed_agent
from soak import PEPPER
from soak_audit import booking_consistency
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError
from two_servers import two_servers

from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import Booking, BookingStatus, CancelledBy, Schedule, Specialist
from agent_server.booking.schedules import ScheduleOwner
from agent_server.booking.service import accept_booking, book_slot
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import BookingConflict
from agent_server.kernel.store import Database, make_engine
from agent_server.kernel.store.conflicts import REASON_CHANGED, lost_update
from agent_server.mail import OutboxMail
from agent_server.services.bookings import (
    cancel_booking,
    complete_booking,
    reject_booking,
    reschedule_booking,
)
from billing.config import BillingConfig
from billing.escrow import escrow_booking
from billing.meter import Admission, ExtraPrice, MeteredCall, run_metered
from billing.models import Escrow, EscrowStatus, Hold, IdempotencyKey
from billing.prices import load_price_list
from wallets.rates import FakeRateSource

PRICE = 40_000_000  # 40 USD in micro-dollars; 40 USDC in base units at the fake rate
FUNDS = 1_000_000_000
N = 10
OK = "ok"

# The test clock starts on Monday 2026-03-02 08:00 UTC; schedules are open 09:00-17:00 UTC.
DAY_AHEAD_3 = datetime(2026, 3, 5, 10, 0, tzinfo=UTC)  # 74 h ahead


def _config() -> BillingConfig:
    return BillingConfig(prices=load_price_list(), rates=FakeRateSource())


async def _book(
    db: Database, agent: int, schedule: int, start: datetime, *, key: str | None = None
) -> int:
    """A booking through the meter, its price in escrow, as book-slot makes it; its id."""
    slot = make_slot_id(schedule, start)

    async def operation(call: MeteredCall) -> dict[str, Any]:
        booking = await book_slot(call.uow, agent_id=agent, slot_id=slot, idempotency_key=key)
        await call.escrow(booking)
        return {"booking_id": booking.id}

    metered = await run_metered(
        db,
        Admission(
            agent,
            "book-slot",
            arguments={"slot_id": slot},
            idempotency_key=key,
            extra_price=ExtraPrice(PRICE, "USD"),
        ),
        operation,
        config=_config(),
    )
    return int(metered.result["booking_id"])


async def _world(db: Database, *, auto_accept: bool = True) -> tuple[int, int, int]:
    """A funded agent with a 40 USD booking 74 hours ahead: (agent, schedule, booking)."""
    agent = await make_agent(db)
    await fund(db, agent, "USDC", FUNDS)
    schedule = await make_schedule(db, price_amount=PRICE, auto_accept=auto_accept)
    return agent, schedule, await _book(db, agent, schedule, DAY_AHEAD_3)


async def _owner(db: Database, schedule_id: int) -> ScheduleOwner:
    async with db.uow() as uow:
        schedule = await uow.session.get(Schedule, schedule_id)
        assert schedule is not None and schedule.specialist_id is not None
        return ScheduleOwner(specialist_id=schedule.specialist_id)


Change = Callable[[Database], Awaitable[Any]]


def cancel(booking: int, agent: int) -> Change:
    async def run(racing: Database) -> Any:
        async with racing.uow() as uow:
            done = await cancel_booking(uow, booking, CancelledBy.AGENT, agent, "no_time")
            await uow.commit()
            return done.settlement

    return run


def reschedule(booking: int, agent: int, schedule: int, start: datetime) -> Change:
    async def run(racing: Database) -> Any:
        async with racing.uow() as uow:
            new = await reschedule_booking(uow, agent, booking, make_slot_id(schedule, start))
            await uow.commit()
            return new.id

    return run


def complete(booking: int) -> Change:
    async def run(racing: Database) -> Any:
        async with racing.uow() as uow:
            done = await complete_booking(uow, booking, CancelledBy.SYSTEM, None)
            await uow.commit()
            return done.settlement

    return run


def accept(booking: int, owner: ScheduleOwner) -> Change:
    async def run(racing: Database) -> Any:
        async with racing.uow() as uow:
            await accept_booking(uow, owner, booking)
            await uow.commit()

    return run


def reject(booking: int, owner: ScheduleOwner) -> Change:
    async def run(racing: Database) -> Any:
        async with racing.uow() as uow:
            await reject_booking(uow, owner, booking, "double booked")
            await uow.commit()

    return run


async def race(db: Database, database_url: str, changes: list[Change]) -> list[str]:
    """Run every change at once, each in its own unit of work and connection; each outcome:
    ``ok``, or the error's code (an unexpected exception fails the test)."""
    racing = Database(make_engine(database_url, pool_size=len(changes)), db.clock)
    start = asyncio.Event()

    async def one(change: Change) -> str:
        await start.wait()
        try:
            await change(racing)
        except BookingConflict as exc:
            assert exc.details["reason"] == "invalid_status", exc.details
            return exc.code
        return OK

    try:
        tasks = [asyncio.create_task(one(c)) for c in changes]
        start.set()
        return list(await asyncio.gather(*tasks))
    finally:
        await racing.dispose()


async def consistent(db: Database) -> None:
    assert await booking_consistency(db) == []
    await audit_ledger(db)


async def _status(db: Database, booking_id: int) -> str:
    async with db.uow() as uow:
        booking = await uow.session.get(Booking, booking_id)
        assert booking is not None
        return booking.status


def _slots(start: datetime, n: int) -> list[datetime]:
    """``n`` distinct hourly slots from ``start`` within opening hours (09:00-17:00)."""
    found: list[datetime] = []
    at = start
    while len(found) < n:
        if 9 <= at.hour < 17:
            found.append(at)
        at += timedelta(hours=1)
    return found


# --- service level, SQLite and PostgreSQL --------------------------------------------------------


async def test_concurrent_reschedules_of_one_booking_move_it_once(
    db: Database, database_url: str
) -> None:
    agent, schedule, booking = await _world(db)
    targets = _slots(DAY_AHEAD_3 + timedelta(days=1), N)
    outcomes = await race(
        db, database_url, [reschedule(booking, agent, schedule, t) for t in targets]
    )
    assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": N - 1}
    async with db.uow() as uow:
        active = [
            (b.id, b.rescheduled_from_id)
            for b in await uow.session.scalars(select(Booking).where(Booking.status == "accepted"))
        ]
        held = list(
            await uow.session.scalars(
                select(Escrow.booking_id).where(Escrow.status == EscrowStatus.HELD.value)
            )
        )
    # One new booking, moved from the old one, holding the one escrow.
    assert len(active) == 1 and active[0][1] == booking and held == [active[0][0]]
    assert await _status(db, booking) == BookingStatus.CANCELED.value
    await consistent(db)


async def test_concurrent_cancels_refund_once_and_tell_the_others_it_is_canceled(
    db: Database, database_url: str
) -> None:
    agent, _schedule, booking = await _world(db)
    before = await wallet_balance(db, agent, "USDC")
    outcomes = await race(db, database_url, [cancel(booking, agent) for _ in range(N)])
    assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": N - 1}
    assert await wallet_balance(db, agent, "USDC") == before + PRICE
    await consistent(db)


async def test_a_cancel_racing_a_reschedule_leaves_one_of_them_done(
    db: Database, database_url: str
) -> None:
    agent, schedule, booking = await _world(db)
    later = _slots(DAY_AHEAD_3 + timedelta(days=1), 4)
    changes = [cancel(booking, agent) for _ in range(4)]
    changes += [reschedule(booking, agent, schedule, t) for t in later]
    outcomes = await race(db, database_url, changes)
    assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": 7}
    await consistent(db)


async def test_concurrent_completions_pay_out_once(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    _agent, _schedule, booking = await _world(db)
    clock.set(DAY_AHEAD_3 + timedelta(hours=2))
    outcomes = await race(db, database_url, [complete(booking) for _ in range(N)])
    assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": N - 1}
    assert await _status(db, booking) == BookingStatus.COMPLETED.value
    await consistent(db)


async def test_accept_racing_reject_answers_one_of_them(db: Database, database_url: str) -> None:
    _agent, schedule, booking = await _world(db, auto_accept=False)
    owner = await _owner(db, schedule)
    changes = [accept(booking, owner) for _ in range(4)] + [
        reject(booking, owner) for _ in range(4)
    ]
    outcomes = await race(db, database_url, changes)
    assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": 7}
    assert await _status(db, booking) in (
        BookingStatus.ACCEPTED.value,
        BookingStatus.REJECTED.value,
    )
    await consistent(db)


async def test_a_mixture_of_every_change_on_an_ended_booking_has_one_winner(
    db: Database, database_url: str, clock: FakeClock
) -> None:
    agent, schedule, booking = await _world(db)
    clock.set(DAY_AHEAD_3 + timedelta(hours=2))
    later = _slots(DAY_AHEAD_3 + timedelta(days=1), 3)
    changes = [cancel(booking, agent) for _ in range(3)]
    changes += [reschedule(booking, agent, schedule, t) for t in later]
    changes += [complete(booking) for _ in range(3)]
    outcomes = await race(db, database_url, changes)
    assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": 8}
    await consistent(db)


async def test_a_booking_changed_meanwhile_is_refused_by_its_version(db: Database) -> None:
    agent, _schedule, booking = await _world(db)
    async with db.uow() as uow:
        stale = await uow.session.get(Booking, booking)
        assert stale is not None
        await uow.commit()
    async with db.uow() as uow:
        await cancel_booking(uow, booking, CancelledBy.AGENT, agent, "other")
        await uow.commit()
    # A write from the copy read before the cancel names a version that is gone.
    async with db.uow() as uow:
        copy = await uow.session.merge(stale, load=False)
        copy.notes = "written from a stale read"
        with pytest.raises(StaleDataError) as raised:
            await uow.session.flush()
    conflict = lost_update(raised.value)
    assert conflict is not None and conflict.code == "BOOKING_CONFLICT"
    assert conflict.details["reason"] == REASON_CHANGED
    async with db.uow() as uow:
        row = await uow.session.get(Booking, booking)
        assert row is not None and row.notes == "" and row.status == "canceled"


# --- the refund band follows the money -----------------------------------------------------------


async def _cancel_now(db: Database, booking: int, agent: int) -> int:
    settlement = await cancel(booking, agent)(db)
    assert settlement is not None
    return int(settlement.refunded)


async def test_moving_a_late_booking_later_keeps_the_late_refund(
    db: Database, clock: FakeClock
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", FUNDS)
    schedule = await make_schedule(db, price_amount=PRICE)
    soon = clock.now().replace(hour=16)  # 8 hours ahead: inside the 24-hour band
    booking = await _book(db, agent, schedule, soon)
    moved = await reschedule(booking, agent, schedule, DAY_AHEAD_3)(db)
    async with db.uow() as uow:
        new = await uow.session.get(Booking, moved)
        assert new is not None and new.refund_anchor_at == soon
    assert await _cancel_now(db, moved, agent) == PRICE // 2
    await consistent(db)


async def test_a_booking_moved_earlier_keeps_the_earlier_window(
    db: Database, clock: FakeClock
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", FUNDS)
    schedule = await make_schedule(db, price_amount=PRICE)
    # Booked 74 h ahead, then moved to 8 h ahead: the window is the new, earlier slot's.
    booking = await _book(db, agent, schedule, DAY_AHEAD_3)
    soon = clock.now().replace(hour=16)
    moved = await reschedule(booking, agent, schedule, soon)(db)
    assert await _cancel_now(db, moved, agent) == PRICE // 2
    # Booked 74 h ahead and moved later still: cancelling now, 74 h before the slot paid for,
    # refunds in full.
    other = await _book(db, agent, schedule, DAY_AHEAD_3 + timedelta(hours=1))
    later = await reschedule(other, agent, schedule, DAY_AHEAD_3 + timedelta(days=2))(db)
    assert await _cancel_now(db, later, agent) == PRICE
    await consistent(db)


# --- two serve processes on one PostgreSQL database ----------------------------------------------


@pytest.fixture(scope="module")
def served(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two serve processes on a PostgreSQL database of their own (``pg_url`` only decides
    whether PostgreSQL is there: skipped without it, failed under CI)."""
    with two_servers(tmp_path_factory.mktemp("races")) as served:
        yield served


class Wire:
    """The test's view of the served database and its two servers."""

    def __init__(self, served: dict[str, Any]) -> None:
        self.db = Database(make_engine(served["url"]))
        self.bases: list[str] = served["bases"]
        self.settings = Settings(database_url=served["url"], secret_pepper=PEPPER)  # type: ignore[arg-type]

    async def agent(self) -> tuple[int, str]:
        return await make_keyed_agent(self.db, self.settings, funds=FUNDS)


async def _clients(stack: AsyncExitStack, bases: list[str], key: str, n: int) -> list[Client]:
    """``n`` open MCP clients with the agent's key, alternating between the servers."""
    clients = []
    for i in range(n):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60)
        client = Client(streamable_http_client(f"{bases[i % 2]}/mcp", http_client=http))
        clients.append(await stack.enter_async_context(client))
    return clients


def _outcome(result: Any) -> str:
    data = body(result)
    if not result.is_error:
        return OK
    error = data["error"]
    assert error["code"] == "BOOKING_CONFLICT", error
    assert error["details"]["reason"] == "invalid_status", error
    return str(error["code"])


async def _mcp_race(clients: list[Client], calls: list[tuple[str, dict[str, Any]]]) -> list[str]:
    results = await asyncio.gather(
        *(clients[i % len(clients)].call_tool(tool, args) for i, (tool, args) in enumerate(calls))
    )
    return [_outcome(r) for r in results]


def _future_slots(n: int, days: int) -> list[datetime]:
    start = (datetime.now(UTC) + timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
    return _slots(start, n)


async def _dashboard(bases: list[str], db: Database, email: str) -> list[httpx.AsyncClient]:
    """One signed-in dashboard client per server for ``email``: signed in through the pages
    of the first (the code read from the mail outbox, as no SMTP server is configured); the
    session, kept in the shared database, serves on both."""
    first = httpx.AsyncClient(base_url=bases[0], timeout=30)
    page = await first.get("/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text
    asked = await first.post("/sign-in", data={"email": email, "csrf_token": csrf.group(1)})
    assert asked.status_code == 200, asked.text
    code = None
    for _ in range(100):
        async with db.uow() as uow:
            mail = (
                await uow.session.scalars(
                    select(OutboxMail.body)
                    .where(OutboxMail.to_addr == email)
                    .order_by(OutboxMail.id.desc())
                )
            ).first()
        found = re.search(r"\b(\d{6})\b", mail or "")
        if found:
            code = found.group(1)
            break
        await asyncio.sleep(0.1)
    assert code, f"no sign-in code mailed to {email}"
    done = await first.post(
        "/sign-in/code", data={"email": email, "code": code, "csrf_token": csrf.group(1)}
    )
    assert done.status_code == 303, done.text
    page = await first.get("/specialist/bookings")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert page.status_code == 200 and token, page.text[:500]
    first.headers["x-csrf-token"] = token.group(1)
    second = httpx.AsyncClient(
        base_url=bases[1], timeout=30, cookies=first.cookies, headers=first.headers
    )
    return [first, second]


def _answer(reply: httpx.Response) -> str:
    """A dashboard action's outcome: done (redirected back to the list) or refused (409)."""
    if reply.status_code == 303:
        return OK
    assert reply.status_code == 409, (reply.status_code, reply.text[:300])
    return "BOOKING_CONFLICT"


async def _actions(clients: list[httpx.AsyncClient], booking: int, actions: list[str]) -> list[str]:
    replies = await asyncio.gather(
        *(
            clients[i % 2].post(f"/specialist/bookings/{booking}/{action}", data={"reason": "x"})
            for i, action in enumerate(actions)
        )
    )
    return [_answer(r) for r in replies]


async def _specialist_email(db: Database, schedule: int) -> str:
    async with db.uow() as uow:
        row = await uow.session.get(Schedule, schedule)
        assert row is not None and row.specialist_id is not None
        specialist = await uow.session.get(Specialist, row.specialist_id)
        assert specialist is not None
        return specialist.email


async def _booked_over_mcp(client: Client, schedule: int, start: datetime) -> int:
    result = await client.call_tool(
        "book-slot",
        {"slot_id": make_slot_id(schedule, start), "idempotency_key": f"race-{start:%j%H}"},
    )
    assert not result.is_error, body(result)
    return int(body(result)["booking"]["id"])


async def _ended_booking(wire: Wire, agent: int, schedule: int) -> int:
    """An accepted booking whose slot ended yesterday, its price in escrow (booked then)."""
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    past = Database(wire.db.engine, FakeClock(yesterday - timedelta(hours=2)))
    async with past.uow() as uow:
        booking = await book_slot(
            uow, agent_id=agent, slot_id=make_slot_id(schedule, yesterday), idempotency_key=None
        )
        await escrow_booking(
            uow, booking, amount=PRICE, currency="USDC", price_usd_micros=PRICE, rate=10**6
        )
        await uow.commit()
        return booking.id


async def _wire_consistent(wire: Wire) -> None:
    assert await booking_consistency(wire.db) == []
    await audit_ledger(wire.db)


@pytest.fixture
async def wire(served: dict[str, Any]) -> Any:
    wire = Wire(served)
    yield wire
    await wire.db.dispose()


@pytest.mark.postgres
async def test_two_servers_n_reschedules_and_n_cancels_each_happen_once(wire: Wire) -> None:
    agent, key = await wire.agent()
    schedule = await make_schedule(wire.db, price_amount=PRICE)
    async with AsyncExitStack() as stack:
        clients = await _clients(stack, wire.bases, key, N)
        first, second = _future_slots(2, days=5)
        booking = await _booked_over_mcp(clients[0], schedule, first)
        targets = _future_slots(N, days=8)
        calls = [
            (
                "reschedule-booking",
                {"booking_id": booking, "new_slot_id": make_slot_id(schedule, t)},
            )
            for t in targets
        ]
        assert Counter(await _mcp_race(clients, calls)) == {OK: 1, "BOOKING_CONFLICT": N - 1}

        other = await _booked_over_mcp(clients[1], schedule, second)
        before = await wallet_balance(wire.db, agent, "USDC")
        calls = [("cancel-booking", {"booking_id": other})] * N
        assert Counter(await _mcp_race(clients, calls)) == {OK: 1, "BOOKING_CONFLICT": N - 1}
        assert await wallet_balance(wire.db, agent, "USDC") == before + PRICE
    await _wire_consistent(wire)


@pytest.mark.postgres
async def test_two_servers_cancel_racing_reschedule_leaves_one_outcome(wire: Wire) -> None:
    _agent, key = await wire.agent()
    schedule = await make_schedule(wire.db, price_amount=PRICE)
    async with AsyncExitStack() as stack:
        clients = await _clients(stack, wire.bases, key, N)
        booking = await _booked_over_mcp(clients[0], schedule, _future_slots(1, days=6)[0])
        calls: list[tuple[str, dict[str, Any]]] = []
        for target in _future_slots(N // 2, days=9):
            calls.append(("cancel-booking", {"booking_id": booking}))
            calls.append(
                (
                    "reschedule-booking",
                    {"booking_id": booking, "new_slot_id": make_slot_id(schedule, target)},
                )
            )
        assert Counter(await _mcp_race(clients, calls)) == {OK: 1, "BOOKING_CONFLICT": N - 1}
    await _wire_consistent(wire)


@pytest.mark.postgres
async def test_two_servers_dashboard_completes_and_accept_reject_happen_once(wire: Wire) -> None:
    agent, key = await wire.agent()
    schedule = await make_schedule(wire.db, price_amount=PRICE)
    ended = await _ended_booking(wire, agent, schedule)
    dashboard = await _dashboard(wire.bases, wire.db, await _specialist_email(wire.db, schedule))
    try:
        outcomes = await _actions(dashboard, ended, ["complete"] * N)
        assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": N - 1}
        assert await _status(wire.db, ended) == BookingStatus.COMPLETED.value

        pending_schedule = await make_schedule(wire.db, price_amount=PRICE, auto_accept=False)
        async with AsyncExitStack() as stack:
            (client,) = await _clients(stack, wire.bases, key, 1)
            pending = await _booked_over_mcp(client, pending_schedule, _future_slots(1, days=4)[0])
        dashboard += await _dashboard(
            wire.bases, wire.db, await _specialist_email(wire.db, pending_schedule)
        )
        clients = dashboard[2:]
        outcomes = await _actions(clients, pending, ["accept", "reject"] * (N // 2))
        assert Counter(outcomes) == {OK: 1, "BOOKING_CONFLICT": N - 1}
    finally:
        for http in dashboard:
            await http.aclose()
    await _wire_consistent(wire)


@pytest.mark.postgres
async def test_two_servers_a_mixture_of_tools_and_dashboard_actions_has_one_winner(
    wire: Wire,
) -> None:
    agent, key = await wire.agent()
    schedule = await make_schedule(wire.db, price_amount=PRICE)
    ended = await _ended_booking(wire, agent, schedule)
    dashboard = await _dashboard(wire.bases, wire.db, await _specialist_email(wire.db, schedule))
    try:
        async with AsyncExitStack() as stack:
            clients = await _clients(stack, wire.bases, key, 6)
            calls: list[tuple[str, dict[str, Any]]] = [
                ("cancel-booking", {"booking_id": ended})
            ] * 3
            calls += [
                (
                    "reschedule-booking",
                    {"booking_id": ended, "new_slot_id": make_slot_id(schedule, t)},
                )
                for t in _future_slots(3, days=10)
            ]
            tools, actions = await asyncio.gather(
                _mcp_race(clients, calls),
                _actions(dashboard, ended, ["complete"] * 3 + ["reject"]),
            )
        outcomes = Counter(tools + actions)
        assert outcomes == {OK: 1, "BOOKING_CONFLICT": 9}, (tools, actions)
    finally:
        for http in dashboard:
            await http.aclose()
    await _wire_consistent(wire)


@pytest.mark.postgres
async def test_two_servers_book_a_last_seat_once_for_one_key_and_many(wire: Wire) -> None:
    """Half the calls send one idempotency key, half a key each, all for one last seat,
    through both servers: one booking, paid once; every other call is refused or told the
    first is in progress, and gives its hold back; the key is kept only by the call that
    booked with it."""
    agent, key = await wire.agent()
    schedule = await make_schedule(wire.db, price_amount=PRICE)
    (start,) = _future_slots(1, days=6)
    slot = make_slot_id(schedule, start)
    before = await wallet_balance(wire.db, agent, "USDC")
    async with AsyncExitStack() as stack:
        clients = await _clients(stack, wire.bases, key, N)
        keys = ["seat-shared-0001" if i % 2 else f"seat-own-{i:04}" for i in range(N)]
        results = await asyncio.gather(
            *(
                clients[i].call_tool("book-slot", {"slot_id": slot, "idempotency_key": k})
                for i, k in enumerate(keys)
            )
        )
    booked = [body(r) for r in results if not r.is_error]
    codes = Counter(body(r)["error"]["code"] for r in results if r.is_error)
    assert booked and set(codes) <= {"BOOKING_CONFLICT", "IDEMPOTENCY_MISMATCH"}, codes
    assert len({b["booking"]["id"] for b in booked}) == 1
    receipt = booked[0]["receipt"]
    paid = receipt["amount"]["amount"] + receipt["escrowed"]["amount"]
    assert await wallet_balance(wire.db, agent, "USDC") == before - paid
    async with wire.db.uow() as uow:
        seats = (
            await uow.session.execute(
                select(Booking.id).where(
                    Booking.schedule_id == schedule, Booking.slot_start == start
                )
            )
        ).all()
        pending = (await uow.session.execute(select(Hold.id).where(Hold.status == "pending"))).all()
        kept = (
            (
                await uow.session.execute(
                    select(IdempotencyKey.key).where(IdempotencyKey.agent_id == agent)
                )
            )
            .scalars()
            .all()
        )
    assert len(seats) == 1 and pending == []
    winner = keys[[not r.is_error for r in results].index(True)]
    assert kept == [winner]
    await _wire_consistent(wire)
