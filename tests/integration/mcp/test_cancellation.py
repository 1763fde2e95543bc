"""A cancelled call closes the backend connection carrying it, on both paths.

Stateless and JSON-response backends cannot hear `notifications/cancelled` (no
session, or no handler for it): they notice a cancel only by the request's
connection closing. The backend here (tests/fixtures/stateless_backend.py) is such
a server; its `state` tool says whether the last `slow` call saw its client go away.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client

from tests.integration.mcp.test_endpoint import connect
from tests.support import BOOT, Server, free_port, spawn_http

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "stateless_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}


@pytest.fixture
def backend() -> Iterator[str]:
    port = free_port()
    proc: subprocess.Popen[bytes] = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


@pytest.fixture
def gateway(server_factory: type[Server], backend: str) -> Server:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_ALLOW_PRIVATE_URLS="true")
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "sl", "type": "remote", "config": {"url": backend}},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy"
    return server


async def _state(client: Client) -> str:
    """What became of the backend's last `slow` call, once it is no longer running."""
    state = ""
    for _ in range(50):
        result = await client.call_tool("sl__state", {})
        state = result.content[0].text  # type: ignore[union-attr]
        if state != "running":
            break
        await asyncio.sleep(0.1)
    return state


def _post(url: str, body: dict[str, Any], session: str | None = None, **kw: Any) -> Any:
    headers = {**AUTH, "Accept": "application/json, text/event-stream"}
    if session is not None:
        headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
    return httpx.post(url, json=body, headers=headers, **kw)


async def test_a_2025_agents_cancel_closes_the_backend_connection(gateway: Server) -> None:
    """On the fast path: the agent's notifications/cancelled stops the call, whose
    backend connection closes (a stateless backend's only cancel signal), and the
    agent's still open POST is answered as the SDK path answers it (-32800)."""
    url = f"{gateway.url}/mcp"
    init = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    opened = _post(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
    session = opened.headers["mcp-session-id"]
    _post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "sl__slow"}}
    calling = asyncio.create_task(asyncio.to_thread(_post, url, call, session, timeout=10))
    await asyncio.sleep(0.5)
    cancel = {"requestId": 2, "reason": "the user changed their mind"}
    accepted = await asyncio.to_thread(
        _post,
        url,
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": cancel},
        session,
    )
    assert accepted.status_code == 202
    with anyio.fail_after(5):  # not the backend's 30 s
        answered = await calling
    assert answered.headers.get("mcpgw-route") == "direct"
    assert '"code":-32800' in answered.text.replace(" ", ""), answered.text
    async with connect(url, mode="legacy") as client:
        assert await _state(client) == "disconnected"


async def test_a_timed_out_sdk_path_call_closes_the_backend_connection(gateway: Server) -> None:
    """On the SDK path (REST execute): the SDK client abandons a timed-out 2025-11-25
    request with notifications/cancelled only; the gateway also aborts its POST."""
    r = httpx.post(
        f"{gateway.url}/api/v1/tools/execute",
        json={"tool": "sl__slow", "arguments": {}, "timeout": 0.5},
        headers=AUTH,
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["isError"] is True, r.text
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        assert await _state(client) == "disconnected"


async def test_a_2025_agent_going_away_closes_the_backend_connection(gateway: Server) -> None:
    """The agent's disconnect stops a fast call too (its connection to the backend is
    closed, not returned to the pool)."""
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        await client.call_tool("sl__state", {})  # the handshake session is open: fast path
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "sl__slow"}}
    url = f"{gateway.url}/mcp"
    init = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    opened = _post(url, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
    session = opened.headers["mcp-session-id"]
    with pytest.raises(httpx.TimeoutException):
        await asyncio.to_thread(_post, url, call, session, timeout=0.5)
    async with connect(url, mode="legacy") as client:
        assert await _state(client) == "disconnected"
