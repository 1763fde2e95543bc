"""One tool, four entry points, one call path (gateway/servers/pipeline.py).

The same tool of a real backend process (tests/fixtures/http_backend.py: `whoami`
echoes the secret header the gateway sends it) is called through REST
`tools/execute`, the `/mcp` SDK path, `EXECUTE_TOOL` and the fast path. Each must give
the same result with the server's secret masked, be refused the same way for a key
that may not call tools, and count in the same per-server call metrics.

Which path serves a `/mcp` call: the fast path takes a well-formed call to an HTTP
backend (`mcpgw-route: direct`); `"arguments": null` is valid MCP the fast path
leaves to the SDK, and `EXECUTE_TOOL` is always the SDK path's.
"""

# ruff: noqa: F811 (the `gateway` and `backend` fixtures come from test_fastpath)
from __future__ import annotations

import re
from typing import Any
from unittest.mock import ANY

import httpx

from tests.integration.mcp.test_endpoint import _new_key
from tests.integration.mcp.test_fastpath import (  # noqa: F401 (fixtures)
    AUTH,
    SECRET,
    _modern_call,
    backend,
    gateway,
)
from tests.support import Server

REFUSAL = "this key may not call tools (needs 'tools:execute')"


def _four_ways(server: Server, key: str | None = None) -> dict[str, tuple[int, Any, str | None]]:
    """(HTTP status, result or REST body, mcpgw-route header) of `fix__whoami` per path."""
    headers = {"Authorization": f"Bearer {key}"} if key else AUTH
    rest = httpx.post(
        f"{server.url}/api/v1/tools/execute",
        json={"tool": "fix__whoami", "arguments": {}},
        headers=headers,
        timeout=30,
    )
    calls = {
        "direct": ("fix__whoami", {}),
        "sdk": ("fix__whoami", None),
        "execute_tool": ("EXECUTE_TOOL", {"tool": "fix__whoami"}),
    }
    out: dict[str, tuple[int, Any, str | None]] = {"rest": (rest.status_code, rest.json(), None)}
    for path, (name, arguments) in calls.items():
        r = _modern_call(server, name, arguments, key=key)
        out[path] = (r.status_code, r.json().get("result"), r.headers.get("mcpgw-route"))
    return out


def _calls(server: Server) -> dict[tuple[str, str], float]:
    """`mcpgw_tool_calls_total` of server `fix` by (route, outcome)."""
    text = httpx.get(f"{server.url}/metrics", headers=AUTH).text
    found = {}
    for labels, value in re.findall(r"^mcpgw_tool_calls_total\{([^}]*)\} (\S+)$", text, re.M):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if parsed["server"] == "fix":
            found[(parsed["route"], parsed["outcome"])] = float(value)
    return found


def test_every_entry_point_gives_the_same_masked_result_and_counts(gateway: Server) -> None:
    results = _four_ways(gateway)
    assert results["direct"][2] == "direct"  # the fast path served it
    assert results["sdk"][2] is None and results["execute_tool"][2] is None
    rest_status, rest_body, _ = results["rest"]
    assert rest_status == 200
    expected = {"content": [{"type": "text", "text": "my key is ***"}], "isError": False}
    assert {k: rest_body[k] for k in ("content", "isError")} == expected
    for path in ("direct", "sdk", "execute_tool"):
        status, result, _ = results[path]
        assert status == 200, (path, result)
        # 2026-07-28: complete, stamped with the gateway's serverInfo (spec #3002).
        stamp = {"io.modelcontextprotocol/serverInfo": {"name": "mcp-gateway", "version": ANY}}
        assert result == {**expected, "resultType": "complete", "_meta": stamp}, (path, result)
    assert SECRET not in gateway.output()
    assert _calls(gateway) == {("rest", "ok"): 1, ("sdk", "ok"): 2, ("direct", "ok"): 1}


def test_every_entry_point_refuses_a_key_that_may_not_call(gateway: Server) -> None:
    viewer = _new_key(gateway, "viewer")
    results = _four_ways(gateway, viewer)
    status, body, _ = results["rest"]
    assert (status, body["code"], body["message"]) == (403, "call_denied", REFUSAL)
    for path in ("direct", "sdk", "execute_tool"):
        status, result, _ = results[path]
        assert status == 200, (path, result)
        assert result["isError"] is True and result["content"][0]["text"] == REFUSAL, path
        assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "mcp-gateway"
    # Refusals are counted too, on every route.
    assert _calls(gateway) == {
        ("rest", "denied"): 1,
        ("sdk", "denied"): 2,
        ("direct", "denied"): 1,
    }
