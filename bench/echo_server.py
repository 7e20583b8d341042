"""The baseline: a bare MCPServer with one echo tool, served like ``agent-server serve``
(uvicorn, streamable HTTP, stateless, JSON responses). ``python bench/echo_server.py PORT``: as a
script, so that nothing else (not the ``bench`` package) is loaded into the baseline."""

from __future__ import annotations

import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel


class Echo(BaseModel):
    text: str


def build() -> MCPServer:
    server: MCPServer = MCPServer("echo", log_level="WARNING")

    @server.tool()
    async def echo(text: str) -> Echo:
        """Return the text."""
        return Echo(text=text)

    return server


if __name__ == "__main__":
    port = int(sys.argv[1])
    app = build().streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
