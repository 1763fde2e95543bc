"""A gateway in front of a backend that fails on command (tests/fixtures/faulty_backend.py),
and helpers that call one tool on each path: the fast path and the SDK path in both
protocol eras (2026-07-28 raw requests, a 2025-11-25 SDK client session), and REST."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.integration.mcp.test_endpoint import connect
from tests.support import BOOT, Server, free_port, spawn_http
from tests.support_mcp import modern_call

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "faulty_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
PATHS = ["fast-2026", "fast-2025", "sdk-2026", "sdk-2025", "rest"]


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    port = free_port()
    proc: subprocess.Popen[bytes] = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], backend: str) -> Server:
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_AUDIT_FLUSH_SECONDS="0.05",
        MCPGW_INTERFACE_MODE="list",
        MCPGW_SERVER_CALL_TIMEOUT_SECONDS="1",
        MCPGW_BREAKER_FAILURES="3",
        MCPGW_BREAKER_OPEN_SECONDS="60",
        MCPGW_RETRY_BACKOFF_SECONDS="0.01",
    )
    server.wait_ready()
    return server


def control(backend: str, **order: Any) -> None:
    httpx.post(f"{backend}/control", json=order, timeout=10).raise_for_status()


def counts(backend: str) -> dict[str, dict[str, int]]:
    return dict(httpx.get(f"{backend}/counts", timeout=10).json())


def register(
    gateway: Server, backend: str, resilience: dict[str, Any] | None = None, prefix: str = "flaky"
) -> str:
    """A new server on the backend (breakers are per server: each test has its own)."""
    name = f"{prefix}{uuid.uuid4().hex[:6]}"
    config: dict[str, Any] = {"url": f"{backend}/mcp"}
    if resilience is not None:
        config["resilience"] = resilience
    r = httpx.post(
        f"{gateway.url}/api/v1/servers",
        params={"wait": True},
        json={"name": name, "type": "remote", "config": config},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text
    return name


class Answer:
    """What one call was answered, whatever the path."""

    def __init__(self, text: str, is_error: bool, meta: dict[str, Any] | None, route: Any):
        self.text, self.is_error, self.meta, self.route = text, is_error, meta or {}, route

    def __repr__(self) -> str:
        return f"Answer({self.text!r}, is_error={self.is_error}, route={self.route})"


async def call(gateway: Server, path: str, tool: str) -> Answer:
    """Call ``tool`` (qualified) on ``path`` (one of :data:`PATHS`) with no arguments."""
    if path == "rest":
        r = httpx.post(
            f"{gateway.url}/api/v1/tools/execute",
            json={"tool": tool, "arguments": {}},
            headers=AUTH,
            timeout=30,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return Answer(body["content"][0]["text"], body["isError"], body.get("_meta"), "rest")
    name, arguments = tool, {}
    if path.startswith("sdk"):  # EXECUTE_TOOL is served by the SDK path
        name, arguments = "EXECUTE_TOOL", {"tool": tool, "arguments": {}}
    if path.endswith("2026"):
        body, headers = modern_call(name, arguments, key=BOOT)
        r = httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30)
        route = r.headers.get("mcpgw-route")
        assert route == ("direct" if path.startswith("fast") else None), (path, route)
        if "error" in r.json():  # the SDK path passes an HTTP failure on as -32603
            return Answer(r.json()["error"]["message"], True, None, route)
        result = r.json()["result"]
        return Answer(result["content"][0]["text"], result["isError"], result.get("_meta"), route)
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        try:
            found = await client.call_tool(name, arguments)
        except MCPError as exc:
            return Answer(exc.error.message, True, None, path)
    return Answer(found.content[0].text, found.is_error, found.meta, path)  # type: ignore[union-attr]


def health(gateway: Server, server: str) -> dict[str, Any]:
    r = httpx.get(f"{gateway.url}/api/v1/servers/{server}/health", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())
