"""The MCP transport: the server, its HTTP mounting, the tool pipeline and the tools."""
