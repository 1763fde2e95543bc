"""Which era the gateway speaks to a backend, per request, and the fast path that follows.

A backend built on a current SDK (FastMCP, the Python SDK) answers `server/discover`
and keeps the initialize handshake too. The gateway speaks 2026-07-28 to it, and for
2025-11-25 agents opens a handshake session of its own, so their calls are neither
bridged nor pushed off the fast path (runtimes/dual.py). A backend that refuses the
handshake still serves 2025 agents, bridged over its 2026 session. Real backend
processes on loopback, a real gateway, the official SDK client on the agent side.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.subscriptions import ResourceUpdated

from tests.integration.mcp.test_endpoint import connect
from tests.support import BOOT, Server, free_port, spawn_http

ROOT = Path(__file__).resolve().parents[3]
MODERN_ONLY = ROOT / "tests" / "fixtures" / "modern_only_server.py"
FEATURES = ROOT / "tests" / "fixtures" / "interop" / "py_mcp2.py"  # the interop feature server
AUTH = {"Authorization": f"Bearer {BOOT}"}


def _start(args: list[str]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = spawn_http([*args, str(port)], port, timeout=60)
    return f"http://127.0.0.1:{port}/mcp", proc


@pytest.fixture(params=["fastmcp", "sdk"])
def sdk_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """An echo server on FastMCP or the official Python SDK (bench/sdk_backends.py)."""
    url, proc = _start([sys.executable, "-m", "bench.sdk_backends", request.param])
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture
def modern_only() -> Iterator[str]:
    url, proc = _start([sys.executable, str(MODERN_ONLY)])
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture
def feature_server() -> Iterator[str]:
    port = free_port()
    proc = spawn_http([sys.executable, str(FEATURES), "--port", str(port)], port, timeout=60)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


def _gateway(server_factory: type[Server], url: str, **config: str) -> Server:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_HEALTH_INTERVAL_SECONDS="0.5",
    )
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "be", "type": "remote", "config": {"url": url, **config}},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["protocol_version"] == "2026-07-28"
    return server


def _routes(server: Server) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mcpgw_tool_calls_total{") and 'server="be"' in line:
            route = line.split('route="', 1)[1].split('"', 1)[0]
            counts[route] = counts.get(route, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sdk_backends_take_the_fast_path_in_both_agent_eras(
    server_factory: type[Server], sdk_backend: str, mode: str
) -> None:
    gateway = _gateway(server_factory, sdk_backend)
    async with connect(f"{gateway.url}/mcp", mode=mode) as client:
        for i in range(20):
            result = await client.call_tool("be__echo", {"text": f"hi {i}"})
            assert result.is_error is False, result
            assert result.content[0].text == f"hi {i}"  # type: ignore[union-attr]
    routes = _routes(gateway)
    # A 2025 agent's first call may go the SDK path while the handshake session opens.
    assert routes.get("direct", 0) >= 19, routes
    assert routes.get("sdk", 0) <= 1, routes


async def test_a_backend_that_refuses_the_handshake_serves_2025_agents_bridged(
    server_factory: type[Server], modern_only: str
) -> None:
    gateway = _gateway(server_factory, modern_only)
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        for i in range(5):
            result = await client.call_tool("be__echo", {"text": f"hi {i}"})
            assert result.is_error is False, result
            assert result.content[0].text == f"hi {i}"  # type: ignore[union-attr]
        tried = await client.call_tool("be__handshakes", {})
    # Refused once, then remembered: not one handshake attempt per call.
    assert tried.structured_content == {"result": 1}, tried
    health = httpx.get(f"{gateway.url}/api/v1/servers/be", headers=AUTH).json()["health"]
    assert health["status"] == "healthy", health  # the refusal is not the server failing


async def test_a_subscription_is_carried_to_a_backend_spoken_to_in_2026(
    server_factory: type[Server], feature_server: str
) -> None:
    """2026-07-28 has no resources/subscribe: the gateway puts the URI in its listen
    stream's filter, and the backend's event reaches the 2025 agent as
    notifications/resources/updated. Health pings answer too (2026 has no `ping`)."""
    gateway = _gateway(server_factory, feature_server, protocol="2026-07-28")
    updates: list[str] = []
    got = asyncio.Event()

    async def on_message(message: object) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, types.ResourceUpdatedNotification):
            updates.append(str(root.params.uri))
            got.set()

    headers = {"Authorization": f"Bearer {BOOT}"}
    http = create_mcp_http_client(headers=headers)
    transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
    async with http, Client(transport, mode="legacy", message_handler=on_message) as client:  # type: ignore[arg-type]
        watched = "mcpgw://be/interop%3A%2F%2Fwatched"
        await client.subscribe_resource(watched)
        for _ in range(50):  # the stream reopens with the new filter in the background
            result = await client.call_tool("be__touch", {})
            assert result.is_error is False, result
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await got.wait()
            if got.is_set():
                break
    assert updates and updates[0] == watched, updates
    for _ in range(100):  # the monitor pings every 0.5 s
        health = httpx.get(f"{gateway.url}/api/v1/servers/be/health", headers=AUTH).json()
        if health["latency_ms"] is not None:
            break
        await asyncio.sleep(0.1)
    assert health["latency_ms"] is not None, health  # pinged by the monitor, and answered


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_result_without_result_type_is_complete_for_either_agent(
    server_factory: type[Server], modern_only: str, mode: str
) -> None:
    """2026-07-28 requires `resultType`; a backend that leaves it out is read as having
    said `complete` (fast path for a 2026 agent, the SDK client for a bridged 2025 one),
    not failed as invalid."""
    gateway = _gateway(server_factory, modern_only)
    async with connect(f"{gateway.url}/mcp", mode=mode) as client:
        result = await client.call_tool("be__bare", {})
    assert result.is_error is False, result
    assert result.content[0].text == "bare"  # type: ignore[union-attr]


@pytest.mark.parametrize("protocol", ["auto", "2026-07-28"])
async def test_a_2026_agent_listens_to_a_backend_resource(
    server_factory: type[Server], feature_server: str, protocol: str
) -> None:
    """A 2026-07-28 agent subscribes with `subscriptions/listen`; the gateway subscribes
    the backend (its handshake session, or its own listen stream when pinned to 2026)
    and the backend's update arrives on the agent's stream under the agent's URI."""
    gateway = _gateway(server_factory, feature_server, protocol=protocol)
    watched = "mcpgw://be/interop%3A%2F%2Fwatched"
    async with connect(f"{gateway.url}/mcp") as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(resource_subscriptions=[watched]) as subscription:
            event = None
            for _ in range(50):  # the backend side may open in the background
                result = await client.call_tool("be__touch", {})
                assert result.is_error is False, result
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        event = await anext(subscription)
                if event is not None:
                    break
    assert isinstance(event, ResourceUpdated) and event.uri == watched, event
