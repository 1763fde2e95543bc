"""Backend replicas over real processes: the shares of 1,000 calls counted by the
backends themselves (tests/fixtures/faulty_backend.py's /counts), a 2025-11-25 session
kept on one replica, a replica that refuses connections ejected and readmitted, and
three processes of a real MCP server (@modelcontextprotocol/server-everything over
Streamable HTTP) of which one is killed mid-load: no call safe to repeat is lost, the
rest are answered (tool errors at worst), and the server's breaker stays closed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.mcp.test_endpoint import connect
from tests.integration.resilience.conftest import AUTH, BACKEND, control, counts
from tests.integration.servers.conftest import EVERYTHING
from tests.interop.backends import Backend, make
from tests.support import BOOT, Server, free_port, run, spawn_http, wait_for
from tests.support_mcp import modern_call


@pytest.fixture(scope="module")
def replicas() -> Iterator[list[str]]:
    """Three faulty_backend processes (never told to fail unless a test says so)."""
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    for _ in range(3):
        port = free_port()
        procs.append(spawn_http([sys.executable, str(BACKEND), str(port)], port))
        urls.append(f"http://127.0.0.1:{port}")
    yield urls
    for proc in procs:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server]) -> Server:
    """Default breakers and retries (a replica's failure must not open them)."""
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_INTERFACE_MODE="list",
        MCPGW_RETRY_BACKOFF_SECONDS="0.01",
    )
    server.wait_ready()
    return server


def register(gateway: Server, urls: list[str], replicas: dict[str, Any], **config: Any) -> str:
    name = f"rep{uuid.uuid4().hex[:6]}"
    weights = replicas.pop("weights", [1] * len(urls))
    endpoints = [{"url": u, "weight": w} for u, w in zip(urls[1:], weights[1:], strict=True)]
    replicas["weight"] = weights[0]
    body = {
        "name": name,
        "type": "remote",
        "config": {"url": urls[0], **config, "replicas": {"endpoints": endpoints, **replicas}},
    }
    r = httpx.post(f"{gateway.url}/api/v1/servers", params={"wait": True}, json=body,
                   headers=AUTH, timeout=120)  # fmt: skip
    assert r.status_code == 201, r.text
    return name


def health(gateway: Server, name: str) -> dict[str, Any]:
    r = httpx.get(f"{gateway.url}/api/v1/servers/{name}/health", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def fire(
    gateway: Server, tool: str, n: int, arguments: dict[str, Any] | None = None,
    workers: int = 8, rest_every: int = 0, results: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """``n`` calls of ``tool`` from ``workers`` concurrent 2026-07-28 agents (the fast
    path), every ``rest_every``-th through REST (the SDK path); each call's result
    (appended to ``results`` as they come, when given)."""
    results = [] if results is None else results
    queue = list(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            if rest_every and i % rest_every == 0:
                r = await client.post("/api/v1/tools/execute", headers=AUTH,
                                      json={"tool": tool, "arguments": arguments or {}})  # fmt: skip
                assert r.status_code == 200, r.text
                results.append(r.json())
                continue
            body, headers = modern_call(tool, arguments or {}, key=BOOT, request_id=i)
            r = await client.post("/mcp", json=body, headers=headers)
            assert r.status_code == 200, r.text
            results.append(r.json()["result"])

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(workers)))
    return results


def mcp(urls: list[str]) -> list[str]:
    return [f"{u}/mcp" for u in urls]


def executions(urls: list[str], tool: str) -> list[int]:
    return [counts(u)["executions"].get(tool, 0) for u in urls]


@pytest.mark.parametrize(
    ("strategy", "weights"), [("weighted", [5, 3, 2]), ("round_robin", [1, 1, 1])]
)
async def test_a_thousand_calls_are_shared_by_the_weights(
    gateway: Server, replicas: list[str], strategy: str, weights: list[int]
) -> None:
    for url in replicas:
        control(url, reset=True)
    name = register(gateway, mcp(replicas), {"strategy": strategy, "weights": list(weights)})
    results = await fire(gateway, f"{name}__echo", 1000, rest_every=10)
    assert all(not r.get("isError") for r in results)
    ran = executions(replicas, "echo")
    assert sum(ran) == 1000, ran  # each call ran once, on one replica
    for count, weight in zip(ran, weights, strict=True):
        share = weight / sum(weights)
        assert abs(count / 1000 - share) <= 0.05 * share, (ran, weights)
    shown = health(gateway, name)["replicas"]
    assert [r["endpoint"] for r in shown] == mcp(replicas)
    assert [r["weight"] for r in shown] == weights
    assert sum(r["calls"] for r in shown) >= 1000


async def test_a_2025_session_stays_on_one_replica(gateway: Server, replicas: list[str]) -> None:
    for url in replicas:
        control(url, reset=True)
    name = register(gateway, mcp(replicas), {})
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        for _ in range(9):
            assert not (await client.call_tool(f"{name}__echo", {})).is_error
    assert sorted(executions(replicas, "echo")) == [0, 0, 9]
    # Stateless 2026-07-28 agents are balanced call by call.
    await fire(gateway, f"{name}__echo", 9, workers=1)
    assert sorted(executions(replicas, "echo")) == [3, 3, 12]


async def test_a_replica_that_is_down_is_ejected_then_readmitted(
    gateway: Server, replicas: list[str]
) -> None:
    for url in replicas:
        control(url, reset=True)
    name = register(gateway, mcp(replicas), {"eject_seconds": 1})
    control(replicas[1], down=True)  # HTTP 503 to everything, initialize and ping too
    try:
        results = await fire(gateway, f"{name}__read", 60, rest_every=3)
        assert all(not r.get("isError") for r in results), results  # read: safe to repeat
        shown = health(gateway, name)
        assert shown["status"] == "degraded", shown
        assert shown["breaker"] is None or shown["breaker"]["state"] == "closed", shown
        before = executions(replicas, "read")
        assert before[1] == 0 and before[0] + before[2] == 60, before
        metrics = httpx.get(f"{gateway.url}/metrics", headers=AUTH, timeout=10).text
        assert f'mcpgw_replica_up{{replica="1",server="{name}"}} 0.0' in metrics, metrics
        assert f'mcpgw_replica_up{{replica="0",server="{name}"}} 1.0' in metrics
    finally:
        control(replicas[1], down=False)

    async def back() -> bool:
        await fire(gateway, f"{name}__read", 6, workers=1)
        return executions(replicas, "read")[1] > 0

    await wait_for(back, timeout=30, interval=0.5, what="the replica readmitted")


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Backend]]:
    """Three processes of the real server-everything over Streamable HTTP."""
    logs = tmp_path_factory.mktemp("everything")
    started = []
    try:
        for _ in range(3):
            backend = make("everything-http")
            backend.start(logs)
            started.append(backend)
        yield started
    finally:
        for backend in started:
            backend.stop()


async def test_killing_one_of_three_replicas_mid_load_loses_no_safe_call(
    gateway: Server, everything: list[Backend]
) -> None:
    urls = [b.url for b in everything]
    tools = {"echo": {"idempotent": True}}
    safe = register(gateway, urls, {}, resilience={"tools": tools})
    unsafe = register(gateway, urls, {}, resilience={"tools": {"echo": {"idempotent": False}}})
    args = {"message": "hi"}

    safe_results: list[dict[str, Any]] = []
    unsafe_results: list[dict[str, Any]] = []
    answered_after_kill = 0

    async def kill_midway() -> None:
        nonlocal answered_after_kill
        await wait_for(lambda: len(safe_results) >= 150, timeout=120, what="150 calls")
        victim = everything[1].proc
        assert victim is not None
        os.killpg(victim.pid, signal.SIGKILL)  # npx and its node child: the whole group
        at_kill = len(safe_results)
        await wait_for(lambda: len(safe_results) == 600, timeout=120, what="the rest")
        answered_after_kill = len(safe_results) - at_kill

    await asyncio.gather(
        fire(gateway, f"{safe}__echo", 600, args, workers=12, rest_every=5, results=safe_results),
        fire(gateway, f"{unsafe}__echo", 300, args, workers=4, rest_every=5,
             results=unsafe_results),
        kill_midway(),
    )  # fmt: skip
    assert answered_after_kill >= 300  # the kill came mid-load
    assert len(safe_results) == 600 and len(unsafe_results) == 300  # every call answered
    failed = [r for r in safe_results if r.get("isError")]
    assert failed == [], failed[:3]  # retried on another replica
    for result in unsafe_results:
        if result.get("isError"):  # lost on the killed replica: told, never repeated
            assert unsafe in result["content"][0]["text"], result
    for name in (safe, unsafe):
        shown = health(gateway, name)
        states = [r["status"] for r in shown["replicas"]]
        assert states[1] in ("ejected", "unhealthy"), shown
        assert states[0] in ("healthy", "degraded") and states[2] in ("healthy", "degraded")
        assert shown["breaker"] is None or shown["breaker"]["state"] == "closed", shown
        assert (await fire(gateway, f"{name}__echo", 20, args))[0].get("isError") in (None, False)


def test_bad_replica_settings_are_refused_naming_the_field(
    gateway: Server, replicas: list[str]
) -> None:
    cases = [
        ({"strategy": "random"}, "config.replicas.strategy"),
        ({"endpoints": [{"url": "file:///etc/passwd"}]}, "config.replicas.endpoints.0.url"),
        ({"count": 2}, "config.replicas.count"),
    ]
    for replicas_in, field in cases:
        body = {"name": f"bad{uuid.uuid4().hex[:6]}", "type": "remote",
                "config": {"url": mcp(replicas)[0], "replicas": replicas_in}}  # fmt: skip
        r = httpx.post(f"{gateway.url}/api/v1/servers", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 422, r.text
        assert r.json()["code"] and field in r.text, r.text


def _everything_processes() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"node") and any(b"server-everything" in a for a in args):
                found.add(int(entry.name))
    return found


async def test_process_replicas_run_as_many_processes(gateway: Server) -> None:
    """`count` on a package server: that many processes, which share the calls."""
    before = _everything_processes()
    name = f"procs{uuid.uuid4().hex[:6]}"
    body = {"name": name, "type": "npx", "config": {
        "package": EVERYTHING, "args": ["stdio"], "replicas": {"count": 2}}}  # fmt: skip
    r = httpx.post(f"{gateway.url}/api/v1/servers", params={"wait": True}, json=body,
                   headers=AUTH, timeout=300)  # fmt: skip
    assert r.status_code == 201, r.text
    try:
        assert len(_everything_processes() - before) == 2
        results = await fire(gateway, f"{name}__echo", 10, {"message": "hi"}, workers=1)
        assert all(not r.get("isError") for r in results)
        shown = health(gateway, name)["replicas"]
        assert [r["endpoint"] for r in shown] == ["process 1", "process 2"]
        assert {r["status"] for r in shown} <= {"healthy", "degraded"}, shown  # slow ping
        assert all(r["calls"] >= 5 for r in shown), shown
    finally:
        httpx.delete(f"{gateway.url}/api/v1/servers/{name}", headers=AUTH, timeout=60)
    await wait_for(lambda: not (_everything_processes() - before), timeout=30, what="stopped")


def test_the_cli_registers_replicas_and_shows_them(
    gateway: Server, replicas: list[str], tmp_path: Path
) -> None:
    name = f"cli{uuid.uuid4().hex[:6]}"
    first, second, third = mcp(replicas)
    common = ("--url", gateway.url, "--key", BOOT)
    done = run(tmp_path, "servers", "add", name, "--replica", f"{second}=2", "--replica",
               third, "--strategy", "failover", *common, "--", first)  # fmt: skip
    assert done.returncode == 0, done.stderr
    shown = run(tmp_path, "servers", "health", name, *common)
    assert shown.returncode == 0, shown.stderr
    assert f"{name}: healthy" in shown.stdout and "breaker closed" in shown.stdout, shown.stdout
    for endpoint in (first, second, third):
        assert endpoint in shown.stdout
    config = httpx.get(f"{gateway.url}/api/v1/servers/{name}", headers=AUTH).json()["config"]
    assert config["replicas"] == {
        "strategy": "failover",
        "endpoints": [{"url": second, "weight": 2}, {"url": third}],
    }
