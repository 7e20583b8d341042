"""The product's tool registry; tool modules declare their tools on it."""

from agent_server.mcp.registry import ToolRegistry

REGISTRY = ToolRegistry()
