"""The response cache (gateway/servers/cache/) on real calls.

The backend (tests/fixtures/cache_backend.py, the Python SDK, both eras) answers
`lookup {key}` with `{key}#{n}`, n the times it ran with that key: an answer from the
cache repeats n, one from the backend counts up. Every path is checked — REST, the
`/mcp` fast path (2026-07-28 stateless and 2025-11-25 session requests) and the SDK
path (`EXECUTE_TOOL`, both eras) — with the same expectations: a readOnlyHint tool's
second call is a hit, a tool without the hint never is, callers of another user never
share an entry (unless the server is `shared`), `no-cache` gets a fresh answer, TTLs
run out, an admin's clear and the backend's announcements invalidate, hits are
audited and counted; on Redis, two gateway processes share answers.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.integration.mcp.test_endpoint import _new_key, connect
from tests.support import BOOT, Server, free_port, run, spawn_http, wait_for
from tests.support_mcp import ACCEPT, LEGACY_INIT, last_message, modern_call

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "cache_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
REDIS = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")
PATHS = ["rest", "direct-2026", "direct-2025", "sdk-2026", "sdk-2025"]
Caller = Callable[..., str]


@pytest.fixture(scope="module")
def backend_url() -> Iterator[str]:
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


def register(server: Server, name: str, url: str, cache: dict[str, Any] | None) -> None:
    config: dict[str, Any] = {"url": url}
    if cache is not None:
        config["cache"] = cache
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": name, "type": "remote", "config": config},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], backend_url: str) -> Server:
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_AUDIT_FLUSH_SECONDS="0.05",
        MCPGW_INTERFACE_MODE="list",
    )
    server.wait_ready()
    register(server, "cached", backend_url, {})
    register(server, "open", backend_url, {"shared": True, "tools": {"bump": {}}})
    register(server, "short", backend_url, {"ttl_seconds": 0.5})
    register(server, "plain", backend_url, None)
    warm_up(server, "cached", "open", "short", "plain")
    return server


def warm_up(server: Server, *names: str) -> None:
    """A server's session starts at its first call, and the gateway opens its 2025-11-25
    session to a 2026 backend at a 2025 agent's first call (both served by the SDK
    path); from then on calls of both eras take the fast path."""
    legacy = _legacy_headers(server, BOOT)
    for name, era in ((n, e) for n in names for e in ("modern", "legacy")):
        for _ in range(20):
            body, headers = modern_call(f"{name}__runs", {}, key=BOOT)
            if era == "legacy":
                del body["params"]["_meta"]
                headers = legacy
            r = httpx.post(f"{server.url}/mcp", json=body, headers=headers, timeout=30)
            if r.headers.get("mcpgw-route") == "direct":
                break
        else:
            raise AssertionError(f"{era} calls of {name} never took the fast path")


def _legacy_headers(server: Server, key: str) -> dict[str, str]:
    base = {"Authorization": f"Bearer {key}", "Accept": ACCEPT}
    r = httpx.post(f"{server.url}/mcp", json=LEGACY_INIT, headers=base, timeout=30)
    assert r.status_code == 200, r.text
    headers = {
        **base,
        "MCP-Protocol-Version": "2025-11-25",
        "Mcp-Session-Id": r.headers["mcp-session-id"],
    }
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    httpx.post(f"{server.url}/mcp", json=note, headers=headers, timeout=30)
    return headers


def caller(server: Server, path: str, key: str = BOOT) -> Caller:
    """A function calling a tool on ``path`` as ``key``'s user: the result's text."""
    legacy = _legacy_headers(server, key) if path.endswith("2025") else None

    def call(tool: str, arguments: dict[str, Any], fresh: bool = False) -> str:
        extra = {"io.mcpgw/cache": "no-cache"} if fresh else {}
        if path == "rest":
            body: dict[str, Any] = {"tool": tool, "arguments": arguments}
            if fresh:
                body["_meta"] = extra
            r = httpx.post(
                f"{server.url}/api/v1/tools/execute",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            return _text(r.json())
        name, args = tool, arguments
        if path.startswith("sdk"):
            name, args = "EXECUTE_TOOL", {"tool": tool, "arguments": arguments}
        if legacy is None:
            request, headers = modern_call(name, args, key=key)
            request["params"]["_meta"].update(extra)
        else:
            params = {"name": name, "arguments": args, **({"_meta": extra} if extra else {})}
            request = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}
            headers = legacy
        r = httpx.post(f"{server.url}/mcp", json=request, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
        route = "direct" if path.startswith("direct") else None
        assert r.headers.get("mcpgw-route") == route, (path, r.headers)
        return _text(last_message(r)["result"])

    return call


def _text(result: dict[str, Any]) -> str:
    text = str(result["content"][0]["text"])
    return "error: " + text if result.get("isError") else text


def runs(server: Server, key: str) -> dict[str, int]:
    """How many times the backend ran each tool with ``key``."""
    call = caller(server, "rest")
    counts: dict[str, int] = json.loads(call("plain__runs", {}))
    return {k.split(":", 1)[0]: v for k, v in counts.items() if k.endswith(f":{key}")}


@pytest.mark.parametrize("path", PATHS)
def test_a_read_only_tool_runs_once_and_others_every_time(gateway: Server, path: str) -> None:
    call, k = caller(gateway, path), uuid.uuid4().hex[:8]
    assert [call("cached__lookup", {"key": k}) for _ in range(3)] == [f"{k}#1"] * 3
    # Other arguments: another entry.
    assert call("cached__lookup", {"key": k + "x"}) == f"{k}x#1"
    assert [call("cached__bump", {"key": k}) for _ in range(2)] == [f"{k}#1", f"{k}#2"]
    assert [call("plain__lookup", {"key": k}) for _ in range(2)] == [f"{k}#2", f"{k}#3"]
    errors = [call("cached__broken", {"key": k}) for _ in range(2)]
    assert all(e.startswith("error: ") for e in errors), errors
    assert runs(gateway, k) == {"lookup": 3, "bump": 2, "broken": 2}
    # The other paths find the same entry.
    for other in PATHS:
        assert caller(gateway, other)("cached__lookup", {"key": k}) == f"{k}#1", other


def test_callers_of_other_users_never_share_an_entry(gateway: Server) -> None:
    k = uuid.uuid4().hex[:8]
    alice, bob = _new_key(gateway, "developer"), _new_key(gateway, "developer")
    for path in ("rest", "direct-2026", "sdk-2025"):
        kk = f"{k}-{path}"
        as_alice, as_bob = caller(gateway, path, alice), caller(gateway, path, bob)
        assert as_alice("cached__lookup", {"key": kk}) == f"{kk}#1"
        assert as_bob("cached__lookup", {"key": kk}) == f"{kk}#2"
        assert as_alice("cached__lookup", {"key": kk}) == f"{kk}#1"
        assert as_bob("cached__lookup", {"key": kk}) == f"{kk}#2"
        # A shared server's answers serve everyone (bump: cached by the admin's setting).
        assert as_alice("open__bump", {"key": kk}) == f"{kk}#1"
        assert as_bob("open__bump", {"key": kk}) == f"{kk}#1"


@pytest.mark.parametrize("path", PATHS)
def test_no_cache_gets_a_fresh_answer_which_replaces_the_entry(gateway: Server, path: str) -> None:
    call, k = caller(gateway, path), uuid.uuid4().hex[:8]
    assert call("cached__lookup", {"key": k}) == f"{k}#1"
    assert call("cached__lookup", {"key": k}, fresh=True) == f"{k}#2"
    assert call("cached__lookup", {"key": k}) == f"{k}#2"


async def test_a_ttl_runs_out(gateway: Server) -> None:
    call, k = caller(gateway, "direct-2026"), uuid.uuid4().hex[:8]
    assert call("short__lookup", {"key": k}) == f"{k}#1"
    assert call("short__lookup", {"key": k}) == f"{k}#1"
    await wait_for(lambda: call("short__lookup", {"key": k}) == f"{k}#2", timeout=5, what="expiry")


def test_an_admin_clears_a_server_by_rest_and_cli(gateway: Server, tmp_path: Path) -> None:
    call, k = caller(gateway, "direct-2025"), uuid.uuid4().hex[:8]
    assert call("cached__lookup", {"key": k}) == f"{k}#1"
    r = httpx.delete(f"{gateway.url}/api/v1/servers/cached/cache", headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.json()["dropped"] >= 1, r.text
    assert call("cached__lookup", {"key": k}) == f"{k}#2"
    done = run(
        tmp_path, "servers", "cache", "cached", "--clear", "--url", gateway.url, "--key", BOOT
    )
    assert done.returncode == 0 and '"dropped"' in done.stdout, done.stderr
    assert call("cached__lookup", {"key": k}) == f"{k}#3"
    # Clearing needs servers:write; an unknown server is a 404.
    viewer = {"Authorization": f"Bearer {_new_key(gateway, 'developer')}"}
    r = httpx.delete(f"{gateway.url}/api/v1/servers/cached/cache", headers=viewer, timeout=30)
    assert r.status_code == 403, r.text
    r = httpx.delete(f"{gateway.url}/api/v1/servers/nope/cache", headers=AUTH, timeout=30)
    assert r.status_code == 404 and r.json()["code"] == "server_not_found"


async def test_a_list_change_and_a_resource_update_invalidate(gateway: Server) -> None:
    call, k = caller(gateway, "direct-2026"), uuid.uuid4().hex[:8]
    assert call("cached__lookup", {"key": k}) == f"{k}#1"
    assert call("cached__lookup", {"key": k}) == f"{k}#1"
    call("cached__announce", {})  # the backend: "the tool list changed"
    await wait_for(
        lambda: call("cached__lookup", {"key": k}) == f"{k}#2", timeout=10, what="invalidation"
    )
    # Resource reads are cached too, and a subscribed resource's update drops them.
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        uri = next(
            str(r.uri)
            for r in (await client.list_resources()).resources
            if str(r.uri).startswith("mcpgw://cached/")
        )
        first = (await client.read_resource(uri)).contents[0].text  # type: ignore[union-attr]
        assert (await client.read_resource(uri)).contents[0].text == first  # type: ignore[union-attr]
        with warnings.catch_warnings():  # a 2025-11-25 session: subscribe is its way
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(uri)
        await client.call_tool("cached__touch", {})

        async def fresh() -> bool:
            read = await client.read_resource(uri)
            return read.contents[0].text != first  # type: ignore[union-attr]

        await wait_for(fresh, timeout=10, what="the resource's entry dropped")


async def test_hits_are_audited_and_counted(gateway: Server) -> None:
    key = _new_key(gateway, "developer")
    call, k = caller(gateway, "rest", key), uuid.uuid4().hex[:8]
    for _ in range(3):
        call("cached__lookup", {"key": k})
    call("cached__lookup", {"key": k}, fresh=True)

    async def rows() -> list[dict[str, Any]] | None:
        r = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "target": "lookup", "limit": 500},
            headers=AUTH,
            timeout=30,
        )
        mine = [x for x in r.json()["items"] if k in json.dumps(x["arguments"])]
        return mine if len(mine) >= 4 else None

    found = await wait_for(rows, timeout=10, what="four audited calls")
    details = sorted(json.dumps(x["detail"]) for x in found)
    assert details == sorted(['{"cache": "hit"}'] * 2 + ['{"cache": "bypass"}', "null"])
    assert {x["outcome"] for x in found} == {"ok"}
    stats = httpx.get(f"{gateway.url}/api/v1/servers/cached/cache", headers=AUTH).json()
    assert stats["storage"] == "memory" and stats["hits"] >= 2 and stats["entries"] >= 1
    assert 0 < stats["hit_rate"] < 1
    detail = httpx.get(f"{gateway.url}/api/v1/servers/cached", headers=AUTH).json()
    assert detail["cache"]["hits"] >= 2
    assert httpx.get(f"{gateway.url}/api/v1/servers/plain", headers=AUTH).json()["cache"] is None
    metrics = httpx.get(f"{gateway.url}/metrics", headers=AUTH).text
    assert 'mcpgw_cache_hits_total{server="cached"}' in metrics
    assert 'mcpgw_cache_misses_total{server="cached"}' in metrics


def test_settings_are_validated_naming_the_field(gateway: Server, backend_url: str) -> None:
    cases = [
        ({"ttl_seconds": 0}, "config.cache.ttl_seconds"),
        ({"tools": {"lookup": {"ttl": 5}}}, "config.cache.tools.lookup.ttl"),
        ({"shared": "maybe"}, "config.cache.shared"),
        ("yes", "config.cache"),
    ]
    for cache, field in cases:
        r = httpx.post(
            f"{gateway.url}/api/v1/servers",
            json={"name": "bad", "type": "remote", "config": {"url": backend_url, "cache": cache}},
            headers=AUTH,
            timeout=30,
        )
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
    # Patching the config replaces the settings (here: caching turned off).
    r = httpx.patch(
        f"{gateway.url}/api/v1/servers/short",
        json={"config": {"url": backend_url, "cache": {"enabled": False}}},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["cache"] is None, r.text
    call, k = caller(gateway, "rest"), uuid.uuid4().hex[:8]
    assert [call("short__lookup", {"key": k}) for _ in range(2)] == [f"{k}#1", f"{k}#2"]


async def test_two_gateways_share_answers_on_redis(
    server_factory: type[Server], backend_url: str
) -> None:
    prefix = f"test-cache-{uuid.uuid4().hex[:8]}"
    env = {"MCPGW_REDIS_URL": REDIS, "MCPGW_CACHE_KEY_PREFIX": prefix}
    env |= {"MCPGW_BOOTSTRAP_API_KEY": BOOT, "MCPGW_ALLOW_PRIVATE_URLS": "true"}
    # One database (the factory's data dir): one user, so per-user answers are shared.
    gateways = [server_factory(**env)]
    gateways[0].wait_ready()
    register(gateways[0], "cached", backend_url, {})
    gateways.append(server_factory(**env))
    gateways[1].wait_ready()
    warm_up(gateways[1], "cached")
    one, two = (caller(g, "direct-2026") for g in gateways)
    k = uuid.uuid4().hex[:8]
    assert one("cached__lookup", {"key": k}) == f"{k}#1"
    await wait_for(lambda: two("cached__lookup", {"key": k}) == f"{k}#1", timeout=5, what="shared")
    stats = httpx.get(f"{gateways[1].url}/api/v1/servers/cached/cache", headers=AUTH).json()
    assert stats["storage"] == "redis" and stats["hits"] >= 1
    # Cleared through one, gone for both.
    r = httpx.delete(f"{gateways[0].url}/api/v1/servers/cached/cache", headers=AUTH, timeout=30)
    assert r.json()["dropped"] == 1, r.text
    assert two("cached__lookup", {"key": k}) == f"{k}#2"
    assert one("cached__lookup", {"key": k}) == f"{k}#2"


def test_a_real_servers_resource_reads_are_cached(
    server_factory: type[Server], tmp_path: Path
) -> None:
    """server-everything (npm) over stdio: its static resource read twice, once by it."""
    from tests.integration.servers.conftest import EVERYTHING

    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_AUDIT_FLUSH_SECONDS="0.05")
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={
            "name": "ev",
            "type": "npx",
            "config": {"package": EVERYTHING, "args": ["stdio"], "cache": {"ttl_seconds": 60}},
        },
        headers=AUTH,
        timeout=300,
    )
    assert r.status_code == 201, r.text
    body = {"jsonrpc": "2.0", "id": 1, "method": "resources/list", "params": {}}
    headers = _legacy_headers(server, BOOT)
    listed = last_message(httpx.post(f"{server.url}/mcp", json=body, headers=headers))
    uri = listed["result"]["resources"][0]["uri"]
    answers = []
    for i in range(2):
        read = {"jsonrpc": "2.0", "id": 2 + i, "method": "resources/read", "params": {"uri": uri}}
        answers.append(last_message(httpx.post(f"{server.url}/mcp", json=read, headers=headers)))
    assert answers[0]["result"] == answers[1]["result"]
    stats = httpx.get(f"{server.url}/api/v1/servers/ev/cache", headers=AUTH).json()
    assert (stats["hits"], stats["misses"]) == (1, 1)
    rows = httpx.get(
        f"{server.url}/api/v1/audit", params={"action": "resources/read"}, headers=AUTH
    ).json()["items"]
    assert sorted(json.dumps(x["detail"]) for x in rows) == ["null", '{"cache": "hit"}']
