"""Log redaction masks the fields that hold secrets and nothing else: an error code shows.

(That no secret reaches a log line across whole flows: ``test_secrets_in_logs`` and
``test_accounts_secrets_in_logs``.)
"""

from __future__ import annotations

import json

import pytest
from mcp import Client
from mcp_support import call_ok, error_code, make_agent

from agent_server.kernel.config import Settings
from agent_server.kernel.logs import configure_logging, get_logger, redact
from agent_server.kernel.store import Database
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime

SECRET_KEYS = [
    "api_key",
    "apikey",
    "API-Key",
    "x-api-key",
    "authorization",
    "Authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "password",
    "secret",
    "webhook_secret",
    "client_secret",
    "token",
    "access_token",
    "session_token",
    "calendar_token",
    "pepper",
    "secret_pepper",
    "verification_code",
    "signin_code",
    "email_code",
    "otp",
    "private_key",
    "mnemonic",
]
SHOWN_KEYS = [
    "code",
    "error_code",
    "status_code",
    "http_status",
    "key_prefix",
    "api_key_prefix",
    "keys_purged",
    "key",
    "tokens",
    "event_id",
    "agent_id",
    "tool",
]


pytestmark = pytest.mark.usefixtures("restore_logging")


def test_secret_fields_are_masked_and_ordinary_ones_shown() -> None:
    fields = {k: f"value-of-{k}" for k in SECRET_KEYS + SHOWN_KEYS}
    out = redact(None, "info", {"event": "probe", **fields})
    assert out["event"] == "probe"
    assert {k: out[k] for k in SECRET_KEYS} == {k: "***" for k in SECRET_KEYS}
    assert {k: out[k] for k in SHOWN_KEYS} == {k: fields[k] for k in SHOWN_KEYS}


def test_an_error_code_reaches_the_log_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    get_logger("probe").info("probe.refused", code="RATE_LIMITED", api_key="ak_live_secret")
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    (line,) = [x for x in lines if x["event"] == "probe.refused"]
    assert line["code"] == "RATE_LIMITED"
    assert line["api_key"] == "***"


async def test_tool_call_lines_show_the_error_code(
    db: Database, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=database_url, rate_limits={"get-wallet": 1})
    runtime = Runtime(settings=settings, db=db)
    _, key = await make_agent(db, settings, funds=1_000_000)
    configure_logging("INFO", "json")
    capsys.readouterr()
    async with Client(build_mcp_server(runtime, api_key_source=lambda: key)) as client:
        await call_ok(client, "get-wallet", {})
        limited = await client.call_tool("get-wallet", {})
    assert error_code(limited) == "RATE_LIMITED"
    logged = capsys.readouterr()
    lines = [json.loads(x) for x in logged.err.splitlines() if x.startswith("{")]
    calls = [x for x in lines if x["event"] == "tool.call"]
    assert [(x["tool"], x["outcome"]) for x in calls] == [
        ("get-wallet", "ok"),
        ("get-wallet", "error"),
    ]
    refused = [x for x in calls if x["outcome"] == "error"]
    assert [(x["tool"], x["code"], x["charged"]) for x in refused] == [
        ("get-wallet", "RATE_LIMITED", False)
    ]
    assert key not in logged.out + logged.err
