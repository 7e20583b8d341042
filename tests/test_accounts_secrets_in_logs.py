"""No API key and no verification code ever reaches a log line."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from accounts_support import api_for, bearer, outbox_code, wrong_code
from smtp_sink import SmtpSink

from agent_server.gate import admit
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.errors import AgentServerError
from agent_server.kernel.logs import configure_logging


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_sign_up_flow_logs_no_secrets(
    fmt: str,
    database_url: str,
    clock: FakeClock,
    smtp: SmtpSink,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_logging("DEBUG", fmt)
    logging.getLogger("mail.log").setLevel(logging.INFO)  # the test SMTP server's own chatter
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []
    async with api_for(database_url, clock, smtp) as api:
        registered = await api.register("quiet@example.com")
        key = registered.json()["api_key"]
        first = api.code_for("quiet@example.com")
        secrets += [key, first]
        await api.verify("quiet@example.com", wrong_code(first))
        await api.resend("quiet@example.com")
        second = api.code_for("quiet@example.com")
        secrets.append(second)
        await api.verify("quiet@example.com", wrong_code(second))
        settings = api.runtime.settings
        for candidate in (key, key + "x"):
            with pytest.raises(AgentServerError):
                await admit(api.runtime.db, candidate, "search-specialists", settings=settings)
        assert (await api.verify("quiet@example.com", second)).status_code == 200
        await api.client.get("/api/agent/me", headers=bearer(key))
        await api.client.get("/api/agent/me", headers=bearer(key[:-1]))
        rotated = await api.client.post("/api/agent/regenerate-key", headers=bearer(key))
        new_key = rotated.json()["api_key"]
        secrets.append(new_key)
        await api.client.get("/api/agent/me", headers=bearer(key))
        await api.client.delete("/api/agent/me", headers=bearer(new_key))

    async with api_for(database_url, clock, None) as dev:  # no SMTP: outbox and log
        registered = await dev.register("outbox@example.com")
        secrets.append(registered.json()["api_key"])
        secrets.append(await outbox_code(dev.runtime.db, "outbox@example.com"))

    captured = capsys.readouterr()
    logged = captured.out + captured.err + caplog.text
    assert "agent.registered" in logged and "mail.sent" in logged and "mail.outboxed" in logged
    for secret in secrets:
        assert secret not in logged
    # Key prefixes are fine to log; the random part after them is not.
    for secret in secrets:
        if secret.startswith("as_live_"):
            assert secret[12:24] not in logged
