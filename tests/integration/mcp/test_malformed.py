"""Malformed JSON-RPC and wrong headers get the spec's errors: never a 500, never a hang."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support import BOOT, Server

JSON_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = Server(
        tmp_path_factory.mktemp("malformed"),
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_MAX_REQUEST_BYTES="65536",
    )
    server.wait_ready()
    yield server
    server.stop()


CASES: list[tuple[str, dict[str, Any], dict[str, str], int, int | None]] = [
    ("bad json", {"content": b"{nope"}, {}, 400, -32700),
    ("empty body", {"content": b""}, {}, 400, -32700),
    (
        "wrong jsonrpc version",
        {"json": {"jsonrpc": "1.0", "id": 1, "method": "ping"}},
        {},
        400,
        None,
    ),
    ("not an object", {"json": 42}, {}, 400, None),
    ("batch", {"json": [{"jsonrpc": "2.0", "id": 1, "method": "ping"}]}, {}, 400, None),
    (
        "initialize without id",
        {"json": {"jsonrpc": "2.0", "method": "initialize", "params": {}}},
        {},
        400,
        None,
    ),
    (
        "unknown method, no session",
        {"json": {"jsonrpc": "2.0", "id": 1, "method": "frobnicate"}},
        {},
        400,
        None,
    ),
    (
        "unknown session",
        {"json": {"jsonrpc": "2.0", "id": 1, "method": "ping"}},
        {"Mcp-Session-Id": "nope"},
        404,
        None,
    ),
    (
        "unsupported protocol version",
        {"json": {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}},
        {"MCP-Protocol-Version": "1999-01-01"},
        400,
        None,
    ),
    (
        "oversized body",
        {
            "content": b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"'
            + b"a" * 70_000
            + b'"}}'
        },
        {},
        413,
        -32600,
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "headers", "status", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_malformed_requests(
    gateway: Server,
    name: str,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: int | None,
) -> None:
    r = httpx.post(
        f"{gateway.url}/mcp",
        headers={**JSON_HEADERS, "Authorization": f"Bearer {BOOT}", **headers},
        timeout=10,
        **body,
    )
    assert r.status_code == status, (name, r.status_code, r.text[:300])
    payload = r.json()
    assert payload["jsonrpc"] == "2.0" and "error" in payload, payload
    if code is not None:
        assert payload["error"]["code"] == code


def test_wrong_content_type_and_accept(gateway: Server) -> None:
    auth = {"Authorization": f"Bearer {BOOT}"}
    r = httpx.post(
        f"{gateway.url}/mcp",
        headers={**auth, "Accept": JSON_HEADERS["Accept"], "Content-Type": "text/plain"},
        content=b"{}",
        timeout=10,
    )
    assert 400 <= r.status_code < 500
    r = httpx.put(f"{gateway.url}/mcp", headers=auth, timeout=10)
    assert r.status_code == 405
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200  # still up
