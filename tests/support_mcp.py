"""Raw MCP requests for tests that must see the HTTP response itself (status, headers,
which path served it), written once.

A 2026-07-28 request is stateless: its era in the `MCP-Protocol-Version` header and in
`_meta`, its method and name in `Mcp-Method` / `Mcp-Name` (the gateway's fast path
wants them all, as the SDK does).
"""

from __future__ import annotations

from typing import Any

import httpx

MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"


# A 2025-11-25 `initialize` request, for tests that open a session with raw requests.
LEGACY_INIT = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


def modern_meta(capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `_meta` envelope of a 2026-07-28 request."""
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": capabilities or {},
    }


def modern_call(
    name: str,
    arguments: dict[str, Any] | None,
    *,
    key: str,
    request_id: Any = "call-1",
    capabilities: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON body and headers of one 2026-07-28 `tools/call` of ``name``."""
    body = {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": name,
            "arguments": arguments,
            "_meta": modern_meta(capabilities),
            **(params or {}),
        },
    }
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": ACCEPT,
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
    }
    return body, headers


def last_message(response: httpx.Response) -> Any:
    """The response's JSON-RPC message: its JSON body, or the last event of its stream."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        return httpx.Response(200, content=data[-1]).json()
    return response.json()
