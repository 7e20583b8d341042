"""Connection entries for the MCP clients people use, filled in for this installation.

A client starts a stdio server from its own working directory with its own ``PATH``, so an
entry names the ``agent-server`` executable of this install by its absolute path and the
database by an absolute URL; a ``.env`` file that configured this process is passed on by its
absolute path (``AGENT_SERVER_ENV_FILE``), so the server the client starts reads the same
settings (the secret pepper among them) without copying them into the entry.

Each client has its own file and shape:

- Claude Desktop (``claude_desktop_config.json``) and Cursor (``~/.cursor/mcp.json``): a
  top-level ``mcpServers``. Claude Desktop's file only starts local commands, so its HTTP
  entry runs the ``mcp-remote`` bridge (npm), which forwards the bearer header.
- Claude Code: ``claude mcp add-json`` with the same entry as in a project's ``.mcp.json``
  (``mcpServers``, each entry with ``type: stdio|http``).
- VS Code (``.vscode/mcp.json``): a top-level ``servers``, each with ``type: stdio|http``;
  without a key given, an ``inputs`` prompt asks for it once and VS Code stores it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from agent_server.kernel.config import ENV_FILE_VARIABLE, Settings
from agent_server.kernel.store.migrate import absolute_database_url

Client = Literal["claude-desktop", "claude-code", "cursor", "vscode"]
CLIENTS: tuple[Client, ...] = ("claude-desktop", "claude-code", "cursor", "vscode")
SERVER_NAME = "agent-server"
KEY_PLACEHOLDER = "<your agent API key>"
# The stdio-to-HTTP bridge for clients that only start local commands, pinned.
MCP_REMOTE = "mcp-remote@0.15.1"
VSCODE_KEY_INPUT = "agent-server-api-key"
_PREFIX = "AGENT_SERVER_"
# Set by the entry itself, never copied from the environment of the command that writes it.
_OWN = {f"{_PREFIX}API_KEY", f"{_PREFIX}DATABASE_URL", ENV_FILE_VARIABLE}


def executable() -> str:
    """The absolute path of this install's ``agent-server`` command."""
    beside = Path(sys.executable).parent / "agent-server"
    if beside.is_file():
        return str(beside.absolute())
    found = shutil.which("agent-server")
    if found:
        return str(Path(found).absolute())
    return str(Path(sys.argv[0]).absolute())


def stdio_env(
    settings: Settings, api_key: str, environ: Mapping[str, str], cwd: Path
) -> dict[str, str]:
    """The environment of the stdio server: the key, the absolute database URL, the ``.env``
    file this process read (if any) and the other ``AGENT_SERVER_*`` variables set here."""
    env = {
        f"{_PREFIX}API_KEY": api_key,
        f"{_PREFIX}DATABASE_URL": absolute_database_url(settings.database_url),
    }
    env_file = Path(environ.get(ENV_FILE_VARIABLE) or ".env")
    env_file = env_file if env_file.is_absolute() else cwd / env_file
    if env_file.is_file():
        env[ENV_FILE_VARIABLE] = str(env_file)
    for name in sorted(environ):
        if name.startswith(_PREFIX) and name not in _OWN:
            env[name] = environ[name]
    return env


def http_url(settings: Settings, url: str | None) -> str:
    """The MCP endpoint's URL: ``url`` (``/mcp`` added to a bare origin), else the public
    URL, else where ``serve`` listens by its settings."""
    base = url or settings.public_url
    if not base:
        host = "127.0.0.1" if _unspecified(settings.host) else settings.host
        base = f"http://{host}:{settings.port}"
    return base if urlsplit(base).path.strip("/") else f"{base.rstrip('/')}/mcp"


def _unspecified(host: str) -> bool:
    """Whether ``host`` is a bind-everywhere address, which a client cannot connect to."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == ""


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("localhost", "127.0.0.1", "::1")


def entry(
    client: Client,
    *,
    http: bool,
    settings: Settings,
    api_key: str | None,
    url: str | None = None,
    name: str = SERVER_NAME,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """The configuration document for ``client``: the whole file (``mcpServers`` or
    ``servers`` with one entry, and VS Code's ``inputs``), or for Claude Code the entry
    ``claude mcp add-json`` takes, under ``mcpServers`` as in ``.mcp.json``."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    prompt = client == "vscode" and not api_key
    key = f"${{input:{VSCODE_KEY_INPUT}}}" if prompt else (api_key or KEY_PLACEHOLDER)
    server: dict[str, Any]
    if http:
        endpoint = http_url(settings, url)
        bearer = f"Bearer {key}"
        if client == "claude-desktop":
            args = ["-y", MCP_REMOTE, endpoint, "--header", "Authorization:${AUTH_HEADER}"]
            if urlsplit(endpoint).scheme == "http" and not _is_loopback(endpoint):
                args.append("--allow-http")
            server = {"command": "npx", "args": args, "env": {"AUTH_HEADER": bearer}}
        else:
            server = {"url": endpoint, "headers": {"Authorization": bearer}}
            if client != "cursor":
                server = {"type": "http", **server}
    else:
        server = {
            "command": executable(),
            "args": ["stdio"],
            "env": stdio_env(settings, key, environ, cwd),
        }
        if client in ("claude-code", "vscode"):
            server = {"type": "stdio", **server}
    if client != "vscode":
        return {"mcpServers": {name: server}}
    document: dict[str, Any] = {"servers": {name: server}}
    if prompt:
        document["inputs"] = [
            {
                "type": "promptString",
                "id": VSCODE_KEY_INPUT,
                "description": "Agent Server API key (from POST /api/agent/register)",
                "password": True,
            }
        ]
    return document


def render(client: Client, document: dict[str, Any], *, as_json: bool = False) -> str:
    """What ``agent-server mcp-config`` prints: the JSON document, or for Claude Code the
    ``claude mcp add-json`` command line (``as_json``: the ``.mcp.json`` document)."""
    if client == "claude-code" and not as_json:
        ((name, server),) = document["mcpServers"].items()
        compact = json.dumps(server, separators=(",", ":"))
        return shlex.join(["claude", "mcp", "add-json", "--scope", "user", name, compact])
    return json.dumps(document, indent=2)
