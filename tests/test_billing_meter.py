"""Metering: a call is charged once, only on success, from the right wallet, with a receipt;
refusals write nothing; holds, escrow, free quotas and caps behave as an owner expects."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from billing_support import (
    audit_ledger,
    count_rows,
    fund,
    make_agent,
    make_schedule,
    wallet_balance,
)
from sqlalchemy import func, select

from agent_server.accounts.models import AgentStatus
from agent_server.booking.availability import make_slot_id
from agent_server.booking.models import Booking
from agent_server.booking.service import book_slot
from agent_server.gate import Caller, GatePass
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import (
    BookingConflict,
    InsufficientFunds,
    RateLimited,
    SpendingCapReached,
)
from agent_server.kernel.store import Database
from billing import idempotency
from billing.caps import set_spending_caps
from billing.config import BillingConfig
from billing.meter import (
    Admission,
    ExtraPrice,
    Metered,
    MeteredCall,
    Operation,
    Receipt,
    place_hold,
    quote,
    release_stale_holds,
    run_metered,
)
from billing.models import IdempotencyKey, LedgerTransaction, UsageRecord
from billing.prices import PriceList, ToolPrice, load_price_list
from billing.usage import transactions_for, usage_for
from wallets.rates import FakeRateSource


@pytest.fixture
def config() -> BillingConfig:
    return BillingConfig(prices=load_price_list(), rates=FakeRateSource())


async def ok(call: MeteredCall) -> dict[str, Any]:
    return {"ok": True, "call": call.call_id}


async def fails(call: MeteredCall) -> dict[str, Any]:
    raise BookingConflict("slot taken", {"reason": "full"})


def metered_call(
    db: Database,
    agent: int,
    tool: str,
    config: BillingConfig,
    operation: Operation = ok,
    **options: Any,
) -> Coroutine[Any, Any, Metered]:
    """One metered call of ``tool`` without an idempotency key (``options``: the
    ``Admission``'s)."""
    return run_metered(db, Admission(agent, tool, **options), operation, config=config)


def held_open() -> tuple[asyncio.Event, asyncio.Event, Operation]:
    """An operation that succeeds once released: (started, release, the operation)."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(call: MeteredCall) -> dict[str, Any]:
        started.set()
        await release.wait()
        return {"ok": True}

    return started, release, slow


async def charges(db: Database) -> int:
    async with db.uow() as uow:
        return (
            await uow.session.execute(
                select(func.count())
                .select_from(LedgerTransaction)
                .where(LedgerTransaction.kind == "charge")
            )
        ).scalar_one()


async def test_a_read_tool_is_charged_on_success_with_a_receipt(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    metered = await metered_call(
        db, agent, "search-specialists", config, ok, arguments={"query": "tax"}
    )
    assert metered.result["ok"] is True
    receipt = metered.receipt
    assert receipt is not None
    assert (receipt.tool, receipt.price_usd_micros, receipt.currency, receipt.amount) == (
        "search-specialists",
        10_000,
        "USDC",
        10_000,
    )
    assert receipt.balance_after == 990_000 == await wallet_balance(db, agent, "USDC")
    assert receipt.call_id == metered.result["call"]
    async with db.uow() as uow:
        history = await transactions_for(uow, agent)
        usage = await usage_for(uow, agent, "2026-03")
    assert [(i.type, i.balance_change) for i in history.data] == [
        ("charge", -10_000),
        ("adjustment", 1_000_000),
    ]
    assert history.data[0].usd_micros == 10_000 and history.data[0].rate == 1_000_000
    assert [
        (u.tool, u.calls, u.paid_calls, u.price_usd_micros, u.amounts) for u in usage.usage
    ] == [("search-specialists", 1, 1, 10_000, {"USDC": 10_000})]
    await audit_ledger(db)


async def test_a_failed_call_costs_nothing(db: Database, config: BillingConfig) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    before = await count_rows(db)
    for tool in ("search-specialists", "create-schedule"):
        with pytest.raises(BookingConflict):
            await metered_call(db, agent, tool, config, fails)
    after = await count_rows(db)
    assert await wallet_balance(db, agent, "USDC") == 1_000_000
    assert await charges(db) == 0
    # The side-effecting tool held and released its price; nothing else was written.
    assert after["billing_usage"] == before["billing_usage"] == 0
    async with db.uow() as uow:
        history = await transactions_for(uow, agent)
    assert [i.type for i in history.data] == ["release", "hold", "adjustment"]
    assert sum(i.balance_change for i in history.data) == 1_000_000
    await audit_ledger(db)


async def test_insufficient_funds_names_price_balance_and_deposit_address_and_writes_nothing(
    db: Database, config: BillingConfig
) -> None:
    from wallets.addresses import deposit_address_for

    agent = await make_agent(db, currency="USDC")
    await fund(db, agent, "USDC", 5_000)
    async with db.uow() as uow:
        address = (await deposit_address_for(uow, agent, "USDC")).address
        await uow.commit()
    before = await count_rows(db)
    ran = []

    async def operation(call: MeteredCall) -> dict[str, Any]:
        ran.append(call)
        return {}

    for tool in ("search-specialists", "book-slot"):
        with pytest.raises(InsufficientFunds) as refused:
            await run_metered(
                db,
                Admission(agent, tool, idempotency_key="k-1"),
                operation,
                config=config,
            )
        details = refused.value.details
        assert details["currency"] == "USDC"
        assert details["balance"] == 5_000
        assert details["deposit_address"] == address
        assert address in refused.value.message
    assert refused.value.details["price"] == 50_000
    assert refused.value.details["price_usd_micros"] == 50_000
    assert refused.value.to_body()["error"]["status"] == 402
    assert ran == []
    assert await count_rows(db) == before
    assert await wallet_balance(db, agent, "USDC") == 5_000


async def test_the_preferred_wallet_pays_first_then_the_others_in_opening_order(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db, currency="ETH")
    await fund(db, agent, "USDT", 1_000_000)
    await fund(db, agent, "BTC", 100_000)
    await fund(db, agent, "ETH", 4_000)  # 4,000 gwei: 0.012 USD at 3,000 USD/ETH
    paid = []
    for _ in range(3):
        metered = await metered_call(db, agent, "search-specialists", config)
        assert metered.receipt is not None
        paid.append((metered.receipt.currency, metered.receipt.amount))
    # 0.01 USD is 3,334 gwei rounded up; the ETH wallet covers one call.
    assert paid == [("ETH", 3_334), ("USDT", 10_000), ("USDT", 10_000)]
    assert await wallet_balance(db, agent, "BTC") == 100_000
    await audit_ledger(db)


async def test_prices_convert_at_the_current_rate_rounded_up(db: Database) -> None:
    rates = FakeRateSource()
    rates.set("BTC", 70_000_000_000)
    config = BillingConfig(prices=load_price_list(), rates=rates)
    agent = await make_agent(db, currency="BTC")
    await fund(db, agent, "BTC", 1_000_000)
    metered = await run_metered(
        db,
        Admission(agent, "view-profile"),
        ok,
        config=BillingConfig(
            prices=PriceList({"view-profile": ToolPrice("view-profile", 20_000)}), rates=rates
        ),
    )
    # 0.02 USD / 70,000 USD per BTC = 28.57 sat -> 29 sat.
    assert metered.receipt is not None
    assert (metered.receipt.amount, metered.receipt.rate) == (29, 70_000_000_000)
    q = await quote(db, agent_id=agent, tool="create-schedule", config=config)
    assert (q.currency, q.amount, q.balance, q.balance_after) == ("BTC", 143, 999_971, 999_828)


async def test_the_free_quota_is_used_first_and_renews_at_the_month_boundary(
    db: Database, clock: FakeClock
) -> None:
    config = BillingConfig(
        prices=PriceList({"view-profile": ToolPrice("view-profile", 20_000, free_per_month=3)}),
        rates=FakeRateSource(),
    )
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    clock.set(datetime(2026, 3, 31, 23, 58, tzinfo=UTC))

    async def view() -> tuple[bool, int]:
        metered = await metered_call(
            db, agent, "view-profile", config, ok, arguments={"specialist_id": 1}
        )
        assert metered.receipt is not None
        return metered.receipt.free, metered.receipt.amount

    march = [await view() for _ in range(4)]
    assert march == [(True, 0), (True, 0), (True, 0), (False, 20_000)]
    q = await quote(db, agent_id=agent, tool="view-profile", config=config)
    assert (q.free, q.free_remaining, q.amount) == (False, 0, 20_000)
    clock.set(datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
    q = await quote(db, agent_id=agent, tool="view-profile", config=config)
    assert (q.free, q.free_remaining, q.amount) == (True, 3, 0)
    april = [await view() for _ in range(4)]
    assert april == march
    async with db.uow() as uow:
        used = {p: await usage_for(uow, agent, p) for p in ("2026-03", "2026-04")}
    for period in used.values():
        (row,) = period.usage
        assert (row.calls, row.free_calls, row.paid_calls, row.price_usd_micros) == (
            4,
            3,
            1,
            20_000,
        )
    assert await wallet_balance(db, agent, "USDC") == 960_000


async def test_a_failed_call_leaves_the_free_quota_untouched_and_a_used_up_quota_refuses_first(
    db: Database,
) -> None:
    config = BillingConfig(
        prices=PriceList({"view-profile": ToolPrice("view-profile", 20_000, free_per_month=1)}),
        rates=FakeRateSource(),
    )
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 30_000)
    ran: list[str] = []

    async def works(call: MeteredCall) -> dict[str, Any]:
        ran.append(call.call_id)
        return {"ok": True}

    async def view(operation: Operation) -> Receipt | None:
        metered = await metered_call(db, agent, "view-profile", config, operation)
        return metered.receipt

    async def free_left() -> int | None:
        return (await quote(db, agent_id=agent, tool="view-profile", config=config)).free_remaining

    # The free call is taken before the operation runs; its failure gives it back.
    before = await count_rows(db)
    with pytest.raises(BookingConflict):
        await view(fails)
    assert await count_rows(db) == before
    assert await free_left() == 1
    free = await view(works)
    assert free == Receipt(ran[-1], "view-profile", 0, None, 0, None, free=True)
    assert free is not None and free.to_dict() == {
        "call_id": ran[-1],
        "tool": "view-profile",
        "price_usd_micros": 0,
        "currency": None,
        "amount": 0,
        "balance_after": None,
        "rate": None,
        "free": True,
        "escrowed": 0,
    }
    assert free.to_dict() == dataclasses.asdict(free)  # every field, including any added later
    assert await free_left() == 0
    # A failed call once the quota is used up costs nothing either.
    before = await count_rows(db)
    with pytest.raises(BookingConflict):
        await view(fails)
    assert await count_rows(db) == before
    paid = await view(works)
    assert paid is not None and (paid.free, paid.amount, paid.balance_after) == (
        False,
        20_000,
        10_000,
    )
    # Used up and unable to pay: refused before the operation runs, nothing written.
    before, calls = await count_rows(db), len(ran)
    with pytest.raises(InsufficientFunds):
        await view(works)
    assert (await count_rows(db), len(ran)) == (before, calls)
    assert await wallet_balance(db, agent, "USDC") == 10_000
    async with db.uow() as uow:
        (row,) = (await usage_for(uow, agent, "2026-03")).usage
    assert (row.calls, row.free_calls, row.paid_calls) == (2, 1, 1)
    await audit_ledger(db)


async def test_the_default_price_list_is_specs(config: BillingConfig) -> None:
    prices = config.prices
    assert prices.for_tool("search-specialists").price_usd_micros == 10_000
    assert (
        prices.for_tool("view-profile").price_usd_micros,
        prices.for_tool("view-profile").free_per_month,
    ) == (20_000, 100)
    assert prices.for_tool("create-schedule").price_usd_micros == 100_000
    assert prices.for_tool("create-schedule").hold and prices.for_tool("book-slot").hold
    assert prices.for_tool("book-slot").price_usd_micros == 50_000
    assert not prices.for_tool("get-availability").paid
    assert prices.booking.commission_percent == 10
    assert prices.booking.late_refund_percent == 50
    assert prices.booking.full_refund_before == timedelta(hours=24)


async def test_a_held_call_stopped_by_a_cancel_scope_gives_its_hold_back_at_once(
    db: Database, config: BillingConfig
) -> None:
    # As when an MCP client goes away: the SDK's cancel scope stops the call and cancels
    # every await made inside it, the release of the hold included unless it is shielded.
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    started, _release, slow = held_open()

    with anyio.move_on_after(5) as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(metered_call, db, agent, "create-schedule", config, slow)
            await started.wait()
            assert await wallet_balance(db, agent, "USDC") == 900_000  # held
            scope.cancel()
    assert scope.cancelled_caught
    assert await wallet_balance(db, agent, "USDC") == 1_000_000
    assert await charges(db) == 0
    async with db.uow() as uow:
        history = await transactions_for(uow, agent)
    assert [i.type for i in history.data] == ["release", "hold", "adjustment"]
    await audit_ledger(db)


async def test_a_keyed_held_call_stopped_before_its_work_gives_hold_and_key_back(
    db: Database, config: BillingConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hold is placed with the key's claim; a call stopped after that transaction and
    # before its work began (here: the key's renewal cannot start) still gives both back.
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    ran: list[str] = []

    async def create(call: MeteredCall) -> dict[str, Any]:
        ran.append(call.call_id)
        return {"ok": True}

    @asynccontextmanager
    async def broken(*_: Any) -> AsyncIterator[None]:
        raise ConnectionError("renewal could not start")
        yield

    monkeypatch.setattr(idempotency, "leased", broken)
    with pytest.raises(ConnectionError):
        await metered_call(db, agent, "create-schedule", config, create, idempotency_key="k-1")
    assert ran == []
    assert await wallet_balance(db, agent, "USDC") == 1_000_000
    async with db.uow() as uow:
        history = await transactions_for(uow, agent)
        keys = (
            await uow.session.execute(select(func.count()).select_from(IdempotencyKey))
        ).scalar()
    assert [i.type for i in history.data] == ["release", "hold", "adjustment"]
    assert keys == 0
    monkeypatch.undo()
    metered = await metered_call(
        db, agent, "create-schedule", config, create, idempotency_key="k-1"
    )
    assert metered.receipt is not None and metered.receipt.amount == 100_000
    await audit_ledger(db)


async def test_a_side_effecting_tool_holds_then_captures(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    balances_seen = []

    async def create(call: MeteredCall) -> dict[str, Any]:
        # While the operation runs, the price is already reserved.
        balances_seen.append(await wallet_balance(db, agent, "USDC"))
        return {"schedule_id": 7}

    metered = await metered_call(
        db, agent, "create-schedule", config, create, arguments={"label": "x"}
    )
    assert metered.receipt is not None
    assert metered.receipt.amount == 100_000 and metered.receipt.balance_after == 900_000
    async with db.uow() as uow:
        history = await transactions_for(uow, agent)
    assert [(i.type, i.balance_change) for i in history.data][:2] == [
        ("charge", 0),
        ("hold", -100_000),
    ]
    assert await wallet_balance(db, agent, "USDC") == 900_000
    await audit_ledger(db)


async def test_stale_holds_of_crashed_calls_are_released(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    await place_hold(
        db,
        Admission(agent, "create-schedule"),
        call_id="crashed",
        fee_usd_micros=100_000,
        config=config,
    )
    assert await wallet_balance(db, agent, "USDC") == 900_000
    assert await release_stale_holds(db, timedelta(minutes=15)) == 0
    clock.advance(timedelta(minutes=16))
    assert await release_stale_holds(db, timedelta(minutes=15)) == 1
    assert await release_stale_holds(db, timedelta(minutes=15)) == 0
    assert await wallet_balance(db, agent, "USDC") == 1_000_000
    assert await charges(db) == 0
    await audit_ledger(db)


async def test_book_slot_pays_fee_and_escrows_the_slot_price_with_the_booking(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 100_000_000)
    schedule = await make_schedule(db, price_amount=40_000_000, price_currency="USD")
    slot = make_slot_id(schedule, datetime(2026, 3, 5, 10, 0, tzinfo=UTC))

    def book(key: str) -> Operation:
        async def operation(call: MeteredCall) -> dict[str, Any]:
            booking = await book_slot(call.uow, agent_id=agent, slot_id=slot, idempotency_key=key)
            await call.escrow(booking)
            return {"booking_id": booking.id}

        return operation

    metered = await run_metered(
        db,
        Admission(
            agent,
            "book-slot",
            arguments={"slot_id": slot},
            idempotency_key="b1",
            extra_price=ExtraPrice(40_000_000, "USD"),
        ),
        book("b1"),
        config=config,
    )
    assert metered.receipt is not None
    assert (metered.receipt.amount, metered.receipt.escrowed) == (50_000, 40_000_000)
    assert metered.receipt.balance_after == 100_000_000 - 40_050_000
    # The same slot again: a conflict, and the hold comes back in full.
    with pytest.raises(BookingConflict):
        await run_metered(
            db,
            Admission(
                agent,
                "book-slot",
                arguments={"slot_id": slot},
                idempotency_key="b2",
                extra_price=ExtraPrice(40_000_000, "USD"),
            ),
            book("b2"),
            config=config,
        )
    assert await wallet_balance(db, agent, "USDC") == 100_000_000 - 40_050_000
    assert await charges(db) == 1
    await audit_ledger(db)


async def test_a_tool_the_price_list_does_not_hold_reads_its_price_lookup_first(
    db: Database,
) -> None:
    # Without ``hold = true`` the lookup decides whether the call is held: an extra price
    # is held and escrowed, none leaves a read call charged in its one transaction.
    config = BillingConfig(
        prices=PriceList({"view-profile": ToolPrice("view-profile", 20_000)}),
        rates=FakeRateSource({"USDC": 1_000_000}),
    )
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 10_000_000)
    looked: list[ExtraPrice | None] = []

    def lookup_of(extra: ExtraPrice | None) -> Any:
        async def lookup(uow: Any) -> ExtraPrice | None:
            looked.append(extra)
            return extra

        return lookup

    async def escrows(call: MeteredCall) -> dict[str, Any]:
        return {"held": call.hold is not None}

    priced = await metered_call(
        db, agent, "view-profile", config, escrows, price_lookup=lookup_of(ExtraPrice(3, "USDC"))
    )
    free = await metered_call(
        db, agent, "view-profile", config, escrows, price_lookup=lookup_of(None)
    )
    assert (priced.result, free.result) == ({"held": True}, {"held": False})
    assert looked == [ExtraPrice(3, "USDC"), None]
    assert priced.receipt is not None and free.receipt is not None
    assert (priced.receipt.amount, free.receipt.amount) == (20_000, 20_000)
    # The held extra price nobody escrowed went back to the wallet.
    assert await wallet_balance(db, agent, "USDC") == 10_000_000 - 40_000
    await audit_ledger(db)


async def bookings_of(db: Database, agent: int) -> int:
    async with db.uow() as uow:
        return (
            await uow.session.execute(
                select(func.count()).select_from(Booking).where(Booking.booker_agent_id == agent)
            )
        ).scalar_one()


async def funded_booker_and_slot(db: Database) -> tuple[int, str]:
    """An agent with 100 USDC and a free slot priced 40 USD."""
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 100_000_000)
    schedule = await make_schedule(db, price_amount=40_000_000, price_currency="USD")
    return agent, make_slot_id(schedule, datetime(2026, 3, 5, 10, 0, tzinfo=UTC))


def book_slot_call(
    db: Database,
    config: BillingConfig,
    agent: int,
    slot: str,
    operation: Operation,
    key: str | None,
) -> Coroutine[Any, Any, Metered]:
    return run_metered(
        db,
        Admission(
            agent,
            "book-slot",
            arguments={"slot_id": slot},
            idempotency_key=key,
            extra_price=ExtraPrice(40_000_000, "USD"),
        ),
        operation,
        config=config,
    )


def book_losing_its_hold(
    db: Database, clock: FakeClock, agent: int, slot: str, losses: int
) -> tuple[list[str], Operation]:
    """A book-slot operation whose first ``losses`` runs last so long that the sweeper
    releases their hold before they finish; (the call ids it ran as, the operation)."""
    runs: list[str] = []

    async def operation(call: MeteredCall) -> dict[str, Any]:
        runs.append(call.call_id)
        if len(runs) <= losses:
            # The sweeper, in its own transaction, finds the hold past stale_hold_after.
            # (It runs before this run's transaction begins: on SQLite it would otherwise
            # wait for this transaction's write lock.)
            clock.advance(timedelta(minutes=16))
            assert await release_stale_holds(db, timedelta(minutes=15)) == 1
        booking = await book_slot(call.uow, agent_id=agent, slot_id=slot, idempotency_key="k")
        await call.escrow(booking)
        return {"booking_id": booking.id}

    return runs, operation


async def test_a_call_whose_hold_was_swept_while_it_ran_starts_over_and_is_charged_once(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, slot = await funded_booker_and_slot(db)
    runs, operation = book_losing_its_hold(db, clock, agent, slot, losses=1)
    metered = await book_slot_call(db, config, agent, slot, operation, "b1")
    assert len(runs) == 2 and runs[0] != runs[1]  # ran again, as a new call
    assert metered.receipt is not None and metered.receipt.call_id == runs[1]
    assert (metered.receipt.amount, metered.receipt.escrowed) == (50_000, 40_000_000)
    assert metered.receipt.balance_after == 100_000_000 - 40_050_000
    # The first run's booking was undone with it: one booking, one charge, one escrow.
    assert await bookings_of(db, agent) == 1
    replay = await book_slot_call(db, config, agent, slot, operation, "b1")
    assert replay.replayed and replay.result == metered.result and len(runs) == 2
    assert await wallet_balance(db, agent, "USDC") == 100_000_000 - 40_050_000
    assert await charges(db) == 1
    await audit_ledger(db)


async def test_a_call_that_loses_its_hold_twice_is_rate_limited_and_changes_nothing(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent, slot = await funded_booker_and_slot(db)
    runs, operation = book_losing_its_hold(db, clock, agent, slot, losses=2)
    with pytest.raises(RateLimited) as refused:
        await book_slot_call(db, config, agent, slot, operation, None)
    assert refused.value.details["retry_after"] == 60
    assert "Nothing was charged" in refused.value.message
    assert len(runs) == 2
    assert await bookings_of(db, agent) == 0
    assert await wallet_balance(db, agent, "USDC") == 100_000_000
    assert await charges(db) == 0
    await audit_ledger(db)


async def test_a_spending_cap_refuses_the_call_that_would_pass_it_and_resets_next_day(
    db: Database, config: BillingConfig, clock: FakeClock
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)

    async def search() -> None:
        await metered_call(db, agent, "search-specialists", config)

    await search()  # spent before the cap is set still counts
    async with db.uow() as uow:
        await set_spending_caps(uow, agent, daily_usd_micros=25_000, monthly_usd_micros=None)
        await uow.commit()
    await search()
    before = await count_rows(db)
    with pytest.raises(SpendingCapReached) as refused:
        await search()
    assert refused.value.details["cap"] == "daily"
    assert refused.value.details["spent_usd_micros"] == 20_000
    assert refused.value.details["resets_at"] == "2026-03-03T00:00:00+00:00"
    assert await count_rows(db) == before
    clock.advance(timedelta(days=1))
    await search()
    assert await wallet_balance(db, agent, "USDC") == 970_000


async def test_usage_period_must_be_a_month(db: Database) -> None:
    from agent_server.kernel.errors import ValidationFailed

    async with db.uow() as uow:
        for bad in ("2026-13", "2026-3", "march", "2026-03-01"):
            with pytest.raises(ValidationFailed) as refused:
                await usage_for(uow, 1, bad)
            assert refused.value.details["fields"][0]["field"] == "period"


async def test_usage_counts_every_successful_call_per_tool(
    db: Database, config: BillingConfig
) -> None:
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 10_000_000)
    for tool, n in (("search-specialists", 3), ("view-profile", 2), ("get-availability", 1)):
        for _ in range(n):
            await metered_call(db, agent, tool, config)
    async with db.uow() as uow:
        usage = await usage_for(uow, agent)
        rows = (await uow.session.execute(select(func.count(UsageRecord.id)))).scalar_one()
    assert rows == 6
    assert {(u.tool, u.calls, u.paid_calls, u.price_usd_micros) for u in usage.usage} == {
        ("search-specialists", 3, 3, 30_000),
        ("view-profile", 2, 0, 0),
        ("get-availability", 1, 0, 0),
    }
    assert usage.total_usd_micros == 30_000


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_one_agents_read_calls_do_not_wait_for_each_other_on_the_free_quota(
    db: Database,
) -> None:
    """A call still running must not hold the agent's quota row: another call of the same
    agent and tool completes meanwhile, free while quota is left and charged after."""
    config = BillingConfig(
        prices=PriceList({"view-profile": ToolPrice("view-profile", 20_000, free_per_month=1)}),
        rates=FakeRateSource(),
    )
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    started, release, slow = held_open()

    def view(operation: Any) -> Any:
        return metered_call(
            db, agent, "view-profile", config, operation, arguments={"specialist_id": 1}
        )

    first = asyncio.create_task(view(slow))
    await asyncio.wait_for(started.wait(), 10)
    second = await asyncio.wait_for(view(ok), 10)  # would wait on a locked quota row
    release.set()
    slow_one = await asyncio.wait_for(first, 10)
    assert second.receipt is not None and slow_one.receipt is not None
    # The quick call took the one free view; the slow one found it gone and paid.
    assert (second.receipt.free, slow_one.receipt.free) == (True, False)
    assert slow_one.receipt.amount == 20_000
    assert await wallet_balance(db, agent, "USDC") == 980_000


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_one_agents_read_calls_do_not_wait_for_each_other_on_the_rate_counter(
    db: Database,
) -> None:
    """The gate's count rides in the call's transaction but takes its row lock only at the
    end: a call still running does not hold up the next call of the same agent and tool."""
    config = BillingConfig(
        prices=PriceList({"search-specialists": ToolPrice("search-specialists", 10_000)}),
        rates=FakeRateSource(),
    )
    agent = await make_agent(db)
    await fund(db, agent, "USDC", 1_000_000)
    settings = Settings(rate_limits={"search-specialists": 2})
    caller = Caller(agent, "a", "a@example.com", AgentStatus.ACTIVE, True, "as_", "USDC")
    started, release, slow = held_open()

    def search(operation: Any) -> Any:
        gate = GatePass(settings, caller, "search-specialists")
        return metered_call(db, agent, "search-specialists", config, operation, gate=gate)

    first = asyncio.create_task(search(slow))
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.wait_for(search(ok), 10)  # would wait on a locked counter row
    release.set()
    await asyncio.wait_for(first, 10)
    # Both counted: the limit of 2 is reached, so a third call is refused before it runs.
    with pytest.raises(RateLimited):
        await search(fails)
    assert await charges(db) == 2
