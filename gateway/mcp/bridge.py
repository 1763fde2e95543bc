"""`mcpgw connect`: a stdio ⇄ gateway bridge for clients that only speak stdio.

Messages are pumped unchanged between the client's stdin/stdout and the
gateway's `/mcp` (Streamable HTTP), so whatever the client negotiates —
protocol era, capabilities, sessions — is negotiated with the gateway itself.
"""

from __future__ import annotations

import anyio
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared._httpx_utils import create_mcp_http_client


async def _pump(source: object, sink: object) -> None:
    async for message in source:  # type: ignore[attr-defined]
        if isinstance(message, Exception):
            continue  # a malformed line; the peer's own parser reports it
        await sink.send(message)  # type: ignore[attr-defined]


async def run_bridge(url: str, key: str) -> None:
    """Serve stdio until stdin closes, relaying every message to ``url``."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    async with (
        http,
        stdio_server() as (stdin_read, stdout_write),
        streamable_http_client(url, http_client=http) as (gateway_read, gateway_write),
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(_pump, gateway_read, stdout_write)
        await _pump(stdin_read, gateway_write)
        tasks.cancel_scope.cancel()
