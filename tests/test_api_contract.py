"""The REST contract: SPEC's error body everywhere, and schemathesis finds no server error."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from accounts_support import PEPPER, registered, settings_for
from fastapi import APIRouter
from hypothesis import HealthCheck, settings
from starlette.routing import Mount

from agent_server.app import create_app
from agent_server.kernel.clock import FakeClock
from agent_server.kernel.config import Settings
from agent_server.kernel.logs import configure_logging
from agent_server.kernel.store import Database, make_engine
from agent_server.runtime import Runtime


def _document_app() -> Any:
    """An app to read the OpenAPI document from; requests go to each test's own app."""
    unused = Path(tempfile.mkdtemp()) / "never-opened.db"
    return create_app(Runtime.create(settings_for(f"sqlite+aiosqlite:///{unused}")))


schema = schemathesis.openapi.from_asgi("/api/openapi.json", _document_app())


@pytest.fixture
async def fuzz_target(database_url: str, clock: FakeClock) -> AsyncIterator[dict[str, Any]]:
    """The whole app on a migrated database, and the key of a registered agent."""
    config = settings_for(
        database_url, register_per_ip_per_hour=100_000, email_checks_per_ip_per_hour=100_000
    )
    setup = Database(make_engine(database_url), clock)
    try:
        _, key = await registered(setup, config, "fuzz@example.com", tags=["fuzz"])
    finally:
        await setup.dispose()
    # Schemathesis runs the app on an event loop of its own: give it a database of its own.
    runtime = Runtime(settings=config, db=Database(make_engine(database_url), clock))
    yield {"app": create_app(runtime), "key": key}


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail(case: Any, fuzz_target: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {fuzz_target['key']}"}
    response = case.call(headers=headers, app=fuzz_target["app"])
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "status", "message", "details"}
        assert error["status"] == response.status_code
    case.validate_response(
        response,
        checks=[
            schemathesis.checks.not_a_server_error,
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ],
        headers=headers,
        transport_kwargs={"app": fuzz_target["app"]},
    )


@pytest.fixture
async def client(database_url: str, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    runtime = Runtime(
        settings=settings_for(database_url), db=Database(make_engine(database_url), clock)
    )
    app = create_app(runtime)
    api = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == "/api")
    boom = APIRouter()

    @boom.get("/boom")
    async def explode() -> None:
        raise RuntimeError(f"secret detail {PEPPER}")

    api.include_router(boom)  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c
    await runtime.close()


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "status", "message", "details"}
    assert (error["code"], error["status"]) == (code, status)
    return error


async def test_unknown_routes_and_methods_answer_in_the_error_body(
    client: httpx.AsyncClient,
) -> None:
    _error(await client.get("/api/no/such/thing"), 404, "NOT_FOUND")
    refused = await client.put("/api/agent/register", json={})
    error = _error(refused, 405, "METHOD_NOT_ALLOWED")
    assert refused.headers["allow"] == "POST" and "POST" in error["message"]


async def test_malformed_json_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/agent/register", content=b'{"name": ', headers={"content-type": "application/json"}
    )
    error = _error(response, 422, "VALIDATION_ERROR")
    assert error["details"]["fields"] == [{"field": "body", "message": "is not valid JSON"}]


async def test_unexpected_errors_answer_a_generic_500(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    response = await client.get("/api/boom")
    error = _error(response, 500, "INTERNAL_ERROR")
    assert "Traceback" not in response.text and "secret detail" not in response.text
    assert error["details"] == {}
    logged = capsys.readouterr()
    assert "api.unhandled_error" in logged.out + logged.err


async def test_openapi_and_docs_are_served_under_api(client: httpx.AsyncClient) -> None:
    document = (await client.get("/api/openapi.json")).json()
    assert {"/agent/register", "/agent/me", "/agents", "/agents/{id}"} <= set(document["paths"])
    assert document["servers"] == [{"url": "/api"}]
    docs = await client.get("/api/docs")
    assert docs.status_code == 200 and "/api/openapi.json" in docs.text
    register = document["paths"]["/agent/register"]["post"]
    assert register["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorResponse"
    )


def test_router_plug_in_convention_lists_the_account_router(tmp_path: Path) -> None:
    from agent_server.api import ROUTER_MODULES, build_api

    assert "agent_server.api.agents" in ROUTER_MODULES
    runtime = Runtime.create(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"))
    assert "/agent/register" in build_api(runtime).openapi()["paths"]
