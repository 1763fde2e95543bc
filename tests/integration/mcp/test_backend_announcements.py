"""What a backend announces reaches the agents: list changes and subscribed resources.

The backend (tests/fixtures/listen_backend.py) speaks both eras; the gateway keeps a
2026-07-28 session to it (whose listen stream carries list changes and the resources
agents subscribed to) and opens a 2025-11-25 one for 2025 agents' calls. Its listen
acknowledgements come half a second late, so an agent told "subscribed" before the
backend's stream names the resource would miss an update made at once.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ToolsListChanged

from tests.support import BOOT, MCPGW, Server, free_port, spawn_http

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "listen_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
WATCHED = "test://watched"


@asynccontextmanager
async def connect(url: str, mode: str, message_handler: Any = None) -> AsyncIterator[Client]:
    http = create_mcp_http_client(headers=AUTH)
    transport = streamable_http_client(url, http_client=http)
    async with (
        http,
        Client(transport, cache=None, mode=mode, message_handler=message_handler) as client,  # type: ignore[arg-type]
    ):
        yield client


def _spawn(*flags: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port), *flags], port)
    return f"http://127.0.0.1:{port}/mcp", proc


@pytest.fixture
def backends() -> Iterator[dict[str, str]]:
    started = {"sse": _spawn("--ack-delay", "0.5"), "json": _spawn("--ack-delay", "0.5", "--json")}
    yield {name: url for name, (url, _) in started.items()}
    for _, proc in started.values():
        proc.kill()
        proc.wait()


@pytest.fixture
def gateway(server_factory: type[Server], backends: dict[str, str]) -> Server:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_ALLOW_PRIVATE_URLS="true")
    server.wait_ready()
    for name, url in backends.items():
        r = httpx.post(
            f"{server.url}/api/v1/servers",
            params={"wait": True},
            json={"name": name, "type": "remote", "config": {"url": url}},
            headers=AUTH,
            timeout=60,
        )
        assert r.status_code == 201, r.text
        assert r.json()["health"]["status"] == "healthy"
    return server


async def test_a_2026_agents_listen_is_acknowledged_once_the_backend_stream_names_it(
    gateway: Server,
) -> None:
    async with connect(f"{gateway.url}/mcp/servers/sse", mode="auto") as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(resource_subscriptions=[WATCHED]) as subscription:
            await client.call_tool("touch", {})  # at once, as agents may
            with anyio.fail_after(5):
                async for event in subscription:
                    if getattr(event, "uri", None) == WATCHED:
                        break


async def test_a_2025_agents_subscribe_returns_once_the_backend_stream_names_it(
    gateway: Server,
) -> None:
    """A 2025 agent's resources/subscribe goes on the backend's 2026 listen filter too."""
    updated = anyio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.set()

    url = f"{gateway.url}/mcp/servers/sse"
    async with connect(url, mode="legacy", message_handler=on_message) as client:
        with warnings.catch_warnings(action="ignore", category=MCPDeprecationWarning):
            await client.session.subscribe_resource(WATCHED)  # the 2025-11-25 way
        await client.call_tool("touch", {})
        with anyio.fail_after(5):
            await updated.wait()


def _watching(announced: anyio.Event) -> Any:
    async def on_message(message: Any) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            announced.set()

    return on_message


@pytest.mark.parametrize("path", ["/mcp", "/mcp/servers/json"])
async def test_a_list_change_a_2025_agents_call_announces_reaches_it(
    gateway: Server, path: str
) -> None:
    """The backend announces on the 2025-11-25 session the call went on (its GET stream:
    a JSON-mode backend has no other way); the gateway passes it on."""
    announced = anyio.Event()
    tool = "json__announce" if path == "/mcp" else "announce"
    async with connect(
        gateway.url + path, mode="legacy", message_handler=_watching(announced)
    ) as client:
        await client.call_tool(tool, {})
        with anyio.fail_after(5):
            await announced.wait()


async def test_a_list_change_reaches_a_2025_client_of_mcpgw_connect(gateway: Server) -> None:
    announced = anyio.Event()
    bridge = StdioServerParameters(
        command=MCPGW, args=["connect", "--url", gateway.url, "--key", BOOT, "--server", "json"]
    )
    watcher = _watching(announced)
    async with Client(
        stdio_client(bridge), mode="legacy", cache=None, message_handler=watcher
    ) as client:  # type: ignore[arg-type]
        await client.call_tool("announce", {})
        with anyio.fail_after(5):
            await announced.wait()


async def _heard(changes: Any, seconds: float) -> bool:
    """Did a tools list change come on ``changes`` within ``seconds``?"""
    with anyio.move_on_after(seconds):
        async for event in changes:
            if isinstance(event, ToolsListChanged):
                return True
    return False


async def test_a_list_change_while_the_backend_stream_is_renewed_is_not_lost(
    gateway: Server,
) -> None:
    """Another agent's subscription renews the gateway's listen stream to the backend
    (a new filter means a new stream, acknowledged here half a second later): a list
    change announced meanwhile still reaches the agents listening."""
    url = f"{gateway.url}/mcp/servers/sse"
    async with (
        connect(url, mode="auto") as listener,
        connect(url, mode="auto") as subscriber,
        listener.listen(tools_list_changed=True) as changes,
    ):
        # First the gateway's own stream to the backend is up (acknowledged half a
        # second after registration; an announcement before that is not heard).
        with anyio.fail_after(10):
            while True:
                await listener.call_tool("announce", {})
                if await _heard(changes, 0.3):
                    break
        while await _heard(changes, 0.5):  # drain the repeats
            pass

        async def subscribe() -> None:
            async with subscriber.listen(resource_subscriptions=[WATCHED]):
                await anyio.sleep(1)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(subscribe)
            await anyio.sleep(0.2)  # the gateway is renewing its stream to the backend
            await listener.call_tool("announce", {})
            with anyio.fail_after(5):
                async for event in changes:
                    if isinstance(event, ToolsListChanged):
                        break


async def test_a_change_before_the_backend_stream_is_up_is_fetched_once_it_is(
    server_factory: type[Server],
) -> None:
    """A 2026-07-28 backend announces only on listen streams. What it announced before
    the gateway's stream was acknowledged (here: a tool added just after registration,
    the stream acknowledged 2 s after it) was heard by nobody; the gateway fetches the
    lists again once the stream is up, so the new tool reaches the catalog anyway."""
    url, proc = _spawn("--ack-delay", "2")
    try:
        gateway = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_ALLOW_PRIVATE_URLS="true")
        gateway.wait_ready()
        async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as http:
            r = await http.post(
                "/api/v1/servers",
                params={"wait": True},
                json={"name": "slow", "type": "remote", "config": {"url": url}},
            )
            assert r.status_code == 201, r.text
            async with connect(f"{gateway.url}/mcp/servers/slow", mode="auto") as agent:
                grew = await agent.call_tool("grow", {})
                assert grew.is_error is False, grew

            async def tools() -> set[str]:
                r = await http.get("/api/v1/servers/slow/tools")
                assert r.status_code == 200, r.text
                return {tool["name"] for tool in r.json()["items"]}

            assert "grown" not in await tools()  # the announcement went unheard
            with anyio.fail_after(10):
                while "grown" not in await tools():
                    await anyio.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
