"""Changing a server's definition while the monitor reconciles (the app in process, on
the real database, a real backend process: tests/fixtures/faulty_backend.py).

A change's reload waits for the server's old runtime to stop (a stdio server's process
takes a second or two); a reconcile that ran meanwhile used to build a runtime of its
own, so one of the two was never stopped (its process and session leaked), and one that
had read the rows before the change could install the older version last. Reloads now
run one at a time. The catalog is not touched by a change: the tools stay listed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers.conftest import Gateway
from tests.support import free_port, spawn_http

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "faulty_backend.py"


@pytest.fixture
def backend_url() -> Iterator[str]:
    port = free_port()
    proc: subprocess.Popen[bytes] = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


async def test_a_reconcile_during_a_change_leaves_one_runtime_of_the_new_version(
    gw: Gateway, backend_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = await gw.register({"name": "slow", "type": "remote", "config": {"url": backend_url}})
    assert r.status_code == 201 and r.json()["tool_count"] == 4, r.text
    service, pool = gw.service, gw.service.pool
    built: list[Any] = []
    stopped: list[Any] = []
    stopping = asyncio.Event()
    build, stop = pool._build, pool._stop_quietly

    def counted_build(spec: Any) -> Any:
        runtime = build(spec)
        built.append(runtime)
        return runtime

    async def slow_stop(runtime: Any, *, final: bool = True) -> None:
        stopping.set()
        await asyncio.sleep(0.5)  # as a stdio server's process takes to exit
        stopped.append(runtime)
        await stop(runtime, final=final)

    monkeypatch.setattr(pool, "_build", counted_build)
    monkeypatch.setattr(pool, "_stop_quietly", slow_stop)
    change = asyncio.create_task(
        gw.client.patch(
            "/api/v1/servers/slow",
            json={"transforms": {"tools": {"write": {"rename": "store"}}}},
            headers=gw.auth(),
        )
    )
    await asyncio.wait_for(stopping.wait(), 10)  # the change waits for the old runtime
    await service.load()  # the monitor's reconcile, meanwhile
    r = await change
    assert r.status_code == 200 and r.json()["version"] == 2, r.text
    current = pool.get("slow")
    assert current is not None and current.spec.version == 2
    leaked = [runtime for runtime in built if runtime is not current and runtime not in stopped]
    assert leaked == [] and len(built) == 1, built
    # The change never emptied the catalog: the last known tools, its new transform on.
    assert sorted(await gw.tools("slow")) == ["echo", "put", "read", "store"]
