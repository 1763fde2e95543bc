"""Per-server and per-tool request limits (gateway/servers/limits.py) on every call path.

A real backend process (tests/fixtures/http_backend.py: `sleep` and `nap` wait as long
as they are told, `echo` answers at once) is registered twice through a real gateway
whose global call timeout is 1.5 s: as `fix`, with no limits of its own, and as `lim`,
with a server timeout of 3 s, a 0.5 s timeout for `sleep` alone, a 1024-byte arguments
limit and a 40-byte one for `whoami` alone. Each call is made through REST
`tools/execute`, the `/mcp` fast path and SDK path (2026-07-28), `EXECUTE_TOOL`,
`/mcp/servers/lim`, and a 2025-11-25 session.
"""

# ruff: noqa: F811 (the `gateway` and `backend` fixtures come from test_fastpath)
from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.integration.mcp.test_endpoint import connect
from tests.integration.mcp.test_fastpath import (  # noqa: F401 (fixtures)
    AUTH,
    backend,
    gateway,
)
from tests.support import BOOT, Server, wait_for
from tests.support_mcp import last_message, modern_call

LIMITS = {
    "call_timeout_seconds": 3,
    "max_request_bytes": 1024,
    "tools": {
        "sleep": {"call_timeout_seconds": 0.5},
        "whoami": {"max_request_bytes": 40},
    },
}
PATHS = ("rest", "direct", "sdk", "execute_tool", "server_endpoint")


def _register(server: Server, name: str, url: str, limits: Any = None) -> httpx.Response:
    # Breakers off: these tests time the same tool out on every path, which would open
    # its breaker (on by default) after five (tests/integration/resilience test that).
    config = {"url": url, "resilience": {"breaker": {"enabled": False}}}
    body: dict[str, Any] = {"name": name, "type": "remote", "config": config}
    if limits is not None:
        body["limits"] = limits
    return httpx.post(
        f"{server.url}/api/v1/servers", params={"wait": True}, json=body, headers=AUTH, timeout=60
    )


@pytest.fixture
def limited(gateway: Server, backend: tuple[str, Any]) -> Server:
    r = _register(gateway, "lim", backend[0], LIMITS)
    assert r.status_code == 201, r.text
    assert r.json()["limits"] == LIMITS
    return gateway


def _mcp(
    server: Server, name: str, arguments: dict[str, Any] | None, path: str = "/mcp", **kw: Any
) -> httpx.Response:
    body, headers = modern_call(name, arguments, key=BOOT, request_id=kw.pop("id", "call-1"))
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def call(server: Server, path: str, qualified: str, args: dict[str, Any]) -> tuple[Any, str | None]:
    """(the REST body or the JSON-RPC message, the `mcpgw-route` header) of one call."""
    srv, tool = qualified.split("__", 1)
    if path == "rest":
        r = httpx.post(
            f"{server.url}/api/v1/tools/execute",
            json={"tool": qualified, "arguments": args},
            headers=AUTH,
            timeout=30,
        )
        return (r.status_code, r.json()), None
    if path == "direct":
        r = _mcp(server, qualified, args)
    elif path == "sdk":  # an id past 64 bits: valid JSON-RPC the fast path leaves alone
        r = _mcp(server, qualified, args, id=2**70)
    elif path == "execute_tool":
        r = _mcp(server, "EXECUTE_TOOL", {"tool": qualified, "arguments": args})
    else:
        r = _mcp(server, tool, args, f"/mcp/servers/{srv}")
    return (r.status_code, last_message(r)), r.headers.get("mcpgw-route")


def _text(result: dict[str, Any]) -> str:
    return str(result["content"][0]["text"])


async def _legacy(server: Server, qualified: str, args: dict[str, Any]) -> Any:
    """A 2025-11-25 session's call (the fast path takes it): its result, or the MCPError
    a JSON-RPC error raised (caught inside the client, whose task group would wrap it)."""
    async with connect(f"{server.url}/mcp", mode="legacy") as client:
        try:
            return await client.call_tool(qualified, args)
        except MCPError as exc:
            return exc


def test_routes_are_the_ones_named(limited: Server) -> None:
    """The helper's paths are the paths they say (else the tests below prove less)."""
    answers = {p: call(limited, p, "lim__echo", {"text": "hi"}) for p in PATHS}
    for path, ((status, answer), _) in answers.items():
        assert status == 200 and "hi" in str(answer), (path, answer)
    routes = {p: route for p, (_, route) in answers.items()}
    assert routes == {
        "rest": None,
        "direct": "direct",
        "sdk": None,
        "execute_tool": None,
        "server_endpoint": "direct",
    }


@pytest.mark.timeout(120)
async def test_a_tool_timeout_shorter_than_the_servers_times_only_that_tool_out(
    limited: Server,
) -> None:
    for path in PATHS:
        # `sleep` has 0.5 s of its own: a 1 s nap times out, worded as the global timeout is.
        (status, answer), _ = call(limited, path, "lim__sleep", {"seconds": 1})
        result = answer if path == "rest" else answer["result"]
        assert status == 200, (path, answer)
        assert result["isError"] is True, (path, result)
        # (worded per path as the global timeout is: the runtime names the tool too)
        assert _text(result).endswith("on server 'lim' timed out after 0.5s"), (path, result)
        # `nap`, on the same server, has the server's 3 s, longer than the global 1.5 s.
        (status, answer), _ = call(limited, path, "lim__nap", {"seconds": 2})
        result = answer if path == "rest" else answer["result"]
        assert result["isError"] is False and _text(result) == "slept", (path, result)
    # The same nap on `fix` (no limits of its own) has the global 1.5 s.
    (_, answer), _ = call(limited, "direct", "fix__nap", {"seconds": 2})
    assert _text(answer["result"]) == "tool call on server 'fix' timed out after 1.5s"
    # A 2025-11-25 session, both ways.
    timed_out = await _legacy(limited, "lim__sleep", {"seconds": 1})
    assert timed_out.is_error and "timed out after 0.5s" in timed_out.content[0].text  # type: ignore[union-attr]
    slept = await _legacy(limited, "lim__nap", {"seconds": 2})
    assert not slept.is_error and slept.content[0].text == "slept"  # type: ignore[union-attr]

    async def audited() -> list[dict[str, Any]] | None:
        r = httpx.get(
            f"{limited.url}/api/v1/audit",
            params={"action": "tools/call", "server": "lim", "outcome": "timeout", "limit": 50},
            headers=AUTH,
        )
        rows = r.json()["items"]
        return rows if len(rows) >= len(PATHS) + 1 else None

    rows = await wait_for(audited, timeout=10, what="the timeouts' audit rows")
    assert {row["target"] for row in rows} == {"sleep"}, rows
    assert {row["route"] for row in rows} == {"rest", "mcp", "mcp-fast", "meta"}, rows


@pytest.mark.timeout(120)
async def test_a_server_size_limit_refuses_before_the_backend(limited: Server) -> None:
    big = {"text": "x" * 2000}  # over `lim`'s 1024 bytes, far under the global 12 MiB
    statuses: dict[str, int] = {}
    for path in PATHS:
        # The same call on `fix` goes through ...
        (status, answer), _ = call(limited, path, "fix__echo", big)
        result = answer if path == "rest" else answer["result"]
        assert result["isError"] is False and _text(result) == big["text"], (path, answer)
        # ... and on `lim` it is refused, naming the server, the tool and the limit.
        (status, answer), _ = call(limited, path, "lim__echo", big)
        if path == "rest":
            assert status == 413, answer
            assert answer["code"] == "payload_too_large", answer
            assert (answer["server"], answer["tool"], answer["limit"]) == ("lim", "echo", 1024)
            assert answer["size"] == 2011
            message = answer["message"]
        else:
            error = answer["error"]
            assert error["code"] == -32600, (path, answer)
            assert error["data"] == {
                "code": "payload_too_large",
                "server": "lim",
                "tool": "echo",
                "limit": 1024,
                "size": 2011,
            }, (path, answer)
            message = error["message"]
            statuses[path] = status
        assert "'lim'" in message and "lim__echo" in message and "1024" in message, message
        # Under the limit, `lim` serves it.
        (status, answer), _ = call(limited, path, "lim__echo", {"text": "y" * 500})
        result = answer if path == "rest" else answer["result"]
        assert result["isError"] is False, (path, answer)
    # 2026-07-28 maps the JSON-RPC error to an HTTP status, the same on every MCP path.
    assert set(statuses.values()) == {400}, statuses
    # A tool's own limit: 40 bytes for `whoami`, the server's 1024 for `echo`.
    (status, answer), _ = call(limited, "rest", "lim__whoami", {"pad": "z" * 40})
    assert status == 413 and answer["limit"] == 40 and "tool 'whoami'" in answer["message"]
    (status, answer), _ = call(limited, "rest", "lim__echo", {"text": "z" * 40})
    assert status == 200 and answer["isError"] is False
    # A 2025-11-25 session gets the same JSON-RPC error.
    refused = await _legacy(limited, "lim__echo", big)
    assert isinstance(refused, MCPError), refused
    assert refused.error.code == -32600
    assert (refused.error.data or {}).get("code") == "payload_too_large"
    assert not (await _legacy(limited, "fix__echo", big)).is_error

    async def audited() -> list[dict[str, Any]] | None:
        r = httpx.get(
            f"{limited.url}/api/v1/audit",
            params={"action": "tools/call", "server": "lim", "outcome": "denied", "limit": 50},
            headers=AUTH,
        )
        rows = r.json()["items"]
        return rows if len(rows) >= len(PATHS) + 2 else None

    rows = await wait_for(audited, timeout=10, what="the refusals' audit rows")
    assert {row["error"]["code"] for row in rows} == {"payload_too_large"}, rows


def test_limits_are_validated_and_can_be_changed(gateway: Server, backend: Any) -> None:
    url = backend[0]
    bad: list[tuple[Any, str]] = [
        ({"call_timeout_seconds": 0}, "limits.call_timeout_seconds"),
        ({"call_timeout_seconds": 3601}, "limits.call_timeout_seconds"),
        ({"max_request_bytes": 0}, "limits.max_request_bytes"),
        ({"max_request_bytes": "lots"}, "limits.max_request_bytes"),
        ({"timeout": 5}, "limits.timeout"),
        ({"tools": {"echo": {"call_timeout": 5}}}, "limits.tools.echo.call_timeout"),
        (
            {"tools": {"echo": {"call_timeout_seconds": -1}}},
            "limits.tools.echo.call_timeout_seconds",
        ),
        # Above the global MCPGW_MAX_REQUEST_BYTES (12 MiB): it would never apply.
        ({"max_request_bytes": 13 * 1024 * 1024}, "limits.max_request_bytes"),
        (
            {"tools": {"echo": {"max_request_bytes": 13 * 1024 * 1024}}},
            "limits.tools.echo.max_request_bytes",
        ),
    ]
    for limits, field in bad:
        r = _register(gateway, "bad", url, limits)
        assert r.status_code == 422, (limits, r.text)
        assert field in {e["field"] for e in r.json()["errors"]}, (limits, r.text)
    assert httpx.get(f"{gateway.url}/api/v1/servers/bad", headers=AUTH).status_code == 404
    # No limits: the global ones (null); PATCH sets them, `{}` removes them.
    assert httpx.get(f"{gateway.url}/api/v1/servers/fix", headers=AUTH).json()["limits"] is None
    patch = f"{gateway.url}/api/v1/servers/fix"
    r = httpx.patch(patch, json={"limits": {"bogus": 1}}, headers=AUTH)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "limits.bogus", r.text
    r = httpx.patch(
        patch, json={"limits": {"tools": {"sleep": {"call_timeout_seconds": 0.3}}}}, headers=AUTH
    )
    assert r.status_code == 200, r.text
    assert r.json()["limits"] == {"tools": {"sleep": {"call_timeout_seconds": 0.3}}}
    (_, answer), _ = call(gateway, "direct", "fix__sleep", {"seconds": 1})
    assert _text(answer["result"]) == "tool call on server 'fix' timed out after 0.3s"
    versions = httpx.get(f"{patch}/versions", headers=AUTH).json()
    assert versions[0]["summary"] == "changed limits", versions
    r = httpx.patch(patch, json={"limits": {}}, headers=AUTH)
    assert r.status_code == 200 and r.json()["limits"] is None, r.text
    (_, answer), _ = call(gateway, "direct", "fix__sleep", {"seconds": 1})
    assert _text(answer["result"]) == "slept"


async def test_calls_in_parallel_keep_their_own_timeouts(limited: Server) -> None:
    """Timeouts are per call, not per server: a short one does not cut a long one."""
    results = await asyncio.gather(
        asyncio.to_thread(call, limited, "direct", "lim__sleep", {"seconds": 1}),
        asyncio.to_thread(call, limited, "direct", "lim__nap", {"seconds": 1}),
    )
    texts = [_text(answer["result"]) for (_, answer), _ in results]
    assert texts == ["tool call on server 'lim' timed out after 0.5s", "slept"]
