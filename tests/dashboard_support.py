"""Helpers for the browser tests: a module's database and site settings, a real uvicorn in a
thread, headless Chromium, QR decoding."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import png
import pytest
import uvicorn
import zxingcpp
from db_support import truncate_all
from fastapi import FastAPI
from playwright.async_api import Browser, async_playwright
from pydantic import SecretStr
from smtp_sink import SmtpSink

from agent_server.kernel.config import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "dashboard"


async def module_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
    name: str,
) -> str:
    """The URL of an empty migrated database for a module's site, on the backend its fixture
    is parametrised with: a copy of the SQLite template, or the PostgreSQL test database
    emptied."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp(name) / f"{name}.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite+aiosqlite:///{path}"
    url = str(request.getfixturevalue("pg_url"))
    await truncate_all(url)
    return url


def site_settings(url: str, smtp: SmtpSink, pepper: str, **overrides: Any) -> Settings:
    """A browser test's server: mail to ``smtp``, sign-in codes not limited by the one client
    address every browser shares, no chain watchers and no background worker."""
    values: dict[str, Any] = {
        "database_url": url,
        "smtp_url": smtp.url,
        "secret_pepper": SecretStr(pepper),
        "email_checks_per_ip_per_hour": 1000,
        "start_watchers": False,
        "start_worker": False,
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Headless Chromium (the system's), closed when the block ends."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class ServerThread:
    """``uvicorn`` serving ``app`` on 127.0.0.1:``port`` in a thread with its own event loop."""

    def __init__(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard-uvicorn")
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn stopped during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def decode_qr(png_bytes: bytes) -> list[str]:
    """The texts of the QR codes in a PNG screenshot (pypng reads it, zxing-cpp decodes)."""
    width, height, rows, _info = png.Reader(bytes=png_bytes).asRGBA8()
    gray = bytearray()
    for row in rows:
        for i in range(0, len(row), 4):
            gray.append((row[i] * 299 + row[i + 1] * 587 + row[i + 2] * 114) // 1000)
    image = memoryview(bytes(gray)).cast("B", (height, width))
    return [result.text for result in zxingcpp.read_barcodes(image)]


async def screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot under artifacts/dashboard/ (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
