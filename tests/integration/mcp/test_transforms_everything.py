"""Tool transforms on the real npm `@modelcontextprotocol/server-everything` (Streamable
HTTP, so both the fast path and the SDK path serve it).

`get-sum` is renamed `add` with `b` fixed at 100 (the backend's own answer shows the
value it got); `get-structured-content` gets a default `location`, its `humidity`
dropped and its `conditions` redacted — with an output schema the SDK client checks
results against, so the listing's schema must follow; `echo` is re-described and the
`trigger-*` tools are hidden. Each is listed and called through REST, the fast path
(2026-07-28 raw and a 2025-11-25 session) and the SDK's 2026-07-28 client.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.mcp.test_endpoint import connect
from tests.integration.mcp.test_request_limits import call
from tests.support import BOOT, Server, free_port

EVERYTHING = "@modelcontextprotocol/server-everything"
AUTH = {"Authorization": f"Bearer {BOOT}"}
TRANSFORMS = {
    "tools": {
        "get-sum": {"rename": "add", "description": "Adds 100 to a number.", "fixed": {"b": 100}},
        "get-structured-content": {
            "rename": "weather",
            "defaults": {"location": "Chicago"},
            "results": {
                "drop": ["$.structuredContent.humidity"],
                "redact": [{"path": "$.structuredContent.conditions", "replacement": "[withheld]"}],
            },
        },
        "echo": {"description": "Says the message back."},
    },
    "hide": ["trigger-*"],
}
WEATHER = {"temperature": 36, "conditions": "[withheld]"}


@pytest.fixture(scope="module")
def everything() -> Iterator[str]:
    if shutil.which("npx") is None:
        pytest.fail("npx is needed (Node.js): apt-get install nodejs npm")
    port = free_port()
    proc = subprocess.Popen(
        ["npx", "-y", EVERYTHING, "streamableHttp"],
        env={**os.environ, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert proc.poll() is None and time.monotonic() < deadline, "everything did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], everything: str) -> Server:
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_INTERFACE_MODE="list",
    )
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={
            "name": "ev",
            "type": "remote",
            "config": {"url": everything},
            "transforms": TRANSFORMS,
        },
        headers=AUTH,
        timeout=120,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.json()
    return server


@pytest.mark.timeout(300)
async def test_everything_listed_as_transformed(gateway: Server) -> None:
    for mode in ("legacy", "auto"):
        async with connect(f"{gateway.url}/mcp/servers/ev", mode=mode) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "get-sum" not in tools and "get-structured-content" not in tools
        assert not [n for n in tools if n.startswith("trigger-")]
        assert tools["add"].description == "Adds 100 to a number."
        assert set(tools["add"].input_schema["properties"]) == {"a"}
        assert tools["add"].input_schema["required"] == ["a"]
        weather = tools["weather"].input_schema
        assert weather["properties"]["location"]["default"] == "Chicago"
        assert "required" not in weather or "location" not in weather["required"]
        assert tools["weather"].output_schema is not None
        assert "humidity" not in tools["weather"].output_schema["properties"]
        assert tools["echo"].description == "Says the message back."
    r = httpx.post(
        f"{gateway.url}/api/v1/tools/search",
        json={"query": "add 100 to a number", "limit": 5},
        headers=AUTH,
    )
    assert r.json()["tools"][0]["name"] == "ev__add", r.json()


@pytest.mark.timeout(300)
async def test_everything_called_by_the_new_names(gateway: Server) -> None:
    for path in ("rest", "direct", "sdk", "execute_tool", "server_endpoint"):
        (status, answer), _ = call(gateway, path, "ev__add", {"a": 1, "b": 5})
        result = answer if path == "rest" else answer["result"]
        assert status == 200 and not result.get("isError"), (path, answer)
        assert result["content"][0]["text"] == "The sum of 1 and 100 is 101.", (path, result)
        (status, answer), _ = call(gateway, path, "ev__weather", {})
        result = answer if path == "rest" else answer["result"]
        assert result["structuredContent"] == WEATHER, (path, result)
    for mode in ("legacy", "auto"):  # the SDK client checks results by the output schema
        async with connect(f"{gateway.url}/mcp", mode=mode) as client:
            summed = await client.call_tool("ev__add", {"a": 2})
            weather = await client.call_tool("ev__weather", {})
            hidden = await _refused(client, "ev__trigger-long-running-operation")
        assert summed.content[0].text == "The sum of 2 and 100 is 102.", mode  # type: ignore[union-attr]
        assert not weather.is_error and weather.structured_content == WEATHER, (mode, weather)
        assert "unknown tool" in hidden, mode


async def _refused(client: Any, name: str) -> str:
    try:
        result = await client.call_tool(name, {})
    except Exception as exc:
        return str(exc)
    return str(result)
