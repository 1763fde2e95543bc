"""Fail open for listing, closed for calls (gateway/servers/availability.py).

Against a real `mcpgw serve` and a real backend process (tests/fixtures/faulty_backend.py):
a server that is down, whose breaker opened, whose process was killed, whose catalog
refresh failed or that was down when the gateway restarted keeps its last known tools
in every listing — `tools/list` on the fast path and the SDK path in both protocol eras,
on `/mcp` and `/mcp/servers/{name}`, SEARCH_TOOLS, the REST catalog — marked
unavailable (`_meta["io.mcpgw/unavailable"]`, `available: false`), while calls of them
fail at once with the breaker's or the backend's tool error.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.integration.resilience.conftest import (
    AUTH,
    BACKEND,
    call,
    control,
    counts,
    register,
)
from tests.support import BOOT, Server, free_port, spawn_http, wait_for
from tests.support_mcp import ACCEPT, LEGACY_INIT, MODERN, last_message, modern_call, modern_meta

MARK = "io.mcpgw/unavailable"
LEGACY = "2025-11-25"
# Open long enough for a loaded machine to list and call every path before it half-opens.
QUICK = {"breaker": {"failures": 3, "open_seconds": 5}}
TOOLS = {"read", "put", "write", "echo"}
# tools/list: which path (the fast path's cached pages, the SDK), era and endpoint.
LISTINGS = ["fast-2026", "fast-2025", "sdk-2026", "sdk-2025", "server-2026", "server-sdk-2025"]


def _headers(version: str, session: str | None = None) -> dict[str, str]:
    headers = {**AUTH, "Accept": ACCEPT, "MCP-Protocol-Version": version}
    if session is not None:
        headers["Mcp-Session-Id"] = session
    return {**headers, "Mcp-Method": "tools/list"}


def _legacy_session(gateway: Server, path: str) -> str:
    r = httpx.post(f"{gateway.url}{path}", json=LEGACY_INIT, headers=_headers(LEGACY), timeout=30)
    session = r.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    httpx.post(f"{gateway.url}{path}", json=note, headers=_headers(LEGACY, session), timeout=30)
    return session


def listed(gateway: Server, how: str, server: str) -> dict[str, dict[str, Any]]:
    """``server``'s tools in one `tools/list` (``how``: one of :data:`LISTINGS`): its own
    name → the tool as sent."""
    path = f"/mcp/servers/{server}" if how.startswith("server") else "/mcp"
    version = MODERN if how.endswith("2026") else LEGACY
    session = _legacy_session(gateway, path) if version == LEGACY else None
    sdk = "sdk" in how
    params: dict[str, Any] = {"cursor": None} if sdk else {}  # a null cursor: the SDK's
    if version == MODERN:
        params["_meta"] = modern_meta()
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}
    r = httpx.post(
        f"{gateway.url}{path}", json=body, headers=_headers(version, session), timeout=30
    )
    route = r.headers.get("mcpgw-route")
    assert route == (None if sdk else "cached"), (how, route, r.text)
    prefix = f"{server}__" if path == "/mcp" else ""
    tools = last_message(r)["result"]["tools"]
    return {t["name"][len(prefix) :]: t for t in tools if t["name"].startswith(prefix)}


def resource_marks(gateway: Server, server: str) -> dict[str, Any]:
    """``server``'s resources in a 2026-07-28 `resources/list` on /mcp and in a 2025-11-25
    one on /mcp/servers/{server} (both must agree): URI → its mark or None."""
    seen = []
    for path, version in (("/mcp", MODERN), (f"/mcp/servers/{server}", LEGACY)):
        session = _legacy_session(gateway, path) if version == LEGACY else None
        params = {"_meta": modern_meta()} if version == MODERN else {}
        headers = {**_headers(version, session), "Mcp-Method": "resources/list"}
        body = {"jsonrpc": "2.0", "id": 1, "method": "resources/list", "params": params}
        r = httpx.post(f"{gateway.url}{path}", json=body, headers=headers, timeout=30)
        prefix = f"mcpgw://{server}/" if path == "/mcp" else ""
        seen.append(
            {
                unquote(item["uri"][len(prefix) :]): (item.get("_meta") or {}).get(MARK)
                for item in last_message(r)["result"]["resources"]
                if item["uri"].startswith(prefix)
            }
        )
    assert seen[0] == seen[1], seen
    return seen[1]


def rest_tools(gateway: Server, server: str) -> dict[str, dict[str, Any]]:
    """``server``'s tools in the REST catalog (both of its routes agree)."""
    own = httpx.get(f"{gateway.url}/api/v1/servers/{server}/tools", headers=AUTH, timeout=30)
    every = httpx.get(
        f"{gateway.url}/api/v1/tools", params={"server": server}, headers=AUTH, timeout=30
    )
    assert own.status_code == every.status_code == 200, (own.text, every.text)
    assert own.json()["items"] == every.json()["items"]
    return {t["name"]: t for t in own.json()["items"]}


def searched(gateway: Server, server: str) -> dict[str, dict[str, Any]]:
    """SEARCH_TOOLS hits of ``server`` (on /mcp, and REST tools/search: the same)."""
    query = {"query": f"{server} read put write echo tool", "limit": 50}
    rest = httpx.post(f"{gateway.url}/api/v1/tools/search", json=query, headers=AUTH, timeout=30)
    assert rest.status_code == 200, rest.text
    body, headers = modern_call("SEARCH_TOOLS", query, key=BOOT)
    r = httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30)
    prefix = f"{server}__"
    found = [
        {h["name"][len(prefix) :]: h for h in hits if h["name"].startswith(prefix)}
        for hits in (rest.json()["tools"], last_message(r)["result"]["structuredContent"]["tools"])
    ]
    marked = [{name: hit.get("unavailable") for name, hit in side.items()} for side in found]
    assert marked[0] == marked[1], marked
    return found[0]


def marks(gateway: Server, server: str) -> dict[str, dict[str, Any]]:
    """Every listing's view of ``server``: listing → {tool: its mark or None}. Every
    listing must list all of its tools, whatever their marks."""
    seen: dict[str, dict[str, Any]] = {}
    for how in LISTINGS:
        tools = listed(gateway, how, server)
        assert set(tools) == TOOLS, (how, tools)
        seen[how] = {name: (t.get("_meta") or {}).get(MARK) for name, t in tools.items()}
    rest = rest_tools(gateway, server)
    assert set(rest) == TOOLS, rest
    for item in rest.values():
        assert item["available"] is (item["unavailable"] is None), item
    seen["rest"] = {name: item["unavailable"] for name, item in rest.items()}
    hits = searched(gateway, server)
    assert set(hits) == TOOLS, hits
    seen["search"] = {name: hit.get("unavailable") for name, hit in hits.items()}
    return seen


def unmarked(gateway: Server, server: str) -> bool:
    return all(m is None for by_tool in marks(gateway, server).values() for m in by_tool.values())


def _retry_at(mark: dict[str, Any]) -> float:
    return datetime.fromisoformat(mark["retryAt"].replace("Z", "+00:00")).timestamp()


async def test_a_server_that_is_down_stays_listed_marked_and_calls_fail_at_once(
    gateway: Server, backend: str
) -> None:
    control(backend, reset=True)
    server = register(gateway, backend, QUICK)
    assert unmarked(gateway, server)
    try:
        control(backend, down=True)  # its URL answers nothing but 503
        for _ in range(3):
            assert (await call(gateway, "fast-2026", f"{server}__write")).is_error
        # The breaker is open: every listing still has every tool, each marked.
        for how, by_tool in marks(gateway, server).items():
            for name, mark in by_tool.items():
                assert mark is not None, (how, name)
                assert mark["scope"] == "server", (how, mark)
                assert "circuit breaker open after 3 failed calls" in mark["reason"], mark
                assert time.time() - 1 < _retry_at(mark) < time.time() + 6, (how, mark)
        # Its resources too: listed, marked with the server's mark.
        resource = resource_marks(gateway, server)["faulty://state"]
        assert resource is not None and resource["scope"] == "server", resource
        # Calls fail closed, answered by the gateway: they reach nothing.
        for path in ("fast-2026", "sdk-2025", "rest"):
            answer = await call(gateway, path, f"{server}__read")
            assert answer.is_error and "is unavailable" in answer.text, (path, answer)
        assert counts(backend)["requests"] == {}
    finally:
        control(backend, down=False)
    # The open period over, the mark goes (calls are let through again) and the first
    # call closes the breaker.
    await wait_for(lambda: unmarked(gateway, server), timeout=20, what="the marks to go")
    assert (await call(gateway, "fast-2026", f"{server}__echo")).text == "echo #1"
    assert unmarked(gateway, server)
    assert resource_marks(gateway, server) == {"faulty://state": None}


async def test_a_tools_breaker_marks_that_tool_only(gateway: Server, backend: str) -> None:
    control(backend, reset=True)
    server = register(gateway, backend, {"retries": {"enabled": False}})
    control(backend, tool="put", mode="hang", latency=3, times=-1)  # timeouts (1 s)
    for _ in range(3):
        assert (await call(gateway, "fast-2026", f"{server}__put")).is_error
    for how, by_tool in marks(gateway, server).items():
        assert by_tool["put"] is not None and by_tool["put"]["scope"] == "tool", (how, by_tool)
        assert "retryAt" in by_tool["put"], by_tool
        assert {name for name, mark in by_tool.items() if mark} == {"put"}, (how, by_tool)
    assert (await call(gateway, "sdk-2026", f"{server}__echo")).text.startswith("echo #")
    control(backend, reset=True)


async def test_a_failed_refresh_keeps_the_catalog(gateway: Server, backend: str) -> None:
    control(backend, reset=True)
    server = register(gateway, backend)
    try:
        control(backend, down=True)
        r = httpx.post(f"{gateway.url}/api/v1/servers/{server}/refresh", headers=AUTH, timeout=60)
        assert r.status_code == 409 and r.json()["code"] == "server_unavailable", r.text
        for how in LISTINGS:
            assert set(listed(gateway, how, server)) == TOOLS, how
        assert set(rest_tools(gateway, server)) == TOOLS
    finally:
        control(backend, down=False)


def _own_backend() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    return proc, port


def _register_at(gateway: Server, name: str, port: int, **extra: Any) -> None:
    body = {"name": name, "type": "remote", "config": {"url": f"http://127.0.0.1:{port}/mcp"}}
    r = httpx.post(
        f"{gateway.url}/api/v1/servers",
        params={"wait": True},
        json={**body, **extra},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 201, r.text


async def test_a_killed_backend_stays_listed_and_is_marked_once_tried(
    gateway: Server,
) -> None:
    proc, port = _own_backend()
    _register_at(gateway, "killed", port)
    assert unmarked(gateway, "killed")
    proc.kill()
    proc.wait()
    answer = await call(gateway, "rest", "killed__echo")
    assert answer.is_error, answer

    def marked() -> bool:
        return all(m is not None for m in marks(gateway, "killed")["fast-2026"].values())

    # Whatever told it (the lost session, the failed reconnect, the breaker), the
    # tools are still listed and say why they cannot be called.
    await wait_for(marked, timeout=15, what="the killed server's tools marked")
    for how, by_tool in marks(gateway, "killed").items():
        assert all(m is not None and m["scope"] == "server" for m in by_tool.values()), how
    # It comes back on the same port: the monitor or the next call finds it.
    proc = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    try:

        async def answered() -> bool:
            return not (await call(gateway, "rest", "killed__echo")).is_error

        await wait_for(answered, timeout=30, interval=0.5, what="the server answering again")
        await wait_for(lambda: unmarked(gateway, "killed"), timeout=10, what="marks gone")
    finally:
        proc.kill()
        proc.wait()


async def test_the_catalog_survives_a_restart_while_the_backend_is_down(
    server_factory: type[Server], tmp_path: Path
) -> None:
    env = {
        "MCPGW_BOOTSTRAP_API_KEY": BOOT,
        "MCPGW_ALLOW_PRIVATE_URLS": "true",
        "MCPGW_INTERFACE_MODE": "list",
        "MCPGW_SERVER_CALL_TIMEOUT_SECONDS": "2",
    }
    first = server_factory(**env)
    first.wait_ready()
    proc, port = _own_backend()
    _register_at(first, "gone", port)
    first.proc.terminate()
    first.proc.wait(30)
    proc.kill()
    proc.wait()
    # A new gateway process on the same data: the last known tools, from the database.
    second = server_factory(**env)
    second.wait_ready()
    for how in LISTINGS:
        assert set(listed(second, how, "gone")) == TOOLS, how
    assert set(rest_tools(second, "gone")) == TOOLS
    assert set(searched(second, "gone")) == TOOLS
    # A call fails closed; from then on the tools say why.
    answer = await call(second, "rest", "gone__read")
    assert answer.is_error, answer
    mark = await wait_for(
        lambda: listed(second, "fast-2026", "gone")["read"].get("_meta", {}).get(MARK),
        timeout=15,
        what="the tools marked",
    )
    assert mark["scope"] == "server" and mark["reason"], mark
    assert rest_tools(second, "gone")["read"]["available"] is False


@pytest.mark.parametrize("change", ["transforms", "config"])
async def test_a_changed_server_keeps_its_tools_while_its_new_runtime_connects(
    gateway: Server, backend: str, change: str
) -> None:
    """PATCH rebuilds the server's runtime; the tools it listed stay listed (its new
    transforms applied) until the new runtime's catalog is in, and stay even when the
    new runtime cannot connect at all."""
    control(backend, reset=True)
    transforms = {"tools": {"write": {"rename": "store"}}}
    server = register(gateway, backend)
    if change == "transforms":
        r = httpx.patch(
            f"{gateway.url}/api/v1/servers/{server}",
            json={"transforms": transforms},
            headers=AUTH,
            timeout=60,
        )
        assert r.status_code == 200, r.text
    # Removing the transforms shows the backend's own names again: the last known tools
    # with the new transforms applied.
    expected = TOOLS
    try:
        control(backend, down=True)  # the new runtime cannot connect
        patch: dict[str, Any] = (
            {"transforms": {}}
            if change == "transforms"
            else {"config": {"url": f"{backend}/mcp", "headers": {"x-changed": "1"}}}
        )
        r = httpx.patch(
            f"{gateway.url}/api/v1/servers/{server}", json=patch, headers=AUTH, timeout=60
        )
        assert r.status_code == 200, r.text
        assert r.json()["version"] == (3 if change == "transforms" else 2)
        # Right away, and while the new runtime fails to connect, on every listing.
        for _ in range(3):
            for how in LISTINGS:
                assert set(listed(gateway, how, server)) == expected, how
            assert set(rest_tools(gateway, server)) == expected
            time.sleep(0.2)
        r = httpx.post(f"{gateway.url}/api/v1/servers/{server}/refresh", headers=AUTH, timeout=60)
        assert r.status_code == 409, r.text
        assert set(listed(gateway, "fast-2026", server)) == expected
        assert (await call(gateway, "rest", f"{server}__read")).is_error  # closed
    finally:
        control(backend, down=False)

    # Back up (once its reconnect backoff is over): the new runtime lists the same tools.
    def refreshed() -> bool:
        url = f"{gateway.url}/api/v1/servers/{server}/refresh"
        return httpx.post(url, headers=AUTH, timeout=60).status_code == 200

    await wait_for(refreshed, timeout=30, interval=0.3, what="the server listed again")
    assert set(listed(gateway, "fast-2026", server)) == expected
    assert not (await call(gateway, "rest", f"{server}__echo")).is_error
