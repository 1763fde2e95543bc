"""The `tools/call` fast path against a real HTTP backend: results, masking and faults.

The backend (tests/fixtures/http_backend.py) is a real server process on loopback;
real SDK clients call through a real gateway process. Which path served a call
shows in the `mcpgw-route: direct` response header and the access log.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.integration.mcp.test_endpoint import _new_key, connect
from tests.support import BOOT, Server, free_port, spawn_http
from tests.support_mcp import modern_call

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "http_backend.py"
SECRET = "s3cr3t-key-0123456789"
AUTH = {"Authorization": f"Bearer {BOOT}"}


@pytest.fixture
def backend() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp", proc
    proc.kill()
    proc.wait()


@pytest.fixture
def gateway(server_factory: type[Server], backend: tuple[str, Any]) -> Server:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_SERVER_CALL_TIMEOUT_SECONDS="1.5",
    )
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={
            "name": "fix",
            "type": "remote",
            "config": {"url": backend[0]},
            "secret_headers": {"X-Api-Key": SECRET},
        },
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy"
    return server


def _modern_call(
    server: Server,
    name: str,
    arguments: dict[str, Any] | None,
    path: str = "/mcp",
    timeout: float = 30,
    params: dict[str, Any] | None = None,
    key: str | None = None,
) -> Any:
    """One raw 2026-07-28 `tools/call` (so the test sees the HTTP response itself)."""
    body, headers = modern_call(name, arguments, key=key or BOOT, params=params)
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=timeout)


@pytest.mark.parametrize(("mode", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_calls_take_the_fast_path_in_both_eras(
    gateway: Server, mode: str, version: str
) -> None:
    for url, tool in (
        (f"{gateway.url}/mcp", "fix__echo"),
        (f"{gateway.url}/mcp/servers/fix", "echo"),
    ):
        async with connect(url, mode=mode) as client:
            assert client.protocol_version == version
            result = await client.call_tool(tool, {"text": "héllo"})
            assert result.is_error is False
            assert result.content[0].text == "héllo"  # type: ignore[union-attr]
    assert gateway.output().count('"route": "direct"') >= 2


def test_the_agent_gets_its_own_id_and_a_complete_result(gateway: Server) -> None:
    r = _modern_call(gateway, "fix__echo", {"text": "x"})
    assert r.status_code == 200 and r.headers["mcpgw-route"] == "direct"
    body = r.json()
    assert body["id"] == "call-1"  # the backend saw a gateway id, the agent its own
    assert body["result"]["content"][0]["text"] == "x"
    assert body["result"]["resultType"] == "complete"  # 2026-07-28 needs it; backend is 2025


def test_a_secret_the_backend_echoes_is_masked(gateway: Server) -> None:
    r = _modern_call(gateway, "fix__whoami", {})
    text = r.json()["result"]["content"][0]["text"]
    assert text == "my key is ***", text
    assert SECRET not in gateway.output()


async def test_notifications_before_the_result_are_streamed(gateway: Server) -> None:
    seen: list[Any] = []

    async def on_log(params: Any) -> None:
        seen.append(params.data)

    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        client.session._logging_callback = on_log  # type: ignore[attr-defined]
        result = await client.call_tool("fix__notify", {})
    assert result.content[0].text == "done"  # type: ignore[union-attr]
    r = _modern_call(gateway, "fix__notify", {})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert '"working on it"' in r.text and '"id":"call-1"' in r.text


def test_a_slow_backend_times_out_as_a_tool_error_and_keeps_serving(gateway: Server) -> None:
    started = time.monotonic()
    r = _modern_call(gateway, "fix__sleep", {"seconds": 5})
    assert time.monotonic() - started < 4.5
    result = r.json()["result"]
    assert result["isError"] is True and "timed out" in result["content"][0]["text"]
    assert (
        _modern_call(gateway, "fix__echo", {"text": "still here"}).json()["result"]["content"][0][
            "text"
        ]
        == "still here"
    )


def test_a_backend_http_error_is_a_tool_error(gateway: Server) -> None:
    result = _modern_call(gateway, "fix__fail", {}).json()["result"]
    assert result["isError"] is True and "HTTP 500" in result["content"][0]["text"]
    assert _modern_call(gateway, "fix__echo", {"text": "ok"}).status_code == 200


def test_a_forgotten_backend_session_is_recovered(gateway: Server) -> None:
    assert _modern_call(gateway, "fix__forget", {}).status_code == 200
    # The next call finds the backend session gone: the fast path hands it to the SDK
    # path, which reconnects; every call gets an answer, and calls work again soon.
    texts = []
    for _ in range(5):
        r = _modern_call(gateway, "fix__echo", {"text": "again"})
        assert r.status_code == 200, r.text
        texts.append(r.json()["result"]["content"][0]["text"])
        if texts[-1] == "again":
            break
        time.sleep(0.5)
    assert texts[-1] == "again", texts


def test_a_dead_backend_gives_tool_errors_not_a_dead_gateway(
    gateway: Server, backend: tuple[str, subprocess.Popen[bytes]]
) -> None:
    backend[1].kill()
    backend[1].wait()
    r = _modern_call(gateway, "fix__echo", {"text": "anyone?"})
    assert r.status_code == 200
    assert r.json()["result"]["isError"] is True
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


def test_rbac_holds_on_the_fast_path(gateway: Server) -> None:
    viewer = _new_key(gateway, "viewer")
    r = _modern_call(gateway, "fix__echo", {"text": "x"}, key=viewer)
    # Refused by the call pipeline's authorize stage, before anything reaches the backend.
    assert r.headers["mcpgw-route"] == "direct"
    result = r.json()["result"]
    assert result["isError"] is True and "tools:execute" in result["content"][0]["text"]
    assert result["resultType"] == "complete"


def test_metrics_count_calls_by_path_and_need_a_key(gateway: Server) -> None:
    assert _modern_call(gateway, "fix__echo", {"text": "x"}).status_code == 200
    assert _modern_call(gateway, "fix__fail", {}).status_code == 200
    assert httpx.get(f"{gateway.url}/metrics").status_code == 401
    viewer = _new_key(gateway, "viewer")
    denied = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert denied.status_code == 403
    r = httpx.get(f"{gateway.url}/metrics", headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    calls = "mcpgw_tool_calls_total"
    assert f'{calls}{{outcome="ok",route="direct",server="fix",tool="echo"}} 1.0' in r.text
    assert f'{calls}{{outcome="error",route="direct",server="fix",tool="fail"}} 1.0' in r.text
    assert 'mcpgw_tool_call_seconds_count{route="direct",server="fix",tool="echo"} 1.0' in r.text
    assert 'mcpgw_tool_call_seconds_count{route="direct",server="fix",tool="fail"} 1.0' in r.text


@pytest.mark.parametrize(("tool", "text"), [("primed", "primed"), ("dropped", "resumed")])
async def test_sdk_style_sse_streams_are_answered_on_the_fast_path(
    gateway: Server, tool: str, text: str
) -> None:
    """A priming event (id, empty data), comments and other event types are skipped as
    the SDK client skips them; a stream that ends before the answer is resumed with a
    GET carrying Last-Event-ID."""
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        result = await client.call_tool(f"fix__{tool}", {})
    assert result.is_error is False, result
    assert result.content[0].text == text  # type: ignore[union-attr]
    assert gateway.output().count('"route": "direct"') >= 1


def test_whitespace_around_header_values_is_not_part_of_them(gateway: Server) -> None:
    """RFC 9110 §5.5: `Mcp-Name:  fix__echo ` names `fix__echo`. uvicorn's parser keeps
    the trailing whitespace, so the gateway trims it: the call is answered, on the fast
    path. (Sent over a raw socket: HTTP client libraries refuse to send such values.)"""
    body = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "fix__echo",
                "arguments": {"text": "x"},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
    )
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        f"Authorization: Bearer {BOOT}\r\nContent-Type: application/json \r\n"
        "Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2026-07-28\t\r\n"
        "Mcp-Method:  tools/call \r\nMcp-Name:  fix__echo  \r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=30) as sock:
        sock.sendall(head.encode() + body)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status, _, rest = reply.partition(b"\r\n")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    assert status.split()[1] == b"200", reply
    assert b"mcpgw-route: direct" in headers.lower()
    result = orjson.loads(payload)["result"]
    assert result["isError"] is False and result["content"][0]["text"] == "x"


async def test_bytes_that_are_not_utf8_are_read_as_the_sdk_reads_them(gateway: Server) -> None:
    """The fast path must not fail a call the SDK path answers: a stray non-UTF-8 byte
    becomes U+FFFD (the SDK client's decoding), not an "invalid JSON" tool error."""
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        result = await client.call_tool("fix__latin1", {})
    assert result.is_error is False, result
    assert result.content[0].text == "caf\ufffd \u00e9"  # type: ignore[union-attr]
    assert '"route": "direct"' in gateway.output()


async def test_a_2026_agent_going_away_cancels_the_call_at_a_2025_backend(
    gateway: Server,
) -> None:
    """For a 2026-07-28 agent, closing the connection is the cancel; a 2025-11-25
    backend learns of it only from notifications/cancelled, which the gateway sends."""
    with pytest.raises(httpx.TimeoutException):
        _modern_call(gateway, "fix__sleep", {"seconds": 1.2}, timeout=0.3)
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        for _ in range(40):
            result = await client.call_tool("fix__cancelled", {})
            if result.content[0].text:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.05)
    assert result.content[0].text == "the client went away at the gateway"  # type: ignore[union-attr]


async def test_a_2025_backend_asks_a_2026_agent_through_input_required(gateway: Server) -> None:
    """A 2025 backend asks its question on the call's stream; a 2026 agent has no session
    to be asked on. The gateway answers `input_required` with the question, keeps the
    backend's call open, and the agent's retry (`inputResponses`, `requestState`)
    answers it: the tool runs once and returns what the agent said."""
    asked: list[str] = []

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    http = create_mcp_http_client(headers=AUTH)
    transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
    async with http, Client(transport, cache=None, elicitation_callback=elicitation) as client:  # type: ignore[arg-type]
        assert client.protocol_version == "2026-07-28"
        result = await client.call_tool("fix__ask", {})
    assert asked == ["What is your name?"]
    assert result.is_error is False, result
    answer = orjson.loads(result.content[0].text)  # type: ignore[union-attr]
    assert answer == {"action": "accept", "content": {"name": "Ada"}}
    assert gateway.output().count('"route": "direct"') >= 2  # both rounds on the fast path


def test_a_request_state_the_gateway_does_not_hold_is_refused(gateway: Server) -> None:
    r = _modern_call(gateway, "fix__ask", {}, params={"requestState": "mcpgw-input-nosuchstate"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == -32602 and "call the tool again" in error["message"]


def test_a_request_state_of_the_sdk_path_is_not_run_again_at_the_backend(gateway: Server) -> None:
    """A retry of a call parked on the SDK path belongs to it, even for a tool the fast
    path serves: forwarded, the backend would run the tool a second time."""
    before = _modern_call(gateway, "fix__cancelled", {}).json()["result"]
    state = "mcpgw-input-s.nosuchstate"
    r = _modern_call(gateway, "fix__echo", {"text": "zebra-42"}, params={"requestState": state})
    assert r.headers.get("mcpgw-route") != "direct"
    assert "zebra-42" not in r.text and r.json()["error"]["code"] == -32602, r.text
    assert _modern_call(gateway, "fix__cancelled", {}).json()["result"] == before
