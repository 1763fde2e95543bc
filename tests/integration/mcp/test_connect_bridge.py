"""`mcpgw connect` driven over stdio by a real MCP client (the official SDK)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.integration.mcp.test_fastpath import AUTH, backend
from tests.integration.mcp.test_fastpath import gateway as fast_gateway
from tests.support import BOOT, Server

MCPGW = str(Path(sys.executable).parent / "mcpgw")
__all__ = ["backend", "fast_gateway"]  # fixtures: a gateway with a real HTTP backend


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_client_through_the_bridge(server_factory: type[Server], mode: str) -> None:
    gateway = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    gateway.wait_ready()
    params = StdioServerParameters(
        command=MCPGW, args=["connect", "--url", gateway.url, "--key", BOOT]
    )
    async with Client(stdio_client(params), mode=mode, cache=None) as client:  # type: ignore[arg-type]
        assert client.server_info is not None and client.server_info.name == "mcp-gateway"
        tools = [t.name for t in (await client.list_tools()).tools]
        assert "essentials__calculator_evaluate" in tools
        result = await client.call_tool("essentials__calculator_evaluate", {"expression": "2^8"})
        assert result.content[0].text == "256"  # type: ignore[union-attr]


def test_bridge_without_a_key_says_so(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [MCPGW, "connect", "--url", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert done.returncode == 2 and "MCPGW_API_KEY" in done.stderr


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_calls_through_the_bridge_take_the_fast_path(
    fast_gateway: Server, mode: str, version: str
) -> None:
    """The bridge adds the headers an HTTP client of the era sends, so the gateway
    can serve its calls as it serves any other client's (the fast path)."""
    params = StdioServerParameters(
        command=MCPGW, args=["connect", "--url", fast_gateway.url, "--key", BOOT]
    )
    async with Client(stdio_client(params), mode=mode, cache=None) as client:  # type: ignore[arg-type]
        assert client.protocol_version == version
        for _ in range(3):
            result = await client.call_tool("fix__echo", {"text": "héllo"})
            assert result.content[0].text == "héllo"  # type: ignore[union-attr]
    metrics = httpx.get(f"{fast_gateway.url}/metrics", headers=AUTH).text
    ok = 'mcpgw_tool_calls_total{outcome="ok",route="direct",server="fix",tool="echo"} 3.0'
    assert ok in metrics
    assert 'route="sdk",server="fix"' not in metrics
