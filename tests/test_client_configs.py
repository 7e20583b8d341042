"""Client configurations as a user gets them: ``agent-server mcp-config`` for each client and
transport, launched exactly as that client would (the entry's command, arguments and
environment, from another working directory, through the SDK's own clients); ``stdio`` and
``serve`` refusing a database they cannot serve from; ``make run PORT=``; and one log line per
request and per tool call."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp_support import CLI, SPEC_TOOLS, call_ok, make_agent, start_serve
from smtp_sink import free_port

from agent_server.kernel.config import Settings
from agent_server.kernel.store import Database, make_engine

REPO = Path(__file__).resolve().parent.parent
CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_SERVER_")}
    env.update(AGENT_SERVER_START_WATCHERS="false", AGENT_SERVER_START_WORKER="false", **extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _config(
    client: str, install: Path, *extra: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """What ``mcp-config`` prints, run from ``install`` with its relative database URL;
    Claude Code's command line is read back into its ``.mcp.json`` shape."""
    done = _run([CLI, "mcp-config", "--client", client, *extra], env or _install_env(), install)
    assert done.returncode == 0, done.stderr
    if client != "claude-code" or "--json" in extra:
        return dict(json.loads(done.stdout))
    words = shlex.split(done.stdout)
    assert words[:6] == ["claude", "mcp", "add-json", "--scope", "user", "agent-server"], words
    return {"mcpServers": {words[5]: json.loads(words[6])}}


def _install_env(**extra: str) -> dict[str, str]:
    # As the README has it: run from the checkout, where the default URL is relative.
    return _clean_env(AGENT_SERVER_DATABASE_URL="sqlite+aiosqlite:///./agent_server.db", **extra)


def _server(client: str, document: dict[str, Any]) -> dict[str, Any]:
    top = "servers" if client == "vscode" else "mcpServers"
    assert set(document) <= {top, "inputs"}, document
    ((name, server),) = document[top].items()
    assert name == "agent-server"
    return dict(server)


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory like a checkout after `make run`: a migrated ./agent_server.db."""
    root = tmp_path_factory.mktemp("install")
    done = _run([CLI, "db", "upgrade"], _install_env(), root)
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
async def agent_key(install: Path) -> AsyncIterator[str]:
    """An active agent with 100 USDC in the install's database: its API key."""
    settings = Settings(database_url=f"sqlite+aiosqlite:///{install / 'agent_server.db'}")
    db = Database(make_engine(settings.database_url))
    try:
        _, key = await make_agent(db, settings, funds=100_000_000)
    finally:
        await db.dispose()
    yield key


@pytest.mark.parametrize("transport", ["--stdio", "--http"])
@pytest.mark.parametrize("client", CLIENTS)
def test_mcp_config_prints_each_clients_own_shape_with_absolute_paths(
    install: Path, client: str, transport: str
) -> None:
    server = _server(client, _config(client, install, transport, "--api-key", "as_live_k"))
    if transport == "--stdio":
        assert Path(server["command"]).is_absolute() and os.access(server["command"], os.X_OK)
        assert server["args"] == ["stdio"]
        assert server["env"]["AGENT_SERVER_API_KEY"] == "as_live_k"
        url = server["env"]["AGENT_SERVER_DATABASE_URL"]
        assert url == f"sqlite+aiosqlite:///{install / 'agent_server.db'}"
        assert server.get("type") == ("stdio" if client in ("claude-code", "vscode") else None)
    elif client == "claude-desktop":
        # Its config file starts only local commands: the mcp-remote bridge, key in env.
        assert server["command"] == "npx"
        assert re.fullmatch(r"mcp-remote@\d+\.\d+\.\d+", server["args"][1])
        assert server["args"][2] == "http://127.0.0.1:8000/mcp"
        assert server["args"][3:] == ["--header", "Authorization:${AUTH_HEADER}"]
        assert server["env"] == {"AUTH_HEADER": "Bearer as_live_k"}
    else:
        assert server["url"] == "http://127.0.0.1:8000/mcp"
        assert server["headers"] == {"Authorization": "Bearer as_live_k"}
        assert server.get("type") == (None if client == "cursor" else "http")


def test_vscode_asks_for_the_key_when_none_is_given(install: Path) -> None:
    document = _config("vscode", install)
    (prompt,) = document["inputs"]
    assert prompt["type"] == "promptString" and prompt["password"] is True
    key = _server("vscode", document)["env"]["AGENT_SERVER_API_KEY"]
    assert key == f"${{input:{prompt['id']}}}"


def test_claude_code_json_is_the_mcp_json_document(install: Path) -> None:
    document = _config("claude-code", install, "--json", "--api-key", "as_live_k")
    assert _server("claude-code", document) == _server(
        "claude-code", _config("claude-code", install, "--api-key", "as_live_k")
    )


def test_an_env_file_reaches_the_server_a_client_starts(install: Path, tmp_path: Path) -> None:
    (install / ".env").write_text("AGENT_SERVER_SECRET_PEPPER=from-the-env-file\n")
    try:
        server = _server("cursor", _config("cursor", install, env=_install_env(AGENT_SERVER_X="1")))
    finally:
        (install / ".env").unlink()
    assert server["env"]["AGENT_SERVER_ENV_FILE"] == str(install / ".env")
    assert server["env"]["AGENT_SERVER_X"] == "1"
    assert "from-the-env-file" not in json.dumps(server)  # read there, not copied


@pytest.mark.parametrize("client", CLIENTS)
async def test_a_stdio_entry_started_as_the_client_would_serves_tools(
    install: Path, agent_key: str, client: str, tmp_path: Path
) -> None:
    server = _server(client, _config(client, install, "--api-key", agent_key))
    elsewhere = tmp_path / "client-working-directory"
    elsewhere.mkdir()
    params = StdioServerParameters(
        command=server["command"], args=server["args"], env=server["env"], cwd=elsewhere
    )
    async with Client(params) as mcp:
        assert {t.name for t in (await mcp.list_tools()).tools} == SPEC_TOOLS
        wallet = await call_ok(mcp, "get-wallet", {})
    assert any(w["currency"] == "USDC" for w in wallet["wallets"])
    assert list(elsewhere.iterdir()) == []  # no stray database where the client runs


@pytest.fixture(scope="module")
def served(install: Path) -> Iterator[tuple[int, Path]]:
    """`agent-server serve` on the install's database, on a free port; (port, its log)."""
    port = free_port()
    env = _clean_env(
        AGENT_SERVER_DATABASE_URL=f"sqlite+aiosqlite:///{install / 'agent_server.db'}",
        AGENT_SERVER_PORT=str(port),
        AGENT_SERVER_LOG_FORMAT="json",
    )
    log = install / "serve.log"
    proc = start_serve(env, port, log)
    yield port, log
    proc.terminate()
    proc.wait(timeout=20)


@pytest.mark.parametrize("client", ["claude-code", "cursor", "vscode"])
async def test_an_http_entry_works_against_a_real_serve(
    install: Path, agent_key: str, served: tuple[int, Path], client: str
) -> None:
    port, _ = served
    env = _install_env(AGENT_SERVER_PORT=str(port))
    server = _server(client, _config(client, install, "--http", "--api-key", agent_key, env=env))
    assert server["url"] == f"http://127.0.0.1:{port}/mcp"
    http = httpx2.AsyncClient(headers=server["headers"], timeout=30)
    async with Client(streamable_http_client(server["url"], http_client=http)) as mcp:
        assert {t.name for t in (await mcp.list_tools()).tools} == SPEC_TOOLS
        await call_ok(mcp, "get-wallet", {})


def test_the_readme_connection_steps_are_the_ones_tested() -> None:
    readme = (REPO / "README.md").read_text()
    for client in CLIENTS:
        assert f"agent-server mcp-config --client {client}" in readme, client
    assert "Python 3.11" in readme
    assert "`<checkout>`" in readme and "`<your agent API key>`" in readme


def _shipped(checkout: Path, key: str, port: int = 8000) -> dict[str, Any]:
    """The root mcp.json with its placeholders filled in, as the README says."""
    text = (REPO / "mcp.json").read_text()
    text = text.replace("<checkout>", str(checkout)).replace("<your agent API key>", key)
    return dict(json.loads(text.replace("127.0.0.1:8000", f"127.0.0.1:{port}"))["mcpServers"])


async def test_the_shipped_mcp_json_serves_tools_once_its_placeholders_are_filled(
    install: Path, agent_key: str, served: tuple[int, Path], tmp_path: Path
) -> None:
    bin_dir = install / ".venv" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    if not (bin_dir / "agent-server").exists():
        (bin_dir / "agent-server").symlink_to(CLI)
    servers = _shipped(install, agent_key, port=served[0])
    stdio = servers["agent-server"]
    elsewhere = tmp_path / "client-working-directory"
    elsewhere.mkdir()
    params = StdioServerParameters(
        command=stdio["command"], args=stdio["args"], env=stdio["env"], cwd=elsewhere
    )
    async with Client(params) as mcp:
        assert {t.name for t in (await mcp.list_tools()).tools} == SPEC_TOOLS
        await call_ok(mcp, "get-wallet", {})
    assert list(elsewhere.iterdir()) == []  # no stray database where the client runs
    http_entry = servers["agent-server-http"]
    http = httpx2.AsyncClient(headers=http_entry["headers"], timeout=30)
    async with Client(streamable_http_client(http_entry["url"], http_client=http)) as mcp:
        await call_ok(mcp, "get-wallet", {})


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_stdio_refuses_a_database_it_cannot_serve_from(install: Path, tmp_path: Path) -> None:
    key = {"AGENT_SERVER_API_KEY": "as_live_k"}
    missing = _run([CLI, "stdio"], _install_env(**key), tmp_path)
    assert missing.returncode == 1 and missing.stdout == ""
    assert f"no database at {tmp_path / 'agent_server.db'}" in _one_line(missing.stderr)
    assert "agent-server db upgrade" in missing.stderr
    assert list(tmp_path.iterdir()) == []  # the check made no empty database

    (tmp_path / "agent_server.db").write_bytes(b"")
    empty = _run([CLI, "stdio"], _install_env(**key), tmp_path)
    assert empty.returncode == 1 and empty.stdout == ""
    assert "is not migrated (has no tables" in _one_line(empty.stderr)

    down = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{free_port()}/nothing"
    unreachable = _run([CLI, "stdio"], _clean_env(AGENT_SERVER_DATABASE_URL=down, **key), tmp_path)
    assert unreachable.returncode == 1 and unreachable.stdout == ""
    line = _one_line(unreachable.stderr)
    assert "cannot reach the database at postgresql+asyncpg://postgres:***@" in line
    assert "hunter2" not in line

    serve = _run([CLI, "serve", "--port", str(free_port())], _install_env(), tmp_path)
    assert serve.returncode == 1
    assert "is not migrated" in _one_line(serve.stderr)


def test_make_run_serves_on_the_port_and_host_given() -> None:
    done = _run(["make", "-n", "run", "PORT=18620", "HOST=127.0.0.2"], _clean_env(), REPO)
    assert done.returncode == 0, done.stderr
    assert ".venv/bin/agent-server serve --host 127.0.0.2 --port 18620" in done.stdout
    default = _run(["make", "-n", "run"], _clean_env(), REPO)
    assert ".venv/bin/agent-server serve --host 127.0.0.1 --port 8000" in default.stdout


def _lines(log: Path, request_id: str) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text().splitlines():
        if request_id in line:
            found.append(json.loads(line))
    return found


async def test_a_request_and_a_tool_call_each_log_one_line_with_duration(
    agent_key: str, served: tuple[int, Path]
) -> None:
    port, log = served
    base = f"http://127.0.0.1:{port}"
    rest_id, mcp_id = uuid.uuid4().hex, uuid.uuid4().hex
    bearer = {"Authorization": f"Bearer {agent_key}"}
    reply = httpx.get(f"{base}/api/agent/wallet", headers={**bearer, "X-Request-Id": rest_id})
    assert reply.status_code == 200, reply.text
    headers = {**bearer, "X-Request-Id": mcp_id}
    http = httpx2.AsyncClient(headers=headers, timeout=30)
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as mcp:
        await call_ok(mcp, "search-specialists", {"limit": 1})

    (rest,) = _lines(log, rest_id)
    assert rest["event"] == "http.request"
    assert (rest["method"], rest["path"], rest["status"]) == ("GET", "/api/agent/wallet", 200)
    assert rest["duration_ms"] >= 0

    lines = _lines(log, mcp_id)
    # Every MCP request (initialize, the notification, tools/call) is one line, and the
    # tool call one more; no line of the SDK's per-request chatter.
    assert all(line["event"] in ("http.request", "tool.call") for line in lines), lines
    (call,) = [line for line in lines if line["event"] == "tool.call"]
    assert (call["tool"], call["outcome"], call["charged"]) == ("search-specialists", "ok", True)
    assert call["duration_ms"] >= 0
    requests = [line for line in lines if line["event"] == "http.request"]
    assert requests and all(line["path"] == "/mcp" for line in requests)
    assert all(line["duration_ms"] >= 0 for line in requests)
    assert agent_key not in log.read_text()
