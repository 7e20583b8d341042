"""Bugs the proof suite (soak, fuzzing, security tests) found, each pinned by a test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mcp import Client
from mcp_support import body, call_ok, error_code, make_agent

from agent_server.config import Settings
from agent_server.mcp.server import build_mcp_server
from agent_server.runtime import Runtime
from agent_server.store import Database

USDC = 1_000_000


@pytest.fixture
async def runtime(database_url: str, db: Database) -> AsyncIterator[Runtime]:
    yield Runtime(settings=Settings(database_url=database_url), db=db)


def client_for(runtime: Runtime, key: str) -> Client:
    return Client(build_mcp_server(runtime, api_key_source=lambda: key))


async def test_list_bookings_refuses_a_time_without_offset_naming_the_field(
    runtime: Runtime,
) -> None:
    # Was an INTERNAL_ERROR: the naive time reached a UTC column.
    _, key = await make_agent(runtime.db, runtime.settings, funds=USDC)
    async with client_for(runtime, key) as client:
        for field in ("starts_after", "starts_before"):
            refused = await client.call_tool("list-bookings", {field: "2026-03-02T09:00:00"})
            assert error_code(refused) == "VALIDATION_ERROR"
            assert [f["field"] for f in body(refused)["error"]["details"]["fields"]] == [field]
        listed = await call_ok(
            client,
            "list-bookings",
            {"starts_after": "2026-03-02T09:00:00Z", "starts_before": "2026-04-01T00:00:00+02:00"},
        )
    assert listed["bookings"] == []
