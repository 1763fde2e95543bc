"""The gateway as an OAuth 2.1 authorization server for MCP clients (the MCP
specification's authorization profile): protected-resource metadata, client
registration, authorization code + PKCE whose user step is the gateway's sign-in,
resource-bound access tokens, refresh and revocation."""
