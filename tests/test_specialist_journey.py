"""The marketplace's loop from a specialist's side, on a server set up as ``make run`` sets it up.

``agent-server db upgrade`` and ``agent-server demo-data`` prepare an SQLite file; the app that
``agent-server serve`` serves runs on it under uvicorn with its background jobs (booking clock,
webhook worker, mail sender) and a fake clock the test moves. Then: a specialist signs up on
the dashboard in headless Chromium and publishes a schedule; an agent registered over REST and
credited by ``agent-server admin credit`` books it over MCP (streamable HTTP); the specialist
accepts; the session ends, the clock completes it, and once the dispute window has passed the
clock pays the escrow out, less the commission, into the specialist's earnings. Every mail
(sign-up code, booking request, reminder) arrives through a local SMTP server.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dashboard_support import CHROMIUM, CHROMIUM_ARGS, ServerThread, screenshot
from mcp_support import call_ok
from playwright.async_api import async_playwright, expect
from pydantic import SecretStr
from smtp_sink import SmtpSink, free_port
from sqlalchemy import select
from test_mcp_e2e import _cli, _env, _http_client, _register

from agent_server.app import create_app
from agent_server.booking.models import Booking, Specialist
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine
from agent_server.runtime import Runtime
from billing.models import Escrow

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Berlin
NORA = "nora.journey@example.com"
USDC = 1_000_000


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture
async def served(tmp_path: Path, smtp: SmtpSink) -> AsyncIterator[dict[str, Any]]:
    path = tmp_path / "agent_server.db"
    env = _env(path, smtp)
    _cli(env, "db", "upgrade")
    _cli(env, "demo-data", "--if-empty", "--specialists", "30", "--seed", "7")
    clock = FakeClock(START)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        smtp_url=smtp.url,
        secret_pepper=SecretStr("journey-pepper"),
        start_watchers=False,
        start_worker=True,  # as serve: the webhook worker, and the booking clock beside it
        clock_interval=0.2,
    )
    runtime = Runtime.create(settings, clock)
    server = ServerThread(create_app(runtime), free_port())
    server.start()
    db = Database(make_engine(settings.database_url), clock)
    yield {
        "base": server.url,
        "env": env,
        "clock": clock,
        "db": db,
        "commission": runtime.billing.prices.booking.commission_percent,
    }
    server.stop()
    await db.dispose()


async def until(check: Any, timeout: float = 15.0) -> Any:
    """Poll ``check`` (plain or async) until it answers something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        assert time.monotonic() < deadline, "not reached in time"
        await asyncio.sleep(0.05)


def subjects(smtp: SmtpSink, address: str) -> list[str]:
    return [str(m["Subject"]) for m in smtp.to(address)]


async def test_a_signed_up_specialist_is_paid_for_a_session_booked_over_mcp(
    served: dict[str, Any], smtp: SmtpSink
) -> None:
    base, db, clock = served["base"], served["db"], served["clock"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await (await browser.new_context(base_url=base)).new_page()

        # Sign up, then publish a schedule that asks before accepting.
        await page.goto("/sign-up")
        await page.get_by_label("Name").fill("Nora Journey")
        await page.get_by_label("Email").fill(NORA)
        await page.get_by_role("button", name="Email me a sign-up code").click()
        await expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
        code = await asyncio.to_thread(smtp.latest_code, NORA, 10.0)
        await page.get_by_label("Code").fill(code)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.get_by_role("heading", name="Your profile")).to_be_visible()
        await page.get_by_label("Time zone").fill("Europe/Berlin")
        await page.get_by_label("Skills").fill("statistics")
        await page.get_by_role("button", name="Save profile").click()
        await expect(page.get_by_role("status")).to_have_text("Profile saved.")
        await page.goto("/specialist/schedules/new")
        await page.get_by_label("Label").fill("Statistics help")
        await page.get_by_label("Time zone").fill("Europe/Berlin")
        await page.get_by_label("Monday").fill("09:00-12:00")
        await page.get_by_label("Price per slot").fill("40")
        await page.get_by_label("Accept bookings automatically").uncheck()
        await page.get_by_role("button", name="Publish schedule").click()
        await expect(page.get_by_role("status")).to_have_text("Schedule published.")
        rows = page.locator("#schedules-table tbody tr")
        schedule_id = int(str(await rows.first.get_attribute("data-id")))

        # An agent registers, is credited by the operator, and books over MCP.
        agent_id, key = await asyncio.to_thread(_register, base, smtp, "journey-bot@example.com")
        _cli(served["env"], "admin", "credit", str(agent_id), "USDC", "100", "--reason", "top-up")
        async with _http_client(base, key) as client:
            free = await call_ok(
                client,
                "get-availability",
                {
                    "schedule_id": schedule_id,
                    "start": "2026-03-02T00:00:00Z",
                    "end": "2026-03-03T00:00:00Z",
                },
            )
            # 10:00 in Berlin, an hour from now (the 09:00 slot starts now: the clock would
            # expire it unanswered at once).
            slots = free["schedules"][0]["slots"]
            slot_id = next(i for i, local in slots.items() if local.endswith("Mon 10:00-11:00"))
            booked = await call_ok(
                client,
                "book-slot",
                {"slot_id": slot_id, "idempotency_key": "journey-0001", "topic": "Regression"},
            )
        booking_id = int(booked["booking"]["id"])
        assert booked["booking"]["status"] == "pending"
        await until(lambda: any(s.startswith("New booking request") for s in subjects(smtp, NORA)))

        # The specialist accepts; the reminder of a session starting within a day follows.
        await page.goto("/specialist/bookings")
        row = page.locator(f"#booking-{booking_id}")
        await row.get_by_role("button", name=f"Accept booking {booking_id}").click()
        await expect(row.locator("[data-field=status]")).to_have_text("accepted")
        await until(lambda: any(s.startswith("Reminder") for s in subjects(smtp, NORA)))

        # The session ends; the clock completes it AUTO_COMPLETE_AFTER its end.
        async def completed() -> bool:
            async with db.uow() as uow:
                found = await uow.session.get(Booking, booking_id, populate_existing=True)
                await uow.commit()
            return found is not None and found.status == "completed"

        clock.advance(timedelta(hours=5))  # 13:00 UTC: the end (10:00 UTC) plus three hours
        await until(completed)
        await page.goto("/specialist/earnings")
        earnings = page.locator("#earnings-table tbody tr").first
        await expect(earnings).to_contain_text("40.00")  # still held: the dispute window
        async with db.uow() as uow:
            escrow = (
                await uow.session.execute(select(Escrow).where(Escrow.booking_id == booking_id))
            ).scalar_one()
            assert escrow.status == "held"
            await uow.commit()

        # Once the dispute window passed without a dispute, the clock pays out, once.
        clock.advance(timedelta(hours=72))

        async def paid() -> Escrow | None:
            async with db.uow() as uow:
                row = (
                    await uow.session.execute(
                        select(Escrow)
                        .where(Escrow.booking_id == booking_id)
                        .execution_options(populate_existing=True)
                    )
                ).scalar_one()
                await uow.commit()
            return row if row.status == "paid_out" else None

        escrow = await until(paid)
        expected = 40 * USDC * (100 - served["commission"]) // 100
        assert escrow.paid_to_payee == expected
        # Three days on, the session of the browser has expired: sign in again to look.
        await page.goto("/specialist/earnings")
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        mails = len(smtp.to(NORA))
        await page.get_by_label("Email").fill(NORA)
        await page.get_by_role("button", name="Email me a code").click()
        await until(lambda: len(smtp.to(NORA)) > mails)
        await page.get_by_label("Code").fill(smtp.latest_code(NORA))
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await expect(page.get_by_role("heading", name="Your earnings")).to_be_visible()
        shown = f"{expected // USDC}.{expected % USDC // 10_000:02d}"
        await expect(earnings.locator("td").nth(1)).to_contain_text(shown)
        await expect(earnings.locator("td").nth(2)).to_contain_text("0.00")
        await screenshot(page, "journey-earnings")
        async with db.uow() as uow:
            specialist = (
                await uow.session.execute(select(Specialist).where(Specialist.email == NORA))
            ).scalar_one()
            assert escrow.booking_id == booking_id and specialist.name == "Nora Journey"
            await uow.commit()
        await browser.close()
    # Each mail once: the sign-up code, the request, the reminder, the sign-in code.
    kinds = [s.split(":")[0] for s in subjects(smtp, NORA)]
    assert kinds == [
        "Your Agent Server sign-up code",
        "New booking request",
        "Reminder",
        "Your Agent Server sign-in code",
    ]
