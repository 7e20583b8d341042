"""A specialist serves themselves on the dashboard, in real headless Chromium against a real
uvicorn serving ``create_app``: signs up with a code that reaches a local SMTP server, edits
the profile, publishes a schedule, chooses booking mails (which then arrive, or not, through
SMTP as chosen), copies the iCal feed URL with the page's button and sees their earnings.

One server per backend (SQLite file, PostgreSQL) with a fake clock shared with the test;
agents book through the MCP SDK's in-memory client on the same database. Screenshots go to
artifacts/dashboard/.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from dashboard_support import (
    ServerThread,
    chromium,
    module_database,
    screenshot,
    site_settings,
    wait_for,
)
from mcp import Client
from mcp_support import call_ok, make_agent
from playwright.async_api import Browser, Page, expect
from smtp_sink import SmtpSink, free_port
from sqlalchemy import select

from agent_server.app import create_app
from agent_server.booking.models import Specialist
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.store import Database, make_engine
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Berlin
USDC = 1_000_000
NORA = "nora@example.com"


@dataclass
class Site:
    url: str
    smtp: SmtpSink
    db: Database
    runtime: Runtime
    keys: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def mcp(self, agent: str) -> Client:
        key = self.keys[agent]
        return Client(build_mcp_server(self.runtime, api_key_source=lambda: key))

    def subjects(self, address: str) -> list[str]:
        return [str(m["Subject"]) for m in self.smtp.to(address)]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    smtp: SmtpSink,
) -> AsyncIterator[Site]:
    url = await module_database(request, tmp_path_factory, sqlite_template, "signup")
    with smtp.lock:  # each backend's run reads only its own mail
        smtp.messages.clear()
    clock = FakeClock(START)
    settings = site_settings(url, smtp, "signup-test-pepper", clock_interval=0)
    server = ServerThread(create_app(Runtime.create(settings, clock)), free_port())
    server.start()
    db = Database(make_engine(url), clock)
    site = Site(server.url, smtp, db, Runtime(settings=settings, db=db))
    agent_id, key = await make_agent(db, settings, funds=100 * USDC)
    site.keys["booker"] = key
    site.ids["booker"] = agent_id
    yield site
    server.stop()
    await db.dispose()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
async def nora(browser: Browser, site: Site) -> AsyncIterator[Page]:
    """Nora's browser, allowed to use the clipboard (for the copy button)."""
    context = await browser.new_context(
        base_url=site.url,
        viewport={"width": 1280, "height": 900},
        permissions=["clipboard-read", "clipboard-write"],
    )
    page = await context.new_page()
    yield page
    await context.close()


async def code_for(site: Site, address: str, before: int) -> str:
    return await asyncio.to_thread(site.smtp.latest_code, address, after=before)


async def test_an_unknown_email_signs_up_with_a_mailed_code(site: Site, nora: Page) -> None:
    await nora.goto("/sign-in")
    await nora.get_by_role("link", name="Sign up").click()
    await expect(nora.get_by_role("heading", name="Sign up as a specialist")).to_be_visible()
    await nora.get_by_label("Email").fill(NORA)
    await nora.get_by_role("button", name="Email me a sign-up code").click()
    await expect(nora.locator("#name-error")).to_contain_text("enter your name")
    await nora.get_by_label("Name").fill("Nora Nachhilfe")
    before = len(site.smtp.to(NORA))
    await nora.get_by_role("button", name="Email me a sign-up code").click()
    await expect(nora.get_by_role("heading", name="Enter your code")).to_be_visible()
    code = await code_for(site, NORA, before)
    assert site.subjects(NORA)[-1] == "Your Agent Server sign-up code"
    await screenshot(nora, "signup-code")
    wrong = "000000" if code != "000000" else "111111"
    await nora.get_by_label("Code").fill(wrong)
    await nora.get_by_role("button", name="Sign in", exact=True).click()
    await expect(nora.locator("#code-error")).to_contain_text("wrong code")
    async with site.db.uow() as uow:  # a wrong code creates nothing
        assert (
            await uow.session.scalar(select(Specialist.id).where(Specialist.email == NORA)) is None
        )
    await nora.get_by_label("Code").fill(code)
    await nora.get_by_role("button", name="Sign in", exact=True).click()
    await expect(nora.get_by_role("heading", name="Your profile")).to_be_visible()
    await expect(nora.get_by_role("status")).to_contain_text("Welcome!")
    await expect(nora.get_by_label("Name")).to_have_value("Nora Nachhilfe")
    await screenshot(nora, "signup-profile")


async def test_signing_in_stays_silent_about_unknown_emails(site: Site, browser: Browser) -> None:
    """Sign-up added no way to tell registered emails apart: an unknown email asking to sign
    in still gets the same page and no mail."""
    context = await browser.new_context(base_url=site.url)
    page = await context.new_page()
    for address in (NORA, "nobody@example.com"):
        before = len(site.smtp.to(address))
        await page.goto("/sign-in")
        await page.get_by_label("Email").fill(address)
        await page.get_by_role("button", name="Email me a code").click()
        await expect(page.get_by_text("If ")).to_contain_text("belongs to an account")
        if address == NORA:
            await code_for(site, NORA, before)
    await asyncio.sleep(0.5)
    assert site.smtp.to("nobody@example.com") == []
    await context.close()


async def test_the_specialist_edits_the_profile(site: Site, nora: Page) -> None:
    await nora.goto("/specialist")
    await nora.get_by_label("Title").fill("Maths tutor")
    await nora.get_by_label("About").fill("Algebra and calculus\nfor exams.")
    await nora.get_by_label("City").fill("Berlin")
    await nora.get_by_label("Country").fill("de")
    await nora.get_by_label("Time zone").fill("Europe/Berlin")
    await nora.get_by_label("Languages").fill("de, EN")
    await nora.get_by_label("Skills").fill("Calculus, Algebra")
    await nora.get_by_label("Education").fill("MSc, Mathematics, TU Berlin, twenty-ten")
    await nora.get_by_label("Hourly rate").fill("60")
    await nora.get_by_role("button", name="Save profile").click()
    await expect(nora.locator("#education-error")).to_contain_text("is not a year like 2012")
    await nora.get_by_label("Education").fill("MSc, Mathematics, TU Berlin, 2010")
    await nora.get_by_role("button", name="Save profile").click()
    await expect(nora.get_by_role("status")).to_have_text("Profile saved.")
    await expect(nora.get_by_label("Languages")).to_have_value("de, en")
    await expect(nora.get_by_label("Education")).to_have_value("MSc, Mathematics, TU Berlin, 2010")
    await screenshot(nora, "signup-profile-saved")
    async with site.db.uow() as uow:
        specialist = (
            await uow.session.execute(select(Specialist).where(Specialist.email == NORA))
        ).scalar_one()
        site.ids["nora"] = specialist.id
        assert (specialist.country, specialist.timezone) == ("DE", "Europe/Berlin")
        assert specialist.hourly_rate == 60 * USDC
        assert specialist.education == [
            {"degree": "MSc", "field": "Mathematics", "institution": "TU Berlin", "year": 2010}
        ]
    async with site.mcp("booker") as client:
        found = await call_ok(client, "view-profile", {"specialist_id": site.ids["nora"]})
    assert found["profile"]["title"] == "Maths tutor"


async def test_the_specialist_publishes_a_schedule_agents_can_book(site: Site, nora: Page) -> None:
    await nora.get_by_role("link", name="Schedules").click()
    await nora.get_by_role("link", name="New schedule").click()
    await nora.get_by_label("Label").fill("Exam prep")
    await nora.get_by_label("Time zone").fill("Europe/Berlin")
    await nora.get_by_label("Monday").fill("09:00-12:00")
    await nora.get_by_label("Tuesday").fill("09:00-12:00")
    await nora.get_by_label("Blackout dates").fill("2026-03-03")
    await nora.get_by_label("Price per slot").fill("30")
    await nora.get_by_label("Seats per slot").fill("2")
    await nora.get_by_label("Accept bookings automatically").uncheck()
    await nora.get_by_role("button", name="Publish schedule").click()
    await expect(nora.get_by_role("status")).to_have_text("Schedule published.")
    rows = nora.locator("#schedules-table tbody tr")
    await expect(rows).to_have_count(1)
    schedule_id = int(str(await rows.first.get_attribute("data-id")))
    site.ids["schedule"] = schedule_id
    async with site.mcp("booker") as client:
        slots = await call_ok(
            client,
            "get-availability",
            {
                "schedule_id": schedule_id,
                "start": "2026-03-02T00:00:00Z",
                "end": "2026-03-04T00:00:00Z",
            },
        )
        profile = await call_ok(client, "view-profile", {"specialist_id": site.ids["nora"]})
    schedule = slots["schedules"][0]
    starts = list(schedule["slots"].values())
    assert starts and not any("2026-03-03" in s for s in starts)  # the blackout day
    assert schedule["capacity"] == 2
    [published] = profile["profile"]["schedules"]
    assert (published["label"], published["price"]["text"]) == ("Exam prep", "30.00 USD")


async def test_booking_mails_arrive_as_the_specialist_chose(site: Site, nora: Page) -> None:
    await nora.get_by_role("link", name="Mails and calendar").click()
    for label in (
        "A new booking",
        "A booking cancelled by the agent or the system",
        "A reminder before each session starts",
    ):
        await expect(nora.get_by_label(label)).to_be_checked()
    # Mails about new bookings: yes. Then: no.
    async with site.mcp("booker") as client:
        slots = await call_ok(
            client,
            "get-availability",
            {
                "schedule_id": site.ids["schedule"],
                "start": "2026-03-02T00:00:00Z",
                "end": "2026-03-03T00:00:00Z",
            },
        )
        first, second = list(slots["schedules"][0]["slots"])[:2]
        booked = await call_ok(
            client,
            "book-slot",
            {"slot_id": first, "idempotency_key": "nora-booking-1", "topic": "Integrals"},
        )
    await wait_for(lambda: any(s.startswith("New booking request") for s in site.subjects(NORA)))
    mail = site.smtp.to(NORA)[-1]
    text = mail.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Monday 02 March 2026, 09:00 to 10:00 (Europe/Berlin)" in text
    assert "Topic: Integrals" in text
    site.ids["booking"] = booked["booking"]["id"]

    await nora.get_by_label("A new booking").uncheck()
    await nora.get_by_role("button", name="Save mail choices").click()
    await expect(nora.get_by_role("status")).to_have_text("Mail choices saved.")
    await expect(nora.get_by_label("A new booking")).not_to_be_checked()
    await expect(
        nora.get_by_label("A booking cancelled by the agent or the system")
    ).to_be_checked()
    await screenshot(nora, "specialist-mails")
    count = len(site.smtp.to(NORA))
    async with site.mcp("booker") as client:
        other = await call_ok(
            client, "book-slot", {"slot_id": second, "idempotency_key": "nora-booking-2"}
        )
        await call_ok(
            client,
            "cancel-booking",
            {"booking_id": other["booking"]["id"], "reason_code": "no_time"},
        )
    await wait_for(lambda: len(site.smtp.to(NORA)) > count)
    await asyncio.sleep(1.5)  # a sender's poll: nothing else arrives
    assert [s.split(":")[0] for s in site.subjects(NORA)[count:]] == ["Booking cancelled"]


async def test_the_copy_button_copies_a_working_ical_feed_url(site: Site, nora: Page) -> None:
    await nora.goto("/specialist/notifications")
    await nora.get_by_role("button", name="Make a feed URL").click()
    shown = await nora.get_by_label("Your feed URL").input_value()
    assert shown.startswith(f"{site.url}/calendar/feed/cal_")
    await nora.get_by_role("button", name="Copy feed URL").click()
    await expect(nora.locator("#feed-url-copied")).to_have_text("Copied.")
    copied = await nora.evaluate("navigator.clipboard.readText()")
    assert copied == shown
    await screenshot(nora, "specialist-calendar")
    async with httpx.AsyncClient() as client:
        feed = await client.get(copied)
    assert feed.status_code == 200
    assert feed.headers["content-type"].startswith("text/calendar")
    assert f"booking-{site.ids['booking']}@agent-server" in feed.text
    # A new URL retires the copied one.
    await nora.get_by_role("button", name="Make another feed URL").click()
    assert await nora.get_by_label("Your feed URL").input_value() != copied
    async with httpx.AsyncClient() as client:
        assert (await client.get(copied)).status_code == 404


async def test_the_specialist_sees_bookings_and_earnings(site: Site, nora: Page) -> None:
    await nora.get_by_role("link", name="Bookings").click()
    row = nora.locator(f"#booking-{site.ids['booking']}")
    await expect(row.locator("[data-field=status]")).to_have_text("pending")
    await nora.get_by_role("link", name="Earnings").click()
    table = nora.locator("#earnings-table")
    await expect(table).to_contain_text("USD")
    await expect(table.locator("tbody tr").first).to_contain_text("30.00")
    await screenshot(nora, "specialist-earnings")
