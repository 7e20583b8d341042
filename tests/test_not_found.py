"""Unknown URLs get the branded 404: the dashboard's page for a browser, SPEC's error body for
any other client; known surfaces keep answering as before."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from agent_server.app import create_app
from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database
from agent_server.runtime import Runtime


@pytest.fixture
async def http(db: Database, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Runtime(Settings(database_url=database_url), db))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        yield client


@pytest.mark.parametrize("path", ["/no-such-page", "/agents/1/nothing/here", "/mcpx"])
async def test_a_browser_gets_the_branded_page(http: httpx.AsyncClient, path: str) -> None:
    page = await http.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert '<a class="brand" href="/">Agent Server</a>' in page.text
    assert "<h1>Not found</h1>" in page.text and f"Nothing is at {path}" in page.text
    assert '<a href="/">Back to the overview</a>' in page.text
    assert page.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "application/json, text/event-stream"]
)
async def test_an_api_client_gets_the_json_error(http: httpx.AsyncClient, accept: str) -> None:
    answer = await http.get("/no-such-page", headers={"Accept": accept})
    assert answer.status_code == 404
    assert answer.json() == {
        "error": {
            "code": "NOT_FOUND",
            "status": 404,
            "message": "Nothing is at /no-such-page: check the address, or start from the "
            "overview at /.",
            "details": {},
        }
    }
    # A browser asking under a JSON surface still gets JSON.
    api = await http.get("/.well-known/nothing", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json()["error"]["code"] == "NOT_FOUND"
    assert (await http.get("/healthz")).json() == {"status": "ok"}
