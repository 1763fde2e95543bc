"""`mcpgw connect`: a stdio ⇄ gateway bridge for clients that only speak stdio.

Messages are pumped unchanged between the client's stdin/stdout and the
gateway's `/mcp` (Streamable HTTP), so whatever the client negotiates —
protocol era, capabilities, sessions — is negotiated with the gateway itself.

On stdio the client sends no HTTP headers, so the bridge adds the ones an HTTP
client of the same era would (:class:`Stamper`): `MCP-Protocol-Version` once a
2025-11-25 session is negotiated, and for 2026-07-28 requests `Mcp-Method`,
`Mcp-Name` and the tool's `Mcp-Param-*` headers. Without them the gateway must
treat each call as an unversioned one and cannot take its fast path, and the SDK
transport cannot tell a 2026 cancellation (which closes the request) from a 2025
one (which is a notification).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from mcp import types
from mcp.client.streamable_http import streamable_http_client
from mcp.server.stdio import stdio_server
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.inbound import (
    MCP_METHOD_HEADER,
    MCP_NAME_HEADER,
    MCP_PROTOCOL_VERSION_HEADER,
    NAME_BEARING_METHODS,
    encode_header_value,
    mcp_param_headers,
    x_mcp_header_map,
)
from mcp.shared.message import ClientMessageMetadata, SessionMessage

_VERSION_META = "io.modelcontextprotocol/protocolVersion"
_MAX_TOOLS = 10_000  # header maps remembered from tools/list answers


class Stamper:
    """Adds the per-message HTTP headers a client of the negotiated era would send."""

    def __init__(self) -> None:
        self._version: str | None = None  # the 2025-11-25 session's negotiated version
        self._asked: dict[Any, str] = {}  # request id -> method, for initialize/tools/list
        self._param_maps: dict[str, dict[tuple[str, ...], str]] = {}

    def outgoing(self, message: SessionMessage) -> SessionMessage:
        """``message`` (client → gateway) with the headers its era asks for."""
        root = message.message
        params = getattr(root, "params", None)
        method = getattr(root, "method", None)
        if isinstance(root, types.JSONRPCRequest) and method in ("initialize", "tools/list"):
            self._asked[root.id] = method
        if method == "initialize":
            self._version = None
        meta = params.get("_meta") if isinstance(params, dict) else None
        modern = meta.get(_VERSION_META) if isinstance(meta, dict) else None
        if isinstance(modern, str) and isinstance(method, str):
            headers = self._modern_headers(modern, method, params)  # type: ignore[arg-type]
        elif self._version is not None:
            headers = {MCP_PROTOCOL_VERSION_HEADER: self._version}
        else:
            return message
        return SessionMessage(message.message, ClientMessageMetadata(headers=headers))

    def incoming(self, message: SessionMessage | Exception) -> None:
        """Learn the negotiated version and the tools' parameter headers from answers."""
        if not isinstance(message, SessionMessage):
            return
        root = message.message
        if not isinstance(root, types.JSONRPCResponse | types.JSONRPCError):
            return
        asked = self._asked.pop(root.id, None) if root.id is not None else None
        result = getattr(root, "result", None)
        if asked is None or not isinstance(result, dict):
            return
        if asked == "initialize" and isinstance(result.get("protocolVersion"), str):
            self._version = result["protocolVersion"]
        elif asked == "tools/list":
            self._remember_tools(result.get("tools"))

    def _modern_headers(
        self, version: str, method: str, params: Mapping[str, Any]
    ) -> dict[str, str]:
        headers = {MCP_PROTOCOL_VERSION_HEADER: version, MCP_METHOD_HEADER: method}
        name_key = NAME_BEARING_METHODS.get(method)
        name = params.get(name_key) if name_key is not None else None
        if isinstance(name, str):
            headers[MCP_NAME_HEADER] = encode_header_value(name)
        arguments = params.get("arguments")
        if method == "tools/call" and isinstance(name, str) and isinstance(arguments, dict):
            header_map = self._param_maps.get(name)
            if header_map:
                headers.update(mcp_param_headers(header_map, arguments))
        return headers

    def _remember_tools(self, tools: Any) -> None:
        if not isinstance(tools, list):
            return
        for tool in tools:
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
                continue
            header_map = x_mcp_header_map(tool.get("inputSchema"))
            if header_map:
                if len(self._param_maps) >= _MAX_TOOLS:
                    self._param_maps.clear()
                self._param_maps[tool["name"]] = header_map


async def _pump(source: Any, sink: Any, stamper: Stamper, to_gateway: bool) -> None:
    async for message in source:
        if isinstance(message, Exception):
            continue  # a malformed line; the peer's own parser reports it
        if to_gateway:
            message = stamper.outgoing(message)
        else:
            stamper.incoming(message)
        await sink.send(message)


async def run_bridge(url: str, key: str) -> None:
    """Serve stdio until stdin closes, relaying every message to ``url``."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {key}"})
    stamper = Stamper()
    async with (
        http,
        stdio_server() as (stdin_read, stdout_write),
        streamable_http_client(url, http_client=http) as (gateway_read, gateway_write),
        anyio.create_task_group() as tasks,
    ):
        tasks.start_soon(_pump, gateway_read, stdout_write, stamper, False)
        await _pump(stdin_read, gateway_write, stamper, True)
        tasks.cancel_scope.cancel()
