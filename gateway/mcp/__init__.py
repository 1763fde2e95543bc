"""The agent-facing MCP endpoint: `/mcp` (every allowed tool) and `/mcp/servers/{name}`."""
