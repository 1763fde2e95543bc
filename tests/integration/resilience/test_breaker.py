"""Circuit breakers on real calls (tests/fixtures/faulty_backend.py counts what reaches it):
a breaker opens after N failures and then answers at once, sending nothing; it
half-opens after its open period and a successful probe closes it; a tool's breaker
leaves the server's other tools alone; a server that is down opens the server's
breaker; the health endpoint, /metrics and the audit trail show it; the catalog keeps
a dead server's tools. On the fast path and the SDK path in both eras, and REST."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.resilience.conftest import (
    AUTH,
    PATHS,
    call,
    control,
    counts,
    health,
    register,
)
from tests.support import Server, wait_for
from tests.support_mcp import ACCEPT, MODERN, modern_meta

QUICK = {"breaker": {"failures": 3, "open_seconds": 1.5}}


@pytest.mark.parametrize("path", PATHS)
async def test_a_breaker_opens_answers_at_once_then_recovers(
    gateway: Server, backend: str, path: str
) -> None:
    control(backend, reset=True)
    server = register(gateway, backend, QUICK)
    tool = f"{server}__write"
    control(backend, tool="write", mode="refuse", times=-1)
    for _ in range(3):
        answer = await call(gateway, path, tool)
        assert answer.is_error and "unavailable" not in answer.text, answer
    assert counts(backend)["requests"]["write"] == 3
    started = time.monotonic()
    answer = await call(gateway, path, tool)
    assert answer.is_error and "is unavailable" in answer.text, answer
    assert "tries it again in" in answer.text, answer
    assert time.monotonic() - started < 1.0
    assert answer.meta["io.mcpgw/unavailable"]["retryAfter"] >= 1
    assert counts(backend)["requests"]["write"] == 3  # nothing sent while open
    breaker = health(gateway, server)["breaker"]
    opened = [breaker, *breaker["tools"].values()]
    assert any(b["state"] == "open" and "retry_at" in b for b in opened), breaker
    # Half-open after 1.5 s: the backend works again, the probe succeeds, it closes.
    control(backend, reset=True)
    time.sleep(1.6)
    answer = await call(gateway, path, tool)
    assert not answer.is_error and answer.text == "write #1", answer
    breaker = health(gateway, server)["breaker"]
    assert breaker["state"] == "closed" and breaker["tools"] == {}, breaker
    assert not (await call(gateway, path, tool)).is_error


@pytest.mark.parametrize("path", ["fast-2026", "sdk-2025"])
async def test_a_failed_probe_opens_it_again(gateway: Server, backend: str, path: str) -> None:
    control(backend, reset=True)
    server = register(gateway, backend, QUICK)
    control(backend, tool="write", mode="refuse", times=-1)
    for _ in range(3):
        await call(gateway, path, f"{server}__write")
    assert "is unavailable" in (await call(gateway, path, f"{server}__write")).text
    time.sleep(1.6)
    probe = await call(gateway, path, f"{server}__write")
    assert probe.is_error and "is unavailable" not in probe.text  # it went through, failed
    assert counts(backend)["requests"]["write"] == 4
    assert "tries it again in" in (await call(gateway, path, f"{server}__write")).text
    assert counts(backend)["requests"]["write"] == 4


@pytest.mark.parametrize("path", ["fast-2026", "sdk-2026", "rest"])
async def test_a_tools_breaker_leaves_the_other_tools_working(
    gateway: Server, backend: str, path: str
) -> None:
    control(backend, reset=True)
    server = register(gateway, backend, {"retries": {"enabled": False}})
    control(backend, tool="put", mode="hang", latency=3, times=-1)  # timeouts (1 s)
    for _ in range(3):
        answer = await call(gateway, path, f"{server}__put")
        assert answer.is_error and "timed out" in answer.text, answer
    answer = await call(gateway, path, f"{server}__put")
    assert f"tool 'put' of server {server!r} is unavailable" in answer.text, answer
    assert answer.meta["io.mcpgw/unavailable"]["scope"] == "tool"
    assert (await call(gateway, path, f"{server}__echo")).text.startswith("echo #")
    breaker = health(gateway, server)["breaker"]
    assert breaker["state"] == "closed" and breaker["tools"]["put"]["state"] == "open"


async def test_a_server_that_is_down_opens_the_servers_breaker(
    gateway: Server, backend: str
) -> None:
    control(backend, reset=True)
    server = register(gateway, backend)
    try:
        control(backend, down=True)
        for _ in range(3):
            assert (await call(gateway, "fast-2026", f"{server}__write")).is_error
        assert counts(backend)["requests"] == {}  # refused at the door: nothing ran
        # Every tool of the server is answered at once now, a tool never called too.
        answer = await call(gateway, "sdk-2026", f"{server}__read")
        assert f"server {server!r} is unavailable" in answer.text, answer
        assert answer.meta["io.mcpgw/unavailable"]["scope"] == "server"
        assert health(gateway, server)["breaker"]["state"] == "open"
        # The catalog still lists its tools (fail open for listing, closed for calls).
        r = httpx.get(f"{gateway.url}/api/v1/servers/{server}/tools", headers=AUTH)
        assert {t["name"] for t in r.json()["items"]} == {"read", "put", "write", "echo"}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/list",
            "params": {"_meta": modern_meta()},
        }
        headers = {**AUTH, "Accept": ACCEPT, "MCP-Protocol-Version": MODERN}
        listed = httpx.post(
            f"{gateway.url}/mcp", json=body, headers={**headers, "Mcp-Method": "tools/list"}
        ).json()
        names = {t["name"] for t in listed["result"]["tools"]}
        assert f"{server}__write" in names and f"{server}__echo" in names
        # /metrics: the breaker's state gauge (2: open) and the refusals.
        text = httpx.get(f"{gateway.url}/metrics", headers=AUTH).text
        assert f'mcpgw_breaker_state{{server="{server}",tool=""}} 2.0' in text
        assert f'mcpgw_breaker_rejected_total{{server="{server}"}} 1.0' in text
    finally:
        control(backend, down=False)

    async def audited() -> list[dict[str, object]] | None:
        r = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "outcome": "unavailable", "limit": 100},
            headers=AUTH,
        )
        rows = [x for x in r.json()["items"] if x["server"] == server]
        return rows or None

    rows = await wait_for(audited, timeout=10, what="the unavailable call audited")
    assert rows[0]["target"] == "read" and "is unavailable" in str(rows[0]["error"])
