"""A backend that asks its client something outside any call, through the fast path.

The Python SDK's `ctx.session.list_roots()` (and a `create_message` with no related
request) goes on the backend session's standalone GET stream, not on the call's
response stream. The gateway's one session to the backend receives it; the agent whose
fast call is in flight on that session must be the one asked, and the call must get
its answer. The backend (tests/fixtures/outside_backend.py) is a real SDK server
process; a real gateway process and real SDK clients are on the other side.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from tests.support import BOOT, Server, free_port, spawn_http
from tests.support_mcp import last_message, modern_call

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "outside_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
ROOT = "file:///tmp/agent-root"


@pytest.fixture(params=["sse", "json"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend answering calls on SSE streams, or (`--json`) as whole JSON bodies."""
    port = free_port()
    flags = ["--json"] if request.param == "json" else []
    proc = spawn_http([sys.executable, str(BACKEND), str(port), *flags], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


@pytest.fixture
def gateway(server_factory: type[Server], backend: str) -> Server:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_SERVER_CALL_TIMEOUT_SECONDS="10",
    )
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        # One 2025-11-25 session: every agent's call shares it (and its GET stream).
        json={
            "name": "out",
            "type": "remote",
            "config": {"url": backend, "protocol": "2025-11-25"},
        },
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy"
    return server


async def _roots(context: Any) -> types.ListRootsResult:
    return types.ListRootsResult(roots=[types.Root(uri=ROOT, name="agent")])


async def _sampling(context: Any, params: types.CreateMessageRequestParams) -> Any:
    asked = params.messages[0].content
    text = getattr(asked, "text", "")
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text=f"sampled: {text}"), model="m"
    )


@asynccontextmanager
async def agent(url: str, mode: str = "legacy") -> AsyncIterator[Client]:
    http = create_mcp_http_client(headers=AUTH)
    transport = streamable_http_client(url, http_client=http)
    async with (
        http,
        Client(
            transport,  # type: ignore[arg-type]
            cache=None,
            mode=mode,
            list_roots_callback=_roots,
            sampling_callback=_sampling,
        ) as client,
    ):
        yield client


def _text(result: types.CallToolResult) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


async def test_roots_asked_outside_the_call_reach_the_calling_2025_agent(gateway: Server) -> None:
    for url, tool in (
        (f"{gateway.url}/mcp", "out__roots"),
        (f"{gateway.url}/mcp/servers/out", "roots"),
    ):
        async with agent(url) as client:
            assert client.protocol_version == "2025-11-25"
            result = await client.call_tool(tool, {})
        assert result.is_error is False, result
        assert _text(result) == ROOT
    assert gateway.output().count('"route": "direct"') >= 2  # both on the fast path


async def test_sampling_asked_outside_the_call_reaches_the_calling_agent(gateway: Server) -> None:
    async with agent(f"{gateway.url}/mcp") as client:
        result = await client.call_tool("out__sample", {"prompt": "ping"})
    assert result.is_error is False, result
    assert _text(result) == "sampled: ping"
    assert '"route": "direct"' in gateway.output()


async def test_with_two_calls_in_flight_the_one_asked_cannot_be_told_apart(
    gateway: Server,
) -> None:
    """The shared session's rule: a question tied to no call goes to the one call in
    flight; with two, it is refused (clearly), and neither agent is asked blindly."""
    asked: list[str] = []

    async def other_roots(context: Any) -> types.ListRootsResult:
        asked.append("other")
        return types.ListRootsResult(roots=[])

    async with agent(f"{gateway.url}/mcp") as busy, agent(f"{gateway.url}/mcp") as client:
        busy.session._list_roots_callback = other_roots  # type: ignore[attr-defined]
        sleeping = asyncio.create_task(busy.call_tool("out__sleep", {"seconds": 1.5}))
        await asyncio.sleep(0.5)
        # The backend passes its session's error on as the call's JSON-RPC error.
        with pytest.raises(MCPError, match="2 requests are in flight on this server's shared"):
            await client.call_tool("out__roots", {})
        assert _text(await sleeping) == "slept"
    assert asked == []


async def test_a_2026_agent_is_asked_through_input_required(gateway: Server) -> None:
    """A 2026-07-28 agent has no session to be asked on: it gets `input_required` while
    the backend's call waits, and its retry's answer is what the backend's question
    gets; the tool runs once and returns it. Both rounds on the fast path."""
    for tool, want in (("out__roots", ROOT), ("out__sample", "sampled: ping")):
        async with agent(f"{gateway.url}/mcp", mode="auto") as client:
            assert client.protocol_version == "2026-07-28"
            result = await client.call_tool(tool, {"prompt": "ping"} if "sample" in tool else {})
        assert result.is_error is False, result
        assert _text(result) == want
    assert gateway.output().count('"route": "direct"') >= 4


async def test_a_call_parked_for_its_agent_does_not_count_as_a_second_caller(
    gateway: Server,
) -> None:
    """A 2026 call that was answered `input_required` and never retried stays in flight
    at the backend until it times out; its agent was already asked. A question the
    backend asks meanwhile goes to the one call that can still be asked, instead of
    being refused as if two agents competed for it."""
    body, headers = modern_call(
        "out__sample",
        {"prompt": "x"},
        key=BOOT,
        request_id=1,
        capabilities={"sampling": {}, "roots": {}},
    )
    async with httpx.AsyncClient(timeout=30) as http:
        parked = last_message(await http.post(f"{gateway.url}/mcp", json=body, headers=headers))
    assert parked["result"]["resultType"] == "input_required", parked  # and no retry comes
    async with agent(f"{gateway.url}/mcp", mode="auto") as client:
        result = await client.call_tool("out__roots", {})
    assert result.is_error is False, result
    assert _text(result) == ROOT
