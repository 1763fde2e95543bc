"""Server-to-client requests from a stdio backend reach the agent whose call caused them.

A stdio backend (the real `@modelcontextprotocol/server-everything`, run by npx) shares
one session among all agents and sends its sampling and elicitation requests on it
with nothing naming the call they belong to. While one call is in flight the gateway
knows whose it is and relays the request to that agent over `/mcp` (2025-11-25).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.integration.servers.conftest import EVERYTHING
from tests.support import BOOT, Server


@pytest.fixture
def gateway(server_factory: type[Server]) -> Server:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "ev", "type": "npx", "config": {"package": EVERYTHING, "args": ["stdio"]}},
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=300,
    )
    assert r.status_code == 201, r.text
    return server


def _text(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


async def _client(url: str, **callbacks: Any) -> tuple[httpx.AsyncClient, Client]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {BOOT}"})
    client = Client(
        streamable_http_client(url, http_client=http), cache=None, mode="legacy", **callbacks
    )
    return http, client


async def test_sampling_and_elicitation_reach_the_calling_agent(gateway: Server) -> None:
    asked: list[str] = []

    async def sampling(
        context: Any, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        asked.append(params.messages[0].content.text)  # type: ignore[union-attr]
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="forty-two, from the agent"),
            model="agent-llm",
        )

    async def elicitation(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada", "check": True})

    http, client = await _client(
        f"{gateway.url}/mcp", sampling_callback=sampling, elicitation_callback=elicitation
    )
    async with http, client:
        sampled = await client.call_tool("ev__trigger-sampling-request", {"prompt": "6 x 7?"})
        assert sampled.is_error is False, _text(sampled)
        assert "forty-two, from the agent" in _text(sampled)
        elicited = await client.call_tool("ev__trigger-elicitation-request", {})
        assert elicited.is_error is False, _text(elicited)
        assert "Ada" in _text(elicited)
    assert "6 x 7?" in asked[0]
    assert asked[1].startswith("Please provide inputs")


async def test_concurrent_calls_are_refused_not_misrouted(gateway: Server) -> None:
    """Two agents sampling at once on one stdio session: nobody gets the other's request."""
    release = asyncio.Event()
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def answer_as(who: str) -> Any:
        async def sampling(
            context: Any, params: types.CreateMessageRequestParams
        ) -> types.CreateMessageResult:
            seen[who].append(params.messages[0].content.text)  # type: ignore[union-attr]
            await release.wait()
            return types.CreateMessageResult(
                role="assistant",
                content=types.TextContent(type="text", text=f"answer from {who}"),
                model="m",
            )

        return sampling

    http_a, a = await _client(f"{gateway.url}/mcp", sampling_callback=answer_as("a"))
    http_b, b = await _client(f"{gateway.url}/mcp", sampling_callback=answer_as("b"))
    async with http_a, a, http_b, b:
        first = asyncio.create_task(a.call_tool("ev__trigger-sampling-request", {"prompt": "A"}))
        while not seen["a"]:  # a's request reached a: one call was in flight
            await asyncio.sleep(0.02)
        second = await asyncio.wait_for(
            b.call_tool("ev__trigger-sampling-request", {"prompt": "B"}), 30
        )
        release.set()
        result_a = await asyncio.wait_for(first, 30)
    assert "answer from a" in _text(result_a)
    # b's request came while a's call was in flight: refused, never sent to a.
    assert seen["b"] == [] and all("B" not in text for text in seen["a"][1:])
    assert second.is_error is True or "cannot be told apart" in _text(second), _text(second)
    assert "answer from a" not in _text(second)
