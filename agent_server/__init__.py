"""Agent Server: an MCP tool server where AI agents find and book human experts."""

__version__ = "0.1.0"
