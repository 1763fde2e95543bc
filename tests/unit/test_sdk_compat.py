"""Each SDK internal the gateway relies on (gateway/mcp/sdk_compat.py), checked against
the installed `mcp` and `fastmcp`: an upgrade that renames one fails here, by name.

Real SDK objects throughout: an in-memory client and server, the Streamable HTTP
client transport (entered, nothing sent) and session manager (driven over ASGI).
"""

from __future__ import annotations

from typing import Any

import httpx
from fastmcp import FastMCP
from mcp import Client
from mcp.client.streamable_http import StreamableHTTPTransport, streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from gateway.mcp import sdk_compat

server = MCPServer("compat")
connections: list[Any] = []


@server.tool()
async def probe(ctx: Context) -> str:
    """Notes the agent connection behind its per-request session"""
    connections.append(sdk_compat.agent_connection(ctx.session))
    return "ok"


async def test_a_client_sessions_dispatcher_and_whether_it_is_closed() -> None:
    async with Client(server, mode="legacy") as client:
        dispatcher = sdk_compat.client_dispatcher(client.session)
        assert callable(dispatcher.send_raw_request)
        assert sdk_compat.dispatcher_closed(dispatcher) is False
    assert sdk_compat.dispatcher_closed(dispatcher) is True


async def test_the_request_envelope_writer_can_be_wrapped() -> None:
    stamped: list[str] = []

    def wrap(original: sdk_compat.Stamp) -> sdk_compat.Stamp:
        def stamp(data: dict[str, Any], opts: Any) -> None:
            stamped.append(data["method"])
            original(data, opts)

        return stamp

    async with Client(server, mode="auto") as client:
        sdk_compat.wrap_request_stamp(client.session, wrap)
        await client.call_tool("probe", {})
    assert "tools/call" in stamped


async def test_the_agent_connection_behind_a_request() -> None:
    connections.clear()
    async with Client(server, mode="legacy") as client:
        await client.call_tool("probe", {})
    assert connections and connections[0] is not None
    assert callable(connections[0].send_tool_list_changed)  # what catalog changes use


async def test_the_session_managers_live_sessions() -> None:
    manager = StreamableHTTPSessionManager(app=server._lowlevel_server)
    assert sdk_compat.live_server_session(manager, "no-such-session") is False
    async with manager.run():

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await manager.handle_request(scope, receive, send)

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            r = await http.post(
                "/mcp",
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "t", "version": "1"},
                    },
                },
                headers={"Accept": "application/json, text/event-stream"},
            )
            session_id = r.headers["mcp-session-id"]
            assert sdk_compat.live_server_session(manager, session_id) is True


async def test_the_http_transport_and_its_posts_in_flight() -> None:
    opened = streamable_http_client("http://127.0.0.1:9/mcp")  # nothing is sent
    async with opened:
        transport = sdk_compat.http_transport(opened)
        assert isinstance(transport, StreamableHTTPTransport)
        assert sdk_compat.in_flight_posts(transport) == {}
        original = sdk_compat.cancellation_hook(transport)
        assert original is not None
        sdk_compat.set_cancellation_hook(transport, lambda message: False)
        assert sdk_compat.cancellation_hook(transport) is not original


def test_the_low_level_server_fastmcp_wraps() -> None:
    assert isinstance(sdk_compat.fastmcp_lowlevel(FastMCP("x")), Server)
    assert sdk_compat.fastmcp_lowlevel(object()) is None
