"""`/mcp` and `/mcp/servers/{name}` with real MCP clients against a real gateway process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.support import BOOT, Server


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server]) -> Server:
    """One gateway for the module: its tests make users, keys and servers of their own."""
    server = module_server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    return server


@asynccontextmanager
async def connect(url: str, key: str | None = BOOT, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = create_mcp_http_client(headers=headers)
    async with (
        http,
        Client(streamable_http_client(url, http_client=http), cache=None, mode=mode) as client,
    ):  # type: ignore[arg-type]
        yield client


def _new_key(server: Server, role: str, scopes: list[str] | None = None) -> str:
    auth = {"Authorization": f"Bearer {BOOT}"}
    user = httpx.post(
        f"{server.url}/api/v1/users",
        json={"email": f"{role}-{uuid.uuid4().hex[:8]}@example.com", "role": role},
        headers=auth,
    ).json()
    body: dict[str, Any] = {"name": "t", "user_id": user["id"]}
    if scopes:
        body["scopes"] = scopes
    return str(httpx.post(f"{server.url}/api/v1/keys", json=body, headers=auth).json()["key"])


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_both_protocol_eras_on_one_endpoint(gateway: Server, mode: str, version: str) -> None:
    async with connect(f"{gateway.url}/mcp", mode=mode) as client:
        assert client.protocol_version == version
        assert client.server_info is not None and client.server_info.name == "mcp-gateway"
        names = [t.name for t in (await client.list_tools()).tools]
        assert "essentials__calculator_evaluate" in names
        assert names == sorted(names)  # deterministic order
        result = await client.call_tool(
            "essentials__calculator_evaluate", {"expression": "0.1 + 0.2"}
        )
        assert result.is_error is False
        assert result.content[0].text == "0.3"  # type: ignore[union-attr]
        failed = await client.call_tool("essentials__calculator_evaluate", {"expression": "1/0"})
        assert failed.is_error is True


async def test_single_server_endpoint_keeps_original_names(gateway: Server) -> None:
    async with connect(f"{gateway.url}/mcp/servers/essentials") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "calculator_evaluate" in names and not any("__" in n for n in names)
        result = await client.call_tool("calculator_evaluate", {"expression": "6*7"})
        assert result.content[0].text == "42"  # type: ignore[union-attr]
    r = httpx.post(
        f"{gateway.url}/mcp/servers/nope", json={}, headers={"Authorization": f"Bearer {BOOT}"}
    )
    assert r.status_code == 404 and r.json()["code"] == "server_not_found"


def test_unauthenticated_requests_get_401(gateway: Server) -> None:
    r = httpx.post(f"{gateway.url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert r.status_code == 401
    # RFC 9728: where an MCP client finds how to get a token for this endpoint.
    metadata = f"{gateway.url}/.well-known/oauth-protected-resource/mcp"
    assert r.headers["www-authenticate"].startswith(f'Bearer resource_metadata="{metadata}"')
    assert "error=" not in r.headers["www-authenticate"]  # no credential: no error code
    assert r.json()["code"] == "unauthenticated"
    r = httpx.post(
        f"{gateway.url}/mcp", json={}, headers={"Authorization": "Bearer mgw_live_wrong"}
    )
    assert r.status_code == 401 and r.json()["code"] == "invalid_api_key"


async def test_a_viewer_lists_but_cannot_call(gateway: Server) -> None:
    viewer = _new_key(gateway, "viewer")
    async with connect(f"{gateway.url}/mcp", key=viewer) as client:
        assert (await client.list_tools()).tools
        result = await client.call_tool("essentials__calculator_evaluate", {"expression": "1"})
        assert result.is_error is True
        assert "tools:execute" in result.content[0].text  # type: ignore[union-attr]


async def test_sessions_belong_to_their_key(gateway: Server) -> None:
    other = _new_key(gateway, "developer")
    # open a 2025-11-25 session by hand to read its id, then try it with another key
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    r = httpx.post(
        f"{gateway.url}/mcp", json=init, headers={**headers, "Authorization": f"Bearer {BOOT}"}
    )
    session_id = r.headers["mcp-session-id"]
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    hijack = httpx.post(
        f"{gateway.url}/mcp",
        json=ping,
        headers={
            **headers,
            "Authorization": f"Bearer {other}",
            "Mcp-Session-Id": session_id,
            "MCP-Protocol-Version": "2025-11-25",
        },
    )
    assert hijack.status_code == 404


async def test_fastmcp_client(gateway: Server) -> None:
    import fastmcp

    async with fastmcp.Client(f"{gateway.url}/mcp", auth=BOOT) as client:
        tools = await client.list_tools()
        assert any(t.name == "essentials__calculator_statistics" for t in tools)
        result = await client.call_tool(
            "essentials__calculator_convert_units",
            {"value": "1", "from_unit": "mi", "to_unit": "m"},
        )
        assert result.content[0].text == "1609.344"  # type: ignore[union-attr]


async def test_list_changed_reaches_connected_clients(gateway: Server) -> None:
    """A new backend appears: 2025-11-25 sessions get notifications/tools/list_changed,
    2026-07-28 clients get a ToolsListChanged event on subscriptions/listen."""
    import asyncio

    from mcp import types

    legacy_events: list[str] = []

    async def on_message(message: object) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, types.ToolListChangedNotification):
            legacy_events.append("tools")

    source = (
        "from mcp.server.mcpserver import MCPServer\nserver = MCPServer('late')\n"
        "@server.tool()\ndef hello() -> str:\n    return 'hi'\n"
    )
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {BOOT}"})
    async with (
        http,
        Client(
            streamable_http_client(f"{gateway.url}/mcp", http_client=http),
            cache=None,
            mode="legacy",
            message_handler=on_message,
        ) as legacy,  # type: ignore[arg-type]
        connect(f"{gateway.url}/mcp") as modern,
    ):
        assert (
            legacy.server_capabilities.tools is not None
            and legacy.server_capabilities.tools.list_changed
        )
        await legacy.list_tools()  # the session is now known to the gateway
        async with modern.listen(tools_list_changed=True) as subscription:
            r = httpx.post(
                f"{gateway.url}/api/v1/servers",
                params={"wait": True},
                json={"name": "late", "type": "generated", "config": {"source": source}},
                headers={"Authorization": f"Bearer {BOOT}"},
                timeout=60,
            )
            assert r.status_code == 201
            async with asyncio.timeout(10):
                async for _event in subscription:
                    break
        names = [t.name for t in (await modern.list_tools()).tools]
        assert "late__hello" in names
        async with asyncio.timeout(10):
            while not legacy_events:
                await asyncio.sleep(0.05)


async def test_legacy_sse_transport(gateway: Server) -> None:
    """Clients from before Streamable HTTP use GET /sse + POST /messages/."""
    from mcp.client.sse import sse_client

    async with Client(
        sse_client(f"{gateway.url}/sse", headers={"Authorization": f"Bearer {BOOT}"}),
        cache=None,
        mode="legacy",
    ) as client:  # type: ignore[arg-type]
        names = [t.name for t in (await client.list_tools()).tools]
        assert "essentials__calculator_evaluate" in names
        result = await client.call_tool("essentials__calculator_evaluate", {"expression": "3*3"})
        assert result.content[0].text == "9"  # type: ignore[union-attr]
    assert httpx.get(f"{gateway.url}/sse").status_code == 401


def test_legacy_sse_sessions_belong_to_their_key(gateway: Server) -> None:
    other = _new_key(gateway, "operator")
    with httpx.stream(
        "GET", f"{gateway.url}/sse", headers={"Authorization": f"Bearer {BOOT}"}, timeout=10
    ) as stream:
        lines = stream.iter_lines()  # kept: dropping the iterator would close the stream
        endpoint = next(line for line in lines if line.startswith("data:"))[5:].strip()
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        hijack = httpx.post(
            f"{gateway.url}{endpoint}", json=ping, headers={"Authorization": f"Bearer {other}"}
        )
        assert hijack.status_code == 404
        own = httpx.post(
            f"{gateway.url}{endpoint}", json=ping, headers={"Authorization": f"Bearer {BOOT}"}
        )
        assert own.status_code == 202, own.text


async def test_gateway_restart(server_factory: type[Server]) -> None:
    """2026-07-28 clients carry on across a restart (stateless); a 2025-11-25 session gets
    404 afterwards and a new session works."""
    from mcp.shared.exceptions import MCPError

    first = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    first.wait_ready()
    url = f"{first.url}/mcp"
    async with connect(url) as modern, connect(url, mode="legacy") as legacy:
        assert (
            await modern.call_tool("essentials__calculator_evaluate", {"expression": "1+1"})
        ).content[0].text == "2"  # type: ignore[union-attr]
        await legacy.list_tools()
        first.stop()
        second = server_factory(port=first.port, MCPGW_BOOTSTRAP_API_KEY=BOOT)
        second.wait_ready()
        again = await modern.call_tool("essentials__calculator_evaluate", {"expression": "2+2"})
        assert again.content[0].text == "4"  # type: ignore[union-attr]
        with pytest.raises(MCPError):
            await legacy.list_tools()  # its session died with the old process
    async with connect(url, mode="legacy") as fresh:
        assert (await fresh.list_tools()).tools


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_cancelling_a_call_cancels_the_backend_work(gateway: Server, mode: str) -> None:
    import asyncio

    source = (
        "import asyncio\nfrom mcp.server.mcpserver import MCPServer\nserver = MCPServer('slowpoke')\n"
        "STATE = {'started': 0, 'cancelled': 0}\n"
        "@server.tool()\nasync def slow() -> str:\n"
        "    STATE['started'] += 1\n"
        "    try:\n        await asyncio.sleep(30)\n"
        "    except asyncio.CancelledError:\n        STATE['cancelled'] += 1\n        raise\n"
        "    return 'finished'\n"
        "@server.tool()\ndef state() -> str:\n    return f\"{STATE['started']} {STATE['cancelled']}\"\n"
    )
    r = httpx.post(
        f"{gateway.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "slowpoke", "type": "generated", "config": {"source": source}},
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=60,
    )
    # Registered by the first of the parametrized runs (the gateway is the module's).
    assert r.status_code == 201 or r.json()["code"] == "name_taken", r.text
    async with connect(f"{gateway.url}/mcp", mode=mode) as client:
        before = (await client.call_tool("slowpoke__state", {})).content[0].text  # type: ignore[union-attr]
        started, cancelled = map(int, before.split())
        call = asyncio.create_task(client.call_tool("slowpoke__slow", {}))
        for _ in range(100):
            now = (await client.call_tool("slowpoke__state", {})).content[0].text  # type: ignore[union-attr]
            if int(now.split()[0]) > started:
                break
            await asyncio.sleep(0.05)
        call.cancel()
        for _ in range(100):
            now = (await client.call_tool("slowpoke__state", {})).content[0].text  # type: ignore[union-attr]
            if int(now.split()[1]) > cancelled:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the backend never saw the cancellation ({mode}): {now}")
