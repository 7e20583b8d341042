"""No request can take the server down: bodies are bounded in size and JSON nesting before any
parser runs, on every route of a real ``agent-server serve``; no import leaves the recursion
limit raised; error bodies stay small whatever the input; X-Forwarded-For is believed only
from configured proxies."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp_support import CLI, make_agent, start_serve
from smtp_sink import free_port
from starlette.routing import Mount, Route

from agent_server.api.body_limits import nesting_exceeds
from agent_server.kernel.config import Settings
from agent_server.kernel.errors import MAX_FIELD_ENTRIES
from agent_server.kernel.store import Database, make_engine

NESTED_140K = b"[" * 70_000 + b"]" * 70_000
NESTED_1M = b"[" * 500_000 + b"]" * 500_000
LARGE_5M = b"[" * 2_500_000 + b"]" * 2_500_000
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
BROWSER_HEADERS = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON_PATHS = ("/api/", "/calendar/", "/healthz", "/readyz", "/metrics", "/.well-known/")


def _env(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{db}",
        AGENT_SERVER_START_WATCHERS="false",
        AGENT_SERVER_START_WORKER="false",
        AGENT_SERVER_LOG_FORMAT="json",
        **extra,
    )
    return env


def _upgraded(tmp: Path) -> Path:
    db = tmp / "agent_server.db"
    done = subprocess.run(
        [CLI, "db", "upgrade"],
        env=_env(db),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return db


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], base: str, db: Path, log: Path) -> None:
        self.proc, self.base, self.db, self.log = proc, base, db, log

    def assert_serving(self) -> None:
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        assert httpx.get(f"{self.base}/healthz", timeout=10).json() == {"status": "ok"}


def _serve(tmp: Path, **extra: str) -> Iterator[Served]:
    db = _upgraded(tmp)
    port = free_port()
    log = tmp / "serve.log"
    proc = start_serve(_env(db, AGENT_SERVER_PORT=str(port), **extra), port, log)
    try:
        yield Served(proc, f"http://127.0.0.1:{port}", db, log)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("bounded"))


def test_no_import_leaves_the_recursion_limit_above_the_default(tmp_path: Path) -> None:
    """py_ecc (through web3) raises the limit to 100,000 on import; then a deep enough JSON
    document overflows the C stack and kills the process instead of raising RecursionError."""
    script = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys
        default = sys.getrecursionlimit()
        import agent_server, billing, wallets
        for package in (agent_server, billing, wallets):
            prefix = package.__name__ + "."
            for module in pkgutil.walk_packages(package.__path__, prefix):
                importlib.import_module(module.name)
        assert "py_ecc" in sys.modules  # the import that raises it did happen
        from agent_server.app import create_app
        from agent_server.kernel.config import Settings
        from agent_server.runtime import Runtime
        url = "sqlite+aiosqlite:///{tmp_path / "db.sqlite"}"
        create_app(Runtime.create(Settings(database_url=url)))
        print(default, sys.getrecursionlimit())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    default, after = map(int, done.stdout.split())
    assert after <= default == 1000


def _routes(tmp: Path) -> list[tuple[str, str]]:
    """Every (method, path) of the served app, path parameters filled in."""
    from agent_server.app import create_app
    from agent_server.runtime import Runtime

    app = create_app(Runtime.create(Settings(database_url=f"sqlite+aiosqlite:///{tmp}/r.db")))
    found = {("GET", "/static/app.css"), ("POST", "/no-such-page"), ("PUT", "/api/no-such")}

    def add(methods: Any, path: str) -> None:
        # A route without methods is an ASGI app answering any (the MCP endpoint).
        for method in methods or {"GET", "POST", "DELETE"}:
            if method != "HEAD":
                found.add((method, re.sub(r"\{[^}]+\}", "1", path)))

    def walk(routes: Any, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif isinstance(route, Route):
                add(route.methods, prefix + route.path)
            elif hasattr(route, "effective_route_contexts"):  # FastAPI's included routers
                for included in route.effective_route_contexts():
                    add(getattr(included.original_route, "methods", None), prefix + included.path)

    walk(app.routes, "")
    return sorted(found)


def _assert_refused(reply: httpx.Response, path: str, status: int) -> None:
    """A structured error with ``status``, in the language of the path's surface."""
    assert reply.status_code == status, (path, reply.status_code, reply.text[:300])
    if path == "/mcp":
        data = reply.json()
        assert data["jsonrpc"] == "2.0" and data["id"] is None
        assert data["error"]["code"] == (-32600 if status == 413 else -32700)
        assert data["error"]["data"]["error"]["code"] == "VALIDATION_ERROR"
    elif path.startswith(JSON_PATHS):
        error = reply.json()["error"]
        assert (error["code"], error["status"]) == ("VALIDATION_ERROR", status), error
        assert error["details"]["fields"][0]["field"] == "body"
    else:
        assert reply.headers["content-type"].startswith("text/html"), path
        assert 'data-code="VALIDATION_ERROR"' in reply.text
    assert len(reply.content) < 4096


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 65_536):
        yield data[start : start + 65_536]


def test_every_route_refuses_deep_and_large_bodies_and_the_server_keeps_serving(
    served: Served, tmp_path: Path
) -> None:
    routes = _routes(tmp_path)
    paths = {path for _method, path in routes}
    assert {"/api/agent/register", "/mcp", "/sign-in", "/calendar/feed/1.ics"} <= paths
    with httpx.Client(base_url=served.base, timeout=60) as client:
        for method, path in routes:
            # The dashboard's pages are asked as a browser asks: they answer an HTML page.
            asks = MCP_HEADERS if path == "/mcp" or path.startswith(JSON_PATHS) else BROWSER_HEADERS
            for content_type in (JSON, FORM):
                headers = {**asks, "Content-Type": content_type}
                for nested in (NESTED_140K, NESTED_1M):
                    reply = client.request(method, path, content=nested, headers=headers)
                    _assert_refused(reply, path, 400 if path == "/mcp" else 422)
                reply = client.request(method, path, content=LARGE_5M, headers=headers)
                _assert_refused(reply, path, 413)
                # Chunked, without a Content-Length: refused once the limit is passed.
                chunked = client.request(method, path, content=_chunks(LARGE_5M), headers=headers)
                assert "content-length" not in chunked.request.headers
                _assert_refused(chunked, path, 413)
            served.assert_serving()
    assert "unhandled_error" not in served.log.read_text()


def test_the_bodies_of_the_report_answer_a_validation_error_naming_the_body(
    served: Served,
) -> None:
    for path in ("/api/agent/register", "/api/agent/verify-email"):
        reply = httpx.post(
            served.base + path, content=NESTED_140K, headers={"Content-Type": JSON}, timeout=30
        )
        assert reply.status_code == 422
        error = reply.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"]["fields"] == [
            {
                "field": "body",
                "message": "nests arrays and objects deeper than 64 levels; "
                "send a flatter document",
            }
        ]
    # No content type at all: FastAPI reads such a body as JSON, so it is checked as JSON.
    reply = httpx.patch(served.base + "/api/agent/me", content=NESTED_140K, timeout=30)
    assert reply.status_code == 422, reply.text
    served.assert_serving()


def test_nesting_within_the_limit_and_brackets_inside_strings_reach_the_route(
    served: Served,
) -> None:
    shallow = {"name": [[["x"]]], "email": "[" * 5000 + "{" * 5000}
    reply = httpx.post(served.base + "/api/agent/register", json=shallow, timeout=30)
    # The route itself answers: its own field errors, not a refusal of the body.
    assert reply.status_code == 422
    fields = {f["field"] for f in reply.json()["error"]["details"]["fields"]}
    assert "body" not in fields and {"name", "email"} <= fields


async def test_a_create_schedule_with_100000_override_keys_answers_a_small_error(
    served: Served,
) -> None:
    url = f"sqlite+aiosqlite:///{served.db}"
    db = Database(make_engine(url))
    try:
        _agent, key = await make_agent(db, Settings(database_url=url), funds=50_000_000)
    finally:
        await db.dispose()
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key}", "Content-Type": JSON}

    def create_schedule(overrides: dict[str, Any]) -> httpx.Response:
        arguments = {
            "timezone": "Europe/Berlin",
            "overrides": overrides,
            "idempotency_key": "bounded-1",
        }
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "create-schedule", "arguments": arguments},
        }
        payload = json.dumps(call, separators=(",", ":")).encode()
        assert len(payload) < 1_048_576  # within the body limit: the tool validates it
        return httpx.post(served.base + "/mcp", content=payload, headers=headers, timeout=120)

    # 100,000 keys as in the report; then 10,000 keys that are not dates: an entry each.
    many = {str(n): 0 for n in range(100_000)}
    for overrides in (many, {f"x{n:04d}": [] for n in range(10_000)}):
        reply = create_schedule(overrides)
        assert reply.status_code == 200, reply.text[:500]
        assert len(reply.content) < 8192, len(reply.content)
        result = reply.json()["result"]
        assert result["isError"] is True
        error = result["structuredContent"]["error"]
        assert error["code"] == "VALIDATION_ERROR"
        fields = error["details"]["fields"]
        assert len(fields) <= MAX_FIELD_ENTRIES + 1
    assert len(fields) == MAX_FIELD_ENTRIES + 1
    assert all(f["field"].startswith("overrides") for f in fields[:-1]), fields
    assert fields[-1]["message"].startswith(f"{10_000 - MAX_FIELD_ENTRIES} more fields")

    # Larger than the limit: refused before parsing, just as briefly.
    bigger = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "create-schedule", "arguments": {str(n): 0 for n in range(200_000)}},
    }
    reply = httpx.post(served.base + "/mcp", json=bigger, headers=headers, timeout=120)
    assert reply.status_code == 413
    assert len(reply.content) < 2048
    served.assert_serving()


def test_the_depth_scan_counts_brackets_outside_strings_only() -> None:
    def nested(depth: int) -> Any:
        return [] if depth == 1 else [nested(depth - 1)]

    inside_a_string = json.dumps({"a": "[" * 100 + '"' + "{" * 100, "b": nested(63)})
    assert not nesting_exceeds(inside_a_string.encode(), 64)
    # An escaped backslash ends with the string's closing quote: what follows is counted.
    after_an_escape = json.dumps(["\\", nested(64)])
    assert nesting_exceeds(after_an_escape.encode(), 64)
    assert not nesting_exceeds(json.dumps(nested(64)).encode(), 64)


def _misses(base: str, forwarded_for: list[str]) -> list[int]:
    """Statuses of calendar-feed lookups with unknown tokens (limited per client address)."""
    return [
        httpx.get(
            f"{base}/calendar/feed/no-such-token.ics",
            headers={"X-Forwarded-For": address},
            timeout=30,
        ).status_code
        for address in forwarded_for
    ]


def test_x_forwarded_for_from_a_client_does_not_change_its_address(tmp_path: Path) -> None:
    for served in _serve(tmp_path, AGENT_SERVER_CALENDAR_MISSES_PER_IP_PER_HOUR="2"):
        spoofed = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        assert _misses(served.base, spoofed) == [404, 404, 429]


def test_x_forwarded_for_from_a_configured_proxy_is_the_clients_address(tmp_path: Path) -> None:
    for served in _serve(
        tmp_path,
        AGENT_SERVER_CALENDAR_MISSES_PER_IP_PER_HOUR="2",
        AGENT_SERVER_FORWARDED_ALLOW_IPS="127.0.0.1",
    ):
        # Three clients behind the proxy, counted apart; then one of them is over its limit.
        assert _misses(served.base, ["198.51.100.1", "198.51.100.2", "198.51.100.3"]) == [404] * 3
        assert _misses(served.base, ["198.51.100.1", "198.51.100.1"]) == [404, 429]


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


def _answer(proc: subprocess.Popen[bytes], request_id: int) -> dict[str, Any]:
    """The next JSON-RPC message on stdout answering ``request_id``."""
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        assert line, "stdio server closed its output"
        message: dict[str, Any] = json.loads(line)
        if message.get("id") == request_id:
            return message


async def test_a_deeply_nested_line_on_stdio_does_not_crash_the_server(served: Served) -> None:
    url = f"sqlite+aiosqlite:///{served.db}"
    db = Database(make_engine(url))
    try:
        _agent, key = await make_agent(db, Settings(database_url=url))
    finally:
        await db.dispose()
    env = _env(served.db, AGENT_SERVER_API_KEY=key)
    proc = subprocess.Popen(
        [CLI, "stdio"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    try:
        initialize = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        }
        proc.stdin.write(_line(initialize))
        proc.stdin.flush()
        assert "result" in _answer(proc, 1)
        proc.stdin.write(_line({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        for deep in (NESTED_140K, NESTED_1M, b'{"jsonrpc":"2.0","id":7,"params":' + NESTED_1M):
            proc.stdin.write(deep + b"\n")
        proc.stdin.write(_line({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        proc.stdin.flush()
        tools = _answer(proc, 2)["result"]["tools"]
        assert any(t["name"] == "create-schedule" for t in tools)
        assert proc.poll() is None
    finally:
        proc.stdin.close()
        proc.terminate()
        proc.wait(timeout=20)
