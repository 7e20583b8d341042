"""``agent-server dev mail`` shows a developer the mails ``make run`` writes to the outbox,
codes included, and ``agent-server --version`` names the installed version."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from importlib.metadata import version

import pytest
from accounts_support import PEPPER, api_for
from click.testing import Result
from typer.testing import CliRunner

from agent_server import __version__
from agent_server.cli import app
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import get_settings


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def _cli(database_url: str, *args: str, **env: str) -> Result:
    environment = {
        "AGENT_SERVER_DATABASE_URL": database_url,
        "AGENT_SERVER_SECRET_PEPPER": PEPPER,
        "AGENT_SERVER_LOG_LEVEL": "WARNING",
        "AGENT_SERVER_SMTP_URL": "",
        **env,
    }

    def invoke() -> Result:
        get_settings.cache_clear()
        return CliRunner().invoke(app, list(args), env=environment)

    return await asyncio.to_thread(invoke)


def _codes(output: str) -> set[str]:
    """The different six-digit codes in ``output``."""
    return set(re.findall(r"\b(\d{6})\b", output))


async def test_dev_mail_prints_the_latest_codes_which_verify(
    database_url: str, clock: FakeClock
) -> None:
    async with api_for(database_url, clock, None) as api:
        empty = await _cli(database_url, "dev", "mail")
        assert empty.exit_code == 0 and "no mail in the outbox" in empty.output

        for email in ("first@example.com", "second@example.com"):
            assert (await api.register(email)).status_code == 201

        both = await _cli(database_url, "dev", "mail", "--last", "5")
        assert both.exit_code == 0, both.output
        # Oldest first: the newest mail is the last one on the screen.
        assert both.output.index("To: first@example.com") < both.output.index(
            "To: second@example.com"
        )
        assert len(_codes(both.output)) == 2

        latest = await _cli(database_url, "dev", "mail", "--last", "1")
        assert "second@example.com" in latest.output and "first@example.com" not in latest.output
        [code] = _codes(latest.output)
        assert (await api.verify("second@example.com", code)).status_code == 200

        only = await _cli(database_url, "dev", "mail", "--to", "FIRST@example.com")
        assert "To: first@example.com" in only.output and "second@" not in only.output
        [code] = _codes(only.output)
        assert (await api.verify("first@example.com", code)).status_code == 200


async def test_dev_mail_refuses_bad_options_by_name(database_url: str) -> None:
    zero = await _cli(database_url, "dev", "mail", "--last", "0")
    assert zero.exit_code == 2 and "--last" in zero.output
    control = await _cli(database_url, "dev", "mail", "--to", "a\x07@example.com")
    assert control.exit_code == 1 and "--to" in control.output
    assert "Traceback" not in control.output


async def test_dev_mail_says_when_mail_goes_to_an_smtp_server(database_url: str) -> None:
    result = await _cli(database_url, "dev", "mail", AGENT_SERVER_SMTP_URL="smtp://127.0.0.1:2525")
    assert result.exit_code == 0
    assert "AGENT_SERVER_SMTP_URL is set" in result.output


def test_version_is_the_installed_one() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"agent-server {version('agent-server')}"
    assert __version__ == version("agent-server")
