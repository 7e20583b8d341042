"""Swagger UI at /api/docs and ReDoc at /api/redoc in Debian's Chromium with every request
off 127.0.0.1 refused: their scripts, styles and fonts come from the server itself, and both
pages render the API's operations. (ReDoc's footer names its maker with an image from the
maker's site; offline that image removes itself, which the test checks.)"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dashboard_support import CHROMIUM, CHROMIUM_ARGS, ServerThread, screenshot
from playwright.async_api import Browser, Page, Route, async_playwright, expect
from pydantic import SecretStr
from smtp_sink import free_port

from agent_server.app import create_app
from agent_server.kernel.config import Settings
from agent_server.runtime import Runtime


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> ServerThread:
    path = tmp_path_factory.mktemp("docs") / "docs.db"
    shutil.copyfile(sqlite_template, path)
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{path}",
        secret_pepper=SecretStr("docs-test-pepper"),
        start_watchers=False,
        start_worker=False,
    )
    thread = ServerThread(create_app(Runtime.create(settings)), free_port())
    thread.start()
    yield thread  # type: ignore[misc]
    thread.stop()


@pytest.fixture
async def offline_page(server: ServerThread) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page whose requests reach 127.0.0.1 only; the refused requests are collected as
    ``"<resource type> <url>"``."""
    refused: list[str] = []

    async def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            refused.append(f"{route.request.resource_type} {route.request.url}")
            await route.abort("internetdisconnected")

    async with async_playwright() as playwright:
        browser: Browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        context = await browser.new_context(
            base_url=server.url, viewport={"width": 1280, "height": 900}
        )
        await context.route("**/*", only_loopback)
        page = await context.new_page()
        yield page, refused
        await browser.close()


async def test_swagger_ui_renders_the_operations_offline(
    offline_page: tuple[Page, list[str]],
) -> None:
    page, refused = offline_page
    answer = await page.goto("/api/docs")
    assert answer is not None and answer.status == 200
    register = page.locator(".opblock-summary-path", has_text="/agent/register")
    await expect(register.first).to_be_visible(timeout=15_000)
    assert await page.locator(".opblock").count() >= 5
    await screenshot(page, "api-docs-swagger")
    assert refused == []


async def test_redoc_renders_the_operations_offline(offline_page: tuple[Page, list[str]]) -> None:
    page, refused = offline_page
    answer = await page.goto("/api/redoc")
    assert answer is not None and answer.status == 200
    await expect(page.get_by_role("heading", name="Agent Server API").first).to_be_visible(
        timeout=15_000
    )
    # Each operation's endpoint path is rendered in its right-hand panel.
    await expect(page.get_by_text("/agent/register").first).to_be_attached(timeout=15_000)
    await screenshot(page, "api-docs-redoc")
    assert [r for r in refused if not r.startswith("image ")] == []
    broken = await page.evaluate(
        "[...document.images].filter(i => i.isConnected && !i.naturalWidth).map(i => i.src)"
    )
    assert broken == []
