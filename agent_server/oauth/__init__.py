"""OAuth sign-in for remote MCP clients: an authorization server on the SDK's provider
protocol, the owner's consent, and what they store."""
