"""The dashboard in real headless Chromium against a real uvicorn serving ``create_app``.

One server (SQLite file, SMTP to a local aiosmtpd sink, a fake clock shared with the test)
and one browser for the module; each person signs in once with the code read from the SMTP
server and keeps their browser context. Agents call tools through the MCP SDK's in-memory
client on the same database, so what the pages show comes from real tool calls and the real
ledger. Every page visited is saved as a screenshot under artifacts/dashboard/.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from dashboard_support import (
    ServerThread,
    chromium,
    decode_qr,
    module_database,
    screenshot,
    site_settings,
)
from mcp import Client
from mcp_support import body, call_ok, make_agent
from oauth_support import pkce
from oauth_support import register as oauth_register
from oauth_support import start as oauth_start
from playwright.async_api import Browser, BrowserContext, Page, expect
from smtp_sink import SmtpSink, free_port
from soak_audit import booking_consistency
from sqlalchemy import func, select, update

from agent_server.accounts.models import Agent
from agent_server.app import create_app
from agent_server.booking.models import Booking, Specialist
from agent_server.booking.schedules import ScheduleOwner
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.money import usd_text
from agent_server.kernel.store import Database, make_engine
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from agent_server.services.bookings import accept_booking
from agent_server.services.clock import BookingClock, ClockConfig
from billing.models import (
    AccountKind,
    Escrow,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    UsageRecord,
)
from billing.usage import transactions_for
from billing.wallet_funds import adjust_balance, balances

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Berlin
USDC = 1_000_000
OPERATOR = "ops@example.com"


@dataclass
class Site:
    url: str
    smtp: SmtpSink
    clock: FakeClock
    db: Database
    runtime: Runtime  # the test's own, for MCP calls and direct checks
    ids: dict[str, int] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    specialist_id: int = 0

    def mcp(self, agent: str) -> Client:
        key = self.keys[agent]
        return Client(build_mcp_server(self.runtime, api_key_source=lambda: key))


async def _owned_agent(site: Site, name: str, owner: str, funds: int) -> None:
    agent_id, key = await make_agent(site.db, site.runtime.settings, funds=funds)
    async with site.db.uow() as uow:
        await uow.session.execute(
            update(Agent).where(Agent.id == agent_id).values(owner_email=owner, name=name)
        )
        await uow.commit()
    site.ids[name] = agent_id
    site.keys[name] = key


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def site(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    smtp: SmtpSink,
) -> AsyncIterator[Site]:
    """The server on a fresh database of each backend, with three agents and a specialist."""
    url = await module_database(request, tmp_path_factory, sqlite_template, "dashboard")
    clock = FakeClock(START)
    settings = site_settings(url, smtp, "browser-test-pepper", operator_emails=[OPERATOR])
    server = ServerThread(create_app(Runtime.create(settings, clock)), free_port())
    server.start()
    db = Database(make_engine(url), clock)
    site = Site(server.url, smtp, clock, db, Runtime(settings=settings, db=db))
    await _owned_agent(site, "Alpha Bot", "alice@example.com", 25 * USDC)
    await _owned_agent(site, "Second Bot", "alice@example.com", 200 * USDC)
    await _owned_agent(site, "Bravo Bot", "bob@example.com", 10 * USDC)
    async with db.uow() as uow:
        now = uow.clock.now()
        sam = Specialist(
            name="Sam Steuer",
            title="Tax advisor",
            timezone="Europe/Berlin",
            city="Berlin",
            country="DE",
            languages=["de"],
            skills=["bookkeeping"],
            email="sam@example.com",
            created_at=now,
            updated_at=now,
        )
        uow.session.add(sam)
        await uow.commit()
        site.specialist_id = sam.id
    yield site
    server.stop()
    await db.dispose()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def new_context(browser: Browser, site: Site) -> BrowserContext:
    return await browser.new_context(
        base_url=site.url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )


async def sign_in(page: Page, site: Site, email: str, shots: str | None = None) -> None:
    """Sign in through the forms with the code that reached the SMTP server."""
    mails_before = len(site.smtp.to(email))
    await page.goto("/sign-in")
    await page.get_by_label("Email").fill(email)
    await page.get_by_role("button", name="Email me a code").click()
    await expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    code = await asyncio.to_thread(site.smtp.latest_code, email, after=mails_before)
    if shots:
        await screenshot(page, f"{shots}-code")
    await page.get_by_label("Code").fill(code)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def person(browser: Browser, site: Site, email: str) -> AsyncIterator[Page]:
    context = await new_context(browser, site)
    page = await context.new_page()
    await sign_in(page, site, email)
    yield page
    await context.close()


@pytest.fixture(scope="module")
async def alice(browser: Browser, site: Site) -> AsyncIterator[Page]:
    async for page in person(browser, site, "alice@example.com"):
        yield page


@pytest.fixture(scope="module")
async def bob(browser: Browser, site: Site) -> AsyncIterator[Page]:
    async for page in person(browser, site, "bob@example.com"):
        yield page


@pytest.fixture(scope="module")
async def sam(browser: Browser, site: Site) -> AsyncIterator[Page]:
    async for page in person(browser, site, "sam@example.com"):
        yield page


@pytest.fixture(scope="module")
async def operator(browser: Browser, site: Site) -> AsyncIterator[Page]:
    async for page in person(browser, site, OPERATOR):
        yield page


async def csrf_of(page: Page) -> str:
    return str(await page.locator("form.signout input[name=csrf_token]").input_value())


# --- sign-in -----------------------------------------------------------------------------------


async def test_owner_signs_in_with_the_code_from_the_mail_using_the_keyboard(
    browser: Browser, site: Site
) -> None:
    context = await new_context(browser, site)
    page = await context.new_page()
    await page.goto("/agents/1/wallet")
    assert page.url.startswith(f"{site.url}/sign-in?next=")
    await screenshot(page, "signin")
    await page.keyboard.press("Tab")  # the skip link comes first
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.get_by_label("Email").focus()
    await page.keyboard.type("Alice@Example.com")
    mails_before = len(site.smtp.to("alice@example.com"))
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("heading", name="Enter your code")).to_be_visible()
    code = await asyncio.to_thread(site.smtp.latest_code, "alice@example.com", after=mails_before)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    await page.get_by_label("Code").fill(wrong)
    await page.keyboard.press("Enter")
    await expect(page.locator("#code-error")).to_have_text("wrong code; 4 tries left")
    await screenshot(page, "signin-wrong-code")
    await page.get_by_label("Code").fill(code)
    await page.keyboard.press("Enter")
    # Back to the page that asked for the sign-in, with the session cookie set as promised.
    await page.wait_for_url(f"{site.url}/agents/1/wallet")
    cookie = next(c for c in await context.cookies() if c["name"] == "as_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    await page.goto("/")
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    names = await page.locator("table.list tbody td:first-child a").all_inner_texts()
    assert names == ["Alpha Bot", "Second Bot"]
    await screenshot(page, "overview")
    # Sign out: the cookie no longer opens anything.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(f"/agents/{site.ids['Alpha Bot']}")
    assert page.url.startswith(f"{site.url}/sign-in")
    await context.close()


async def test_a_regenerate_form_sent_again_keeps_the_key_it_made(site: Site, bob: Page) -> None:
    agent_id = site.ids["Bravo Bot"]
    await bob.goto(f"/agents/{agent_id}")
    await bob.get_by_role("button", name="Regenerate API key").click()
    made = await bob.get_by_role("textbox", name="New API key").input_value()
    assert made != site.keys["Bravo Bot"]

    await bob.reload()  # the browser sends the same form again
    await expect(bob.get_by_role("status")).to_contain_text("nothing changed")
    await expect(bob.get_by_role("textbox", name="New API key")).to_have_count(0)
    await expect(bob.locator("[data-field=key-prefix]")).to_have_text(f"{made[:12]}…")
    site.keys["Bravo Bot"] = made
    async with site.mcp("Bravo Bot") as client:  # the key shown once still works
        assert not (await client.call_tool("get-wallet", {})).is_error

    # A page shown before that regeneration is just as stale.
    stale = await bob.context.new_page()
    await stale.goto(f"/agents/{agent_id}")
    await bob.goto(f"/agents/{agent_id}")
    await bob.get_by_role("button", name="Regenerate API key").click()
    newest = await bob.get_by_role("textbox", name="New API key").input_value()
    await stale.get_by_role("button", name="Regenerate API key").click()
    await expect(stale.get_by_role("status")).to_contain_text("nothing changed")
    await stale.close()
    site.keys["Bravo Bot"] = newest
    async with site.mcp("Bravo Bot") as client:
        assert not (await client.call_tool("get-wallet", {})).is_error


async def test_posts_without_the_session_csrf_token_are_refused(site: Site, bob: Page) -> None:
    agent_id = site.ids["Bravo Bot"]
    response = await bob.context.request.post(f"/agents/{agent_id}/key", form={"x": "1"})
    assert response.status == 403
    response = await bob.context.request.post(
        f"/agents/{agent_id}/key", form={"csrf_token": "0" * 64}
    )
    assert response.status == 403
    async with site.mcp("Bravo Bot") as client:  # the key still works
        assert not (await client.call_tool("get-wallet", {})).is_error


# --- owner pages -------------------------------------------------------------------------------


async def test_balance_changes_after_a_credit(site: Site, alice: Page) -> None:
    agent_id = site.ids["Alpha Bot"]
    await alice.goto(f"/agents/{agent_id}/wallet")
    usdc = alice.locator("#balances tr[data-currency=USDC] [data-field=balance]")
    await expect(usdc).to_have_text("25.00")
    await expect(alice.locator("[data-field=total-usd]")).to_have_text("25.00 USD")
    async with site.db.uow() as uow:
        await adjust_balance(
            uow, agent_id=agent_id, currency="USDC", amount=7_500_000, reason="goodwill credit"
        )
        await uow.commit()
    await alice.reload()
    await expect(usdc).to_have_text("32.50")
    await expect(alice.locator("[data-field=total-usd]")).to_have_text("32.50 USD")
    await screenshot(alice, "wallet")


async def test_qr_codes_decode_to_the_deposit_addresses(site: Site, alice: Page) -> None:
    agent_id = site.ids["Alpha Bot"]
    await alice.goto(f"/agents/{agent_id}/wallet")
    await alice.get_by_role("button", name="Get a BTC address").click()
    await expect(alice.get_by_role("status")).to_have_text("Deposit address ready.")
    await screenshot(alice, "wallet-addresses")
    for currency in ("USDC", "BTC"):
        card = alice.locator(f"article.address[data-currency={currency}]")
        address = (await card.locator("[data-field=address]").inner_text()).strip()
        decoded = decode_qr(await card.locator("svg.qr").screenshot())
        assert decoded == [address], currency
    # On a phone the page reflows into one column instead of scrolling sideways.
    await alice.set_viewport_size({"width": 390, "height": 844})
    assert await alice.evaluate("document.documentElement.scrollWidth") <= 390
    await screenshot(alice, "wallet-phone")
    await alice.set_viewport_size({"width": 1280, "height": 900})
    evm = await alice.locator("article[data-currency=ETH] [data-field=address]").inner_text()
    assert (
        evm.startswith("0x")
        and evm
        == await alice.locator("article[data-currency=USDC] [data-field=address]").inner_text()
    )


async def test_usage_chart_shows_the_numbers_of_the_ledger(site: Site, alice: Page) -> None:
    agent_id = site.ids["Alpha Bot"]
    async with site.mcp("Alpha Bot") as client:
        for _ in range(3):
            await call_ok(client, "search-specialists", {"limit": 5})
        await call_ok(client, "get-wallet", {})
    async with site.db.uow() as uow:
        charged = {
            str(tool): (int(n), int(usd))
            for tool, n, usd in await uow.session.execute(
                select(
                    LedgerTransaction.tool,
                    func.count(),
                    func.sum(LedgerTransaction.price_usd_micros),
                )
                .where(LedgerTransaction.agent_id == agent_id, LedgerTransaction.kind == "charge")
                .group_by(LedgerTransaction.tool)
            )
        }
        calls = {
            str(tool): int(n)
            for tool, n in await uow.session.execute(
                select(UsageRecord.tool, func.count())
                .where(UsageRecord.agent_id == agent_id)
                .group_by(UsageRecord.tool)
            )
        }
        await uow.commit()
    assert charged["search-specialists"] == (3, 30_000)
    await alice.goto(f"/agents/{agent_id}/usage")
    bars = alice.locator("#usage-chart g.bar")
    await expect(bars).to_have_count(len(calls))
    shown: dict[str, tuple[int, str]] = {}
    for i in range(await bars.count()):
        bar = bars.nth(i)
        tool = str(await bar.get_attribute("data-tool"))
        shown[tool] = (
            int(str(await bar.get_attribute("data-calls"))),
            await bar.locator("text.bar-value").text_content() or "",
        )
        width = float(str(await bar.locator("rect").get_attribute("width")))
        assert width > 0
    for tool, count in calls.items():
        _, usd = charged.get(tool, (0, 0))
        label_calls = "1 call" if count == 1 else f"{count} calls"
        assert shown[tool] == (count, f"{label_calls} · {usd_text(usd)}"), tool
    total = sum(usd for _, usd in charged.values())
    await expect(alice.locator("[data-field=usage-total]")).to_have_text(usd_text(total))
    await screenshot(alice, "usage")
    # The period selector swaps the chart in place (htmx) and keeps the address bar in step.
    await alice.get_by_label("Month").select_option("2026-02")
    await expect(alice.locator("#usage h2")).to_have_text("Usage in 2026-02")
    await expect(alice.locator("#usage .empty")).to_have_text("No tool calls in 2026-02.")
    assert alice.url.endswith("period=2026-02")
    await screenshot(alice, "usage-empty-month")
    await alice.get_by_label("Month").select_option("2026-03")
    await expect(bars).to_have_count(len(calls))
    async with alice.expect_download() as info:
        await alice.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(await (await info.value).path()).read_text())))
    assert {r["tool"]: int(r["calls"]) for r in rows} == calls
    assert {r["tool"]: int(r["usd_micros"]) for r in rows if r["tool"] in charged} == {
        t: usd for t, (_, usd) in charged.items()
    }


async def _page_transactions(page: Page) -> list[dict[str, str]]:
    rows = page.locator("#transactions-table tbody tr")
    out = []
    for i in range(await rows.count()):
        row = rows.nth(i)
        cells = row.locator("td")
        out.append(
            {
                "id": str(await row.get_attribute("data-id")),
                "type": (await cells.nth(2).inner_text()).strip(),
                "currency": (await cells.nth(3).inner_text()).strip(),
                "amount": str(await cells.nth(4).get_attribute("data-base-units")),
                "balance_change": str(await cells.nth(5).get_attribute("data-base-units")),
            }
        )
    return out


async def _download_csv(page: Page) -> list[dict[str, str]]:
    async with page.expect_download() as info:
        await page.locator("#export-transactions").click()
    download = await info.value
    return list(csv.DictReader(io.StringIO(Path(await download.path()).read_text())))


async def test_csv_export_matches_the_transactions(site: Site, alice: Page) -> None:
    agent_id = site.ids["Alpha Bot"]
    async with site.mcp("Alpha Bot") as client:
        await call_ok(client, "search-specialists", {"limit": 3})
    await alice.goto(f"/agents/{agent_id}/transactions")
    shown = await _page_transactions(alice)
    assert shown
    await screenshot(alice, "transactions")
    exported = await _download_csv(alice)
    keys = ("id", "type", "currency", "amount", "balance_change")
    assert [{k: r[k] for k in keys} for r in exported] == shown
    async with site.db.uow() as uow:
        ledger = await transactions_for(uow, agent_id)
        await uow.commit()
    assert [
        (int(r["id"]), r["type"], r["currency"], int(r["amount"]), int(r["balance_change"]))
        for r in exported
    ] == [(t.id, t.type, t.currency, t.amount, t.balance_change) for t in ledger.data]
    assert {r["type"] for r in exported} >= {"adjustment", "charge"}
    # Filtered by type: the table (swapped in place) and the export agree.
    await alice.get_by_label("Type").select_option("charge")
    await expect(alice.locator("#transactions-table tbody tr")).to_have_count(
        sum(1 for r in exported if r["type"] == "charge")
    )
    charges = await _page_transactions(alice)
    assert {r["type"] for r in charges} == {"charge"}
    await screenshot(alice, "transactions-charges")
    exported_charges = await _download_csv(alice)
    assert [{k: r[k] for k in keys} for r in exported_charges] == charges


async def test_owner_manages_key_caps_and_callback(site: Site, bob: Page) -> None:
    agent_id = site.ids["Bravo Bot"]
    await bob.goto(f"/agents/{agent_id}")
    old_key = site.keys["Bravo Bot"]
    await expect(bob.locator("[data-field=key-prefix]")).to_have_text(f"{old_key[:12]}…")
    await screenshot(bob, "agent-settings")
    await bob.get_by_role("button", name="Regenerate API key").click()
    new_key = await bob.get_by_role("textbox", name="New API key").input_value()
    assert new_key.startswith("as_live_") and new_key != old_key
    await expect(bob.locator("[data-field=key-prefix]")).to_have_text(f"{new_key[:12]}…")
    await screenshot(bob, "agent-new-key")
    async with site.mcp("Bravo Bot") as client:
        refused = await client.call_tool("get-wallet", {})
    assert refused.is_error and body(refused)["error"]["code"] == "UNAUTHORIZED"
    site.keys["Bravo Bot"] = new_key
    async with site.mcp("Bravo Bot") as client:
        assert not (await client.call_tool("get-wallet", {})).is_error
    await bob.goto(f"/agents/{agent_id}")
    await expect(bob.get_by_role("textbox", name="New API key")).to_have_count(0)  # shown once

    await bob.get_by_label("Daily cap (USD)").fill("abc")
    await bob.get_by_role("button", name="Save caps").click()
    await expect(bob.locator("#daily-error")).to_be_visible()
    await bob.get_by_label("Daily cap (USD)").fill("0.02")
    await bob.get_by_label("Monthly cap (USD)").fill("")
    await bob.get_by_role("button", name="Save caps").click()
    await expect(bob.get_by_role("status")).to_have_text("Spending caps saved.")
    await expect(bob.get_by_label("Daily cap (USD)")).to_have_value("0.02")
    async with site.mcp("Bravo Bot") as client:
        await call_ok(client, "search-specialists", {"limit": 1})
        await call_ok(client, "search-specialists", {"limit": 1})
        capped = await client.call_tool("search-specialists", {"limit": 1})
    assert body(capped)["error"]["code"] == "SPENDING_CAP"
    # The agent cannot raise its own cap; the signed-in owner can, here.
    async with site.mcp("Bravo Bot") as client:
        refused = await client.call_tool("set-spending-limits", {"daily_cap_usd_micros": 50_000})
    assert body(refused)["error"]["code"] == "FORBIDDEN"
    assert "dashboard" in body(refused)["error"]["next_step"]
    await bob.goto(f"/agents/{agent_id}")
    await expect(bob.locator("[data-field=spent]")).to_contain_text("Spent today $0.02")
    await bob.get_by_label("Daily cap (USD)").fill("0.05")
    await bob.get_by_label("Low-balance alert below (USD)").fill("2.5")
    await bob.get_by_role("button", name="Save caps").click()
    await expect(bob.get_by_role("status")).to_have_text("Spending caps saved.")
    async with site.mcp("Bravo Bot") as client:
        await call_ok(client, "search-specialists", {"limit": 1})
        seen = await call_ok(client, "get-spending-limits", {})
    assert seen["daily_cap_usd_micros"] == 50_000
    assert seen["balance_low_usd_micros"] == 2_500_000

    await bob.get_by_label("Callback URL").fill("ftp://example.com/hook")
    await bob.get_by_role("button", name="Save callback URL").click()
    await expect(bob.locator("#callback-error")).to_be_visible()
    await bob.get_by_label("Callback URL").fill("https://example.com/hooks/agent")
    await bob.get_by_role("button", name="Save callback URL").click()
    await expect(bob.get_by_role("status")).to_have_text("Callback URL saved.")
    async with site.db.uow() as uow:
        agent = await uow.session.get(Agent, agent_id)
        assert agent is not None and agent.callback_url == "https://example.com/hooks/agent"
        await uow.commit()
    await screenshot(bob, "agent-settings-saved")


async def test_an_owner_cannot_open_another_owners_agent(
    site: Site, alice: Page, bob: Page
) -> None:
    theirs = site.ids["Bravo Bot"]
    for path in ("", "/wallet", "/usage", "/transactions", "/bookings", "/schedules"):
        response = await alice.goto(f"/agents/{theirs}{path}")
        assert response is not None and response.status == 404, path
        await expect(alice.get_by_role("heading", name="Not found")).to_be_visible()
        assert "Bravo Bot" not in await alice.content()
    await screenshot(alice, "not-found")
    for path in ("/usage.csv", "/transactions.csv"):
        response = await alice.context.request.get(f"/agents/{theirs}{path}")
        assert response.status == 404 and "text/csv" not in response.headers["content-type"]
    # Her own session's CSRF token does not make his agent hers.
    token = await csrf_of(alice)
    for path in ("/key", "/caps", "/callback"):
        response = await alice.context.request.post(
            f"/agents/{theirs}{path}",
            form={"csrf_token": token, "daily_cap": "0", "callback_url": "https://evil.example"},
        )
        assert response.status == 404, path
    async with site.mcp("Bravo Bot") as client:  # his key still works
        assert not (await client.call_tool("get-wallet", {})).is_error
    response = await bob.goto(f"/agents/{theirs}/wallet")
    assert response is not None and response.status == 200
    response = await alice.goto("/agents/not-a-number")
    assert response is not None and response.status == 404
    await expect(alice.get_by_role("heading", name="Not found")).to_be_visible()
    mine = site.ids["Alpha Bot"]
    for query in ("page=0", "type=bogus"):
        response = await alice.goto(f"/agents/{mine}/transactions?{query}")
        assert response is not None and response.status == 422, query
    # Nor is she an operator or a specialist.
    response = await alice.goto("/operator/agents")
    assert response is not None and response.status == 403
    response = await alice.goto("/specialist/schedules")
    assert response is not None and response.status == 403


# --- specialist pages --------------------------------------------------------------------------


async def test_specialist_schedule_is_found_by_search_specialists(site: Site, sam: Page) -> None:
    await sam.goto("/specialist")
    await screenshot(sam, "specialist-profile")
    await sam.get_by_label("Skills").fill("Tax Law, VAT, bookkeeping")
    await sam.get_by_label("Languages").fill("de, en")
    await sam.get_by_role("button", name="Save profile").click()
    await expect(sam.get_by_role("status")).to_have_text("Profile saved.")
    await expect(sam.get_by_label("Skills")).to_have_value("tax-law, vat, bookkeeping")

    await sam.goto("/specialist/schedules")
    await sam.get_by_role("link", name="New schedule").click()
    await sam.get_by_label("Label").fill("Tax clinic")
    await sam.get_by_label("Time zone").fill("Europe/Berlin")
    await sam.get_by_label("Monday").fill("9 to noon")
    await sam.get_by_label("Price per slot").fill("40")
    await sam.get_by_role("button", name="Publish schedule").click()
    await expect(sam.locator("#hours_mon-error")).to_contain_text("write hours like 09:00-12:00")
    await screenshot(sam, "schedule-errors")
    await sam.get_by_label("Monday").fill("09:00-12:00")
    await sam.get_by_label("Tuesday").fill("09:00-12:00, 14:00-17:00")
    await sam.get_by_label("Blackout dates").fill("2026-03-03")
    await sam.get_by_label("Seats per slot").fill("2")
    await sam.get_by_label("Accept bookings automatically").uncheck()
    await screenshot(sam, "schedule-new")
    await sam.get_by_role("button", name="Publish schedule").click()
    await expect(sam.get_by_role("status")).to_have_text("Schedule published.")
    rows = sam.locator("#schedules-table tbody tr")
    await expect(rows).to_have_count(1)
    schedule_id = int(str(await rows.first.get_attribute("data-id")))
    await expect(rows.first).to_contain_text("40.00 USD")
    await screenshot(sam, "specialist-schedules")

    async with site.mcp("Second Bot") as client:
        found = await call_ok(
            client,
            "search-specialists",
            {"skills": ["tax-law"], "timezone": "Europe/Berlin", "limit": 10},
        )
    hit = next(i for i in found["items"] if i["id"] == site.specialist_id)
    schedule = next(s for s in hit["schedules"] if s["id"] == schedule_id)
    assert schedule["label"] == "Tax clinic"
    assert schedule["price"] == {"amount": 40 * USDC, "currency": "USD", "text": "40.00 USD"}
    assert schedule["capacity"] == 2
    # The blackout day (in the schedule's Berlin time, as the page shows it) offers nothing.
    assert schedule["slots"] and not any("2026-03-03" in t for t in schedule["slots"].values())

    # Edit: a new price is what search shows next.
    await sam.get_by_role("link", name=f"Edit schedule {schedule_id}").click()
    await screenshot(sam, "schedule-edit")
    await expect(sam.get_by_label("Monday")).to_have_value("09:00-12:00")
    await sam.get_by_label("Price per slot").fill("45.50")
    await sam.get_by_role("button", name="Save schedule").click()
    await expect(sam.get_by_role("status")).to_have_text("Schedule saved.")
    await expect(rows.first).to_contain_text("45.50 USD")
    async with site.mcp("Second Bot") as client:
        found = await call_ok(
            client, "search-specialists", {"skills": ["tax-law"], "timezone": "Europe/Berlin"}
        )
    hit = next(i for i in found["items"] if i["id"] == site.specialist_id)
    assert next(s for s in hit["schedules"] if s["id"] == schedule_id)["price"]["amount"] == (
        45_500_000
    )
    site.ids["schedule"] = schedule_id


async def test_specialist_accepts_completes_and_notes_a_booking(site: Site, sam: Page) -> None:
    schedule_id = site.ids["schedule"]
    async with site.mcp("Second Bot") as client:
        slots = await call_ok(
            client,
            "get-availability",
            {
                "schedule_id": schedule_id,
                "start": "2026-03-02T09:00:00Z",
                "end": "2026-03-03T00:00:00Z",
            },
        )
        slot_id = next(iter(slots["schedules"][0]["slots"]))
        booked = await call_ok(
            client,
            "book-slot",
            {"slot_id": slot_id, "idempotency_key": "dashboard-booking-1", "topic": "VAT return"},
        )
    booking_id = booked["booking"]["id"]
    assert booked["booking"]["status"] == "pending"
    await sam.goto("/specialist/bookings")
    row = sam.locator(f"#booking-{booking_id}")
    await expect(row.locator("[data-field=status]")).to_have_text("pending")
    await screenshot(sam, "specialist-bookings")
    await row.get_by_role("button", name=f"Accept booking {booking_id}").click()
    await expect(row.locator("[data-field=status]")).to_have_text("accepted")
    await expect(row).to_contain_text("Can be completed after")

    async with site.db.uow() as uow:
        booking = await uow.session.get(Booking, booking_id)
        assert booking is not None
        ends = booking.slot_end
        await uow.commit()
    site.clock.set(ends + timedelta(minutes=5))
    await sam.reload()
    await row.get_by_role("button", name=f"Mark completed booking {booking_id}").click()
    await expect(row.locator("[data-field=status]")).to_have_text("completed")
    await row.get_by_label(f"Note on booking {booking_id}").fill("Filed the VAT return together.")
    await row.get_by_role("button", name="Add note").click()
    await expect(row.locator("[data-field=notes]")).to_have_text("Filed the VAT return together.")
    await screenshot(sam, "specialist-bookings-done")

    async def payouts() -> int | None:
        async with site.db.uow() as uow:
            return await uow.session.scalar(
                select(func.count()).where(
                    LedgerTransaction.booking_id == booking_id, LedgerTransaction.kind == "payout"
                )
            )

    # Completed, the escrow is held while the booker may dispute; the clock then pays it.
    ticker = BookingClock(site.db, ClockConfig())
    site.clock.set(ends + timedelta(hours=71))
    assert (await ticker.tick()).released == 0
    assert await payouts() == 0
    site.clock.set(ends + timedelta(hours=72))
    assert (await ticker.tick()).released == 1
    assert await payouts() == 1
    site.clock.set(ends + timedelta(minutes=5))  # where the following tests expect it


async def test_owner_cancels_a_booking_and_gets_the_refund(site: Site, alice: Page) -> None:
    agent_id = site.ids["Second Bot"]
    schedule_id = site.ids["schedule"]
    async with site.mcp("Second Bot") as client:
        slots = await call_ok(
            client,
            "get-availability",
            {
                "schedule_id": schedule_id,
                "start": "2026-03-09T00:00:00Z",
                "end": "2026-03-10T00:00:00Z",
            },
        )
        booked = await call_ok(
            client,
            "book-slot",
            {
                "slot_id": next(iter(slots["schedules"][0]["slots"])),
                "idempotency_key": "dashboard-booking-2",
            },
        )
    booking_id = booked["booking"]["id"]
    await alice.goto(f"/agents/{agent_id}/bookings")
    row = alice.locator(f"#bookings-table tr[data-id='{booking_id}']")
    await expect(row.locator("[data-field=status]")).to_have_text("pending")
    await expect(row).to_contain_text("Sam Steuer")
    await screenshot(alice, "agent-bookings")
    await row.get_by_label(f"Reason for cancelling booking {booking_id}").select_option("no_time")
    await row.get_by_role("button", name="Cancel").click()
    await expect(alice.get_by_role("status")).to_contain_text("Booking cancelled")
    await expect(row.locator("[data-field=status]")).to_have_text("canceled")
    await alice.goto(f"/agents/{agent_id}/transactions?type=refund")
    refund = alice.locator("#transactions-table tbody tr").first
    await expect(refund).to_contain_text(f"refund of booking {booking_id}: 100%")
    await expect(refund.locator("td").nth(5)).to_have_text("45.50")
    await alice.goto(f"/agents/{agent_id}/schedules")
    await expect(alice.locator(".empty")).to_have_text("This agent has no schedules.")
    await screenshot(alice, "agent-schedules")


async def test_specialist_sets_the_place_and_cancels_with_a_full_refund(
    site: Site, sam: Page
) -> None:
    schedule_id = site.ids["schedule"]
    async with site.mcp("Second Bot") as client:
        before = await call_ok(client, "get-wallet", {})
        slots = await call_ok(
            client,
            "get-availability",
            {
                "schedule_id": schedule_id,
                "start": "2026-03-16T00:00:00Z",
                "end": "2026-03-17T00:00:00Z",
            },
        )
        booked = await call_ok(
            client,
            "book-slot",
            {
                "slot_id": next(iter(slots["schedules"][0]["slots"])),
                "idempotency_key": "dashboard-booking-3",
            },
        )
    booking_id = booked["booking"]["id"]
    await sam.goto("/specialist/bookings")
    row = sam.locator(f"#booking-{booking_id}")
    await row.get_by_label(f"Where booking {booking_id} happens").fill("Kanzlei, Room 7")
    await row.get_by_role("button", name=f"Accept booking {booking_id}").click()
    await expect(row.locator("[data-field=status]")).to_have_text("accepted")
    await expect(row.locator("[data-field=location]")).to_have_text("Where: Kanzlei, Room 7")
    await row.get_by_label(f"Where booking {booking_id} happens").fill("https://meet.example/s")
    await row.get_by_role("button", name=f"Save place of booking {booking_id}").click()
    await expect(row.locator("[data-field=location]")).to_have_text("Where: https://meet.example/s")
    async with site.mcp("Second Bot") as client:
        seen = await call_ok(client, "get-booking", {"booking_id": booking_id})
    assert seen["booking"]["location"] == "https://meet.example/s"
    sam.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await row.get_by_label(f"Reason for cancelling booking {booking_id}").fill("Ill")
    await row.get_by_role("button", name=f"Cancel (full refund) booking {booking_id}").click()
    await expect(row.locator("[data-field=status]")).to_have_text("canceled")
    await screenshot(sam, "specialist-booking-cancelled")
    async with site.mcp("Second Bot") as client:
        after = await call_ok(client, "get-wallet", {})
        seen = await call_ok(client, "get-booking", {"booking_id": booking_id})
    assert seen["booking"]["canceled_by"] == "specialist"
    assert seen["history"][-1]["to_status"] == "canceled"
    fee = booked["receipt"]["amount"]["amount"]
    paid = next(w for w in before["wallets"] if w["currency"] == "USDC")["balance"]["amount"]
    left = next(w for w in after["wallets"] if w["currency"] == "USDC")["balance"]["amount"]
    assert paid - left == fee  # the slot price came back in full, the booking fee did not
    assert await booking_consistency(site.db) == []


async def test_owner_reviews_a_completed_booking_once(site: Site, alice: Page) -> None:
    agent_id = site.ids["Second Bot"]
    async with site.db.uow() as uow:
        done = await uow.session.scalar(
            select(Booking.id).where(
                Booking.booker_agent_id == agent_id, Booking.status == "completed"
            )
        )
        waiting = await uow.session.scalar(
            select(Booking.id).where(
                Booking.booker_agent_id == agent_id, Booking.status.in_(["pending", "accepted"])
            )
        )
    assert done is not None
    await alice.goto(f"/agents/{agent_id}/bookings")
    row = alice.locator(f"#bookings-table tr[data-id='{done}']")
    if waiting is not None:  # a session still to come cannot be reviewed yet
        upcoming = alice.locator(f"#bookings-table tr[data-id='{waiting}']")
        await expect(
            upcoming.get_by_role("button", name=f"Review booking {waiting}")
        ).to_have_count(0)
    await row.get_by_label(f"Rating of booking {done}, 1 to 5").select_option("4")
    await row.get_by_label(f"Your review of booking {done}").fill("Clear, patient, on time.")
    await screenshot(alice, "agent-bookings-review")
    await row.get_by_role("button", name=f"Review booking {done}").click()
    await expect(alice.get_by_role("status")).to_contain_text("Review saved")
    await expect(row.locator("[data-field=review]")).to_have_text("Reviewed: 4/5")
    await expect(row.get_by_role("button", name=f"Review booking {done}")).to_have_count(0)
    # A second review of the same booking, posted anyway, is refused and changes nothing.
    again = await alice.context.request.post(
        f"/agents/{agent_id}/bookings/{done}/review",
        form={"csrf_token": await csrf_of(alice), "rating": "1", "text": "again"},
    )
    assert again.status == 409
    async with site.db.uow() as uow:
        sam = await uow.session.get(Specialist, site.specialist_id)
        assert sam is not None
        assert (sam.rating, sam.review_count) == (4.0, 1)
    async with site.mcp("Second Bot") as client:
        profile = await call_ok(client, "view-profile", {"specialist_id": site.specialist_id})
    assert [r["text"] for r in profile["profile"]["reviews"]] == ["Clear, patient, on time."]


async def test_owner_disputes_a_session_and_the_operator_splits_the_escrow(
    site: Site, browser: Browser
) -> None:
    agent_id = site.ids["Second Bot"]
    before = site.clock.now()
    async with site.mcp("Second Bot") as client:
        slots = await call_ok(
            client,
            "get-availability",
            {
                "schedule_id": site.ids["schedule"],
                "start": "2026-03-23T00:00:00Z",
                "end": "2026-03-24T00:00:00Z",
            },
        )
        booked = await call_ok(
            client,
            "book-slot",
            {
                "slot_id": next(iter(slots["schedules"][0]["slots"])),
                "idempotency_key": "dashboard-booking-dispute",
            },
        )
    booking_id = booked["booking"]["id"]
    async with site.db.uow() as uow:
        accepted = await accept_booking(
            uow, ScheduleOwner(specialist_id=site.specialist_id), booking_id, None
        )
        ends = accepted.slot_end
        await uow.commit()
    # Three weeks on: the module's sessions have expired, so both sign in afresh.
    site.clock.set(ends + timedelta(minutes=10))
    owner_pages = person(browser, site, "alice@example.com")
    operator_pages = person(browser, site, OPERATOR)
    alice, operator = await anext(owner_pages), await anext(operator_pages)
    try:
        await _dispute_and_split(site, alice, operator, agent_id, booking_id)
    finally:
        await owner_pages.aclose()
        await operator_pages.aclose()
        site.clock.set(before)  # where the following tests expect it
    assert await booking_consistency(site.db) == []


async def _dispute_and_split(
    site: Site, alice: Page, operator: Page, agent_id: int, booking_id: int
) -> None:
    await alice.goto(f"/agents/{agent_id}/bookings")
    row = alice.locator(f"#bookings-table tr[data-id='{booking_id}']")
    await row.get_by_label(f"Why you dispute booking {booking_id}").select_option("ended_early")
    await row.get_by_label(f"What went wrong in booking {booking_id}").fill("Stopped after 20 min.")
    await screenshot(alice, "agent-bookings-dispute")
    await row.get_by_role("button", name=f"Dispute booking {booking_id}").click()
    await expect(alice.get_by_role("status")).to_contain_text("Dispute opened")
    await expect(row.locator("[data-field=status]")).to_have_text("in_dispute")

    await operator.goto("/operator/disputes")
    queued = operator.locator(f"#dispute-{booking_id}")
    await expect(queued).to_contain_text("Stopped after 20 min.")
    await expect(queued.locator("[data-field=held]")).to_have_text("45.50 USDC")
    await queued.get_by_label(f"Resolution for booking {booking_id}").select_option("split")
    await queued.get_by_label("Refund to the booker in a split (USDC)").fill("20")
    await queued.get_by_label(f"Why, for booking {booking_id}").fill("A third was held.")
    await screenshot(operator, "operator-disputes")
    await queued.get_by_role("button", name=f"Resolve dispute of booking {booking_id}").click()
    await expect(operator.get_by_role("status")).to_have_text(
        "Dispute resolved; the escrow is settled."
    )
    await expect(operator.locator(f"#dispute-{booking_id}")).to_have_count(0)
    await operator.goto("/operator/disputes?status=resolved")
    done = operator.locator(f"#dispute-{booking_id}")
    await expect(done.locator("[data-field=status]")).to_have_text("dispute_done")
    await expect(done).to_contain_text("split: 20.00 USDC refunded")
    await expect(done).to_contain_text(f"by dashboard:{OPERATOR}")
    await expect(done).to_contain_text("A third was held.")
    await alice.goto(f"/agents/{agent_id}/transactions?type=refund")
    await expect(alice.locator("#transactions-table tbody tr").first).to_contain_text(
        f"dispute of booking {booking_id} settled: 20000000 of 45500000 refunded"
    )
    async with site.db.uow() as uow:
        settled = await uow.session.scalar(select(Escrow).where(Escrow.booking_id == booking_id))
        assert settled is not None
        assert (settled.refunded, settled.paid_to_payee, settled.commission) == (
            20_000_000,
            22_950_000,
            2_550_000,
        )


# --- operator pages ----------------------------------------------------------------------------


async def test_operator_suspends_and_reactivates_an_agent(site: Site, operator: Page) -> None:
    agent_id = site.ids["Bravo Bot"]
    await operator.goto("/operator/agents")
    row = operator.locator(f"#operator-agents tr[data-id='{agent_id}']")
    await expect(row.locator("[data-field=status]")).to_have_text("active")
    await screenshot(operator, "operator-agents")
    await row.get_by_label(f"Action for agent {agent_id}").select_option("suspend")
    await row.get_by_label(f"Reason for agent {agent_id}").fill("chargeback under review")
    await row.get_by_role("button", name=f"Apply to agent {agent_id}").click()
    await expect(operator.get_by_role("status")).to_have_text("Agent status changed.")
    await expect(row.locator("[data-field=status]")).to_have_text("suspended")
    async with site.mcp("Bravo Bot") as client:
        refused = await client.call_tool("get-wallet", {})
    assert body(refused)["error"]["code"] == "ACCOUNT_INACTIVE"
    await row.get_by_label(f"Action for agent {agent_id}").select_option("reactivate")
    await row.get_by_label(f"Reason for agent {agent_id}").fill("resolved")
    await row.get_by_role("button", name=f"Apply to agent {agent_id}").click()
    await expect(row.locator("[data-field=status]")).to_have_text("active")
    await screenshot(operator, "operator-agents-after")
    # A change without a reason is refused and changes nothing.
    await row.get_by_label(f"Action for agent {agent_id}").select_option("ban")
    response = await operator.context.request.post(
        f"/operator/agents/{agent_id}/status",
        form={"csrf_token": await csrf_of(operator), "action": "ban", "reason": ""},
    )
    assert response.status == 422
    await operator.reload()
    await expect(row.locator("[data-field=status]")).to_have_text("active")


# --- every page at a desktop's and a phone's width ---------------------------------------------

WIDTHS = (1280, 390)
# Links that lead to a download, a feed or another surface rather than a page.
NOT_PAGES = ("/sign-out", "/static/", "/api/", "/calendar/", ".csv", "export", "/mcp")

FITS = """() => {
  const width = window.innerWidth;
  const problems = [];
  const page = document.documentElement.scrollWidth;
  if (page > width) problems.push(`the page scrolls sideways: ${page}px wide in ${width}px`);
  const actions = document.querySelectorAll(
    "button, input[type=submit], form a, form select, form input:not([type=hidden]), form textarea"
  );
  for (const action of actions) {
    const box = action.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) continue;  // not shown
    if (box.left < -0.5 || box.right > width + 0.5) {
      const name = (action.innerText || action.name || action.id || "").trim().slice(0, 40);
      const at = `${Math.round(box.left)}..${Math.round(box.right)}px`;
      problems.push(`${action.tagName} "${name}" off-screen at ${at}`);
    }
  }
  for (const label of document.querySelectorAll("svg text")) {
    const size = label.getBoundingClientRect().height;
    if (size < 11) problems.push(`chart label "${label.textContent}" is ${size.toFixed(1)}px high`);
  }
  return problems;
}"""


async def _links(page: Page) -> list[str]:
    hrefs: list[str] = await page.eval_on_selector_all(
        "a[href^='/']", "links => links.map(link => link.getAttribute('href'))"
    )
    return [h.split("#")[0] for h in hrefs if not any(part in h for part in NOT_PAGES)]


async def _check_pages(page: Page, who: str, start: list[str], limit: int = 40) -> list[str]:
    """Every page reachable by links from ``start`` (up to ``limit``) at each width: no
    sideways scroll, no action off-screen; a screenshot of each."""
    problems: list[str] = []
    seen: list[str] = []
    queue = list(start)
    while queue and len(seen) < limit:
        path = queue.pop(0)
        if path in seen:
            continue
        seen.append(path)
        for width in WIDTHS:
            await page.set_viewport_size({"width": width, "height": 900})
            response = await page.goto(path)
            assert response is not None
            if response.status >= 500:
                problems.append(f"{path}: {response.status}")
            found: list[str] = await page.evaluate(FITS)
            problems += [f"{who} {path} at {width}px: {p}" for p in found]
            named = path.split("?")[0] if "request=" in path else path  # no one-time handle
            slug = named.strip("/").replace("/", "-").replace("?", "-").replace("=", "-") or "home"
            await screenshot(page, f"fit-{who}-{slug}-{width}")
        queue += [link for link in await _links(page) if link not in seen]
    await page.set_viewport_size({"width": 1280, "height": 900})
    return problems


async def _consent_path(site: Site) -> str:
    """The OAuth consent page a client's /authorize sends a browser to."""
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        client = await oauth_register(http)
        _, challenge = pkce()
        reply = await oauth_start(http, client["client_id"], challenge)
    assert reply.status_code == 302, reply.text
    target = urlsplit(reply.headers["location"])
    return f"{target.path}?{target.query}"


async def test_every_page_fits_a_desktop_and_a_phone(browser: Browser, site: Site) -> None:
    problems: list[str] = []
    consent_page = await _consent_path(site)
    # Fresh sessions: the site's clock may have passed the module's sessions' 12 hours.
    for who, email, start in (
        ("owner", "alice@example.com", ["/", consent_page]),
        ("specialist", "sam@example.com", ["/", "/specialist"]),
        ("operator", OPERATOR, ["/operator"]),
    ):
        pages = person(browser, site, email)
        page = await anext(pages)
        try:
            assert await page.get_by_role("button", name="Sign out").count() == 1
            problems += await _check_pages(page, who, start)
        finally:
            await pages.aclose()
    context = await new_context(browser, site)
    stranger = await context.new_page()
    problems += await _check_pages(
        stranger, "visitor", ["/sign-in", "/sign-up", "/no-such-page"], limit=5
    )
    await context.close()
    assert not problems, "\n".join(problems)


async def test_spend_and_balance_chart_shows_the_ledger(browser: Browser, site: Site) -> None:
    pages = person(browser, site, "alice@example.com")
    try:
        await _spend_and_balance(site, await anext(pages))
    finally:
        await pages.aclose()


async def _spend_and_balance(site: Site, alice: Page) -> None:
    agent_id = site.ids["Alpha Bot"]
    async with site.mcp("Alpha Bot") as client:  # a fee charged today
        await call_ok(client, "search-specialists", {})
    await alice.goto(f"/agents/{agent_id}/wallet")
    days = alice.locator("#daily-chart g.day")
    await expect(days).to_have_count(30)
    shown = [
        (
            str(await days.nth(i).get_attribute("data-day")),
            int(str(await days.nth(i).get_attribute("data-spent"))),
            int(str(await days.nth(i).get_attribute("data-balance"))),
        )
        for i in range(30)
    ]
    async with site.db.uow() as uow:
        now = uow.clock.now()
        first = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
        charges = (
            await uow.session.execute(
                select(LedgerTransaction.created_at, LedgerTransaction.amount).where(
                    LedgerTransaction.agent_id == agent_id,
                    LedgerTransaction.kind == "charge",
                    LedgerTransaction.currency == "USDC",
                    LedgerTransaction.created_at >= first,
                )
            )
        ).all()
        balance = (await balances(uow, agent_id))["USDC"]
        moves = (
            await uow.session.execute(
                select(LedgerTransaction.created_at, LedgerEntry.credit - LedgerEntry.debit)
                .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)
                .where(
                    LedgerAccount.agent_id == agent_id,
                    LedgerAccount.kind == AccountKind.WALLET.value,
                    LedgerAccount.currency == "USDC",
                )
            )
        ).all()
    assert shown[-1][0] == now.date().isoformat()
    assert shown[0][0] == first.date().isoformat()
    by_day: dict[str, int] = {}
    for at, amount in charges:
        by_day[at.date().isoformat()] = by_day.get(at.date().isoformat(), 0) + amount
    assert {day: spent for day, spent, _ in shown if spent} == by_day
    assert by_day.get(now.date().isoformat(), 0) > 0
    assert shown[-1][2] == balance
    # Each day's end: today's balance less what moved in the wallet on the days after it.
    for day, _, shown_balance in shown:
        later = sum(moved for at, moved in moves if at.date().isoformat() > day)
        assert shown_balance == balance - later, day
    await screenshot(alice, "wallet-daily-chart")
