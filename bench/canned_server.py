"""The ceiling for our answers: a bare MCPServer, served like the echo baseline, whose tools
return answers recorded from our server (the same structured content, text and advertised
output schema) without doing anything else. Its calls per second are what any server could
reach with answers of that shape over this SDK and transport, before any work of its own.

``python -m bench.canned_server PORT ANSWERS.json``, where the file maps each tool name to
``{"output_schema": {...}, "answers": [structured content, ...]}``; a call of that tool with
``{"n": i}`` returns answer ``i`` modulo their number.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult
from pydantic import BaseModel

from agent_server.mcp.results import success


class Recorded(BaseModel):
    """Stands for the recorded output schema, which replaces its own."""


def _answering(answers: list[CallToolResult]) -> Any:
    async def answer(n: int = 0) -> Annotated[CallToolResult, Recorded]:
        return answers[n % len(answers)]

    return answer


def build(recorded: dict[str, Any]) -> MCPServer:
    tools: list[Tool] = []
    for name, entry in recorded.items():
        tool = Tool.from_function(
            _answering([success(name, body) for body in entry["answers"]]),
            name=name,
            description=f"Recorded answers of {name}.",
            structured_output=True,
        )
        tool.fn_metadata.output_schema = entry["output_schema"]
        tool.fn_metadata.output_model = None  # advertised, not validated, as on our server
        tools.append(tool)
    return MCPServer("canned", log_level="WARNING", tools=tools)


if __name__ == "__main__":
    port = int(sys.argv[1])
    recorded = json.loads(Path(sys.argv[2]).read_text())
    app = build(recorded).streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
