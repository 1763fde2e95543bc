"""A server marked unavailable by its health comes back without any agent calling it
(the monitor's pass: gateway/servers/upkeep.py), and a change of its definition
starts it afresh. In process, on the real database, against a real backend process
(tests/fixtures/faulty_backend.py) that is killed and started again on its port."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.servers.upkeep import recheck_unavailable
from tests.integration.servers.conftest import Gateway
from tests.support import free_port, spawn_http, wait_for

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "faulty_backend.py"


class Backend:
    """The backend process on a fixed port: killed and started again at will."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = [sys.executable, str(BACKEND), str(self.port)]
        self.proc = spawn_http(args, self.port)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def backend() -> Iterator[Backend]:
    backend = Backend()
    yield backend
    backend.kill()


async def _available(gw: Gateway, server: str) -> list[bool]:
    r = await gw.client.get(f"/api/v1/servers/{server}/tools", headers=gw.auth())
    return [item["available"] for item in r.json()["items"]]


async def test_the_monitor_brings_an_unavailable_server_back(gw: Gateway, backend: Backend) -> None:
    r = await gw.register({"name": "comeback", "type": "remote", "config": {"url": backend.url}})
    assert r.status_code == 201, r.text
    assert await _available(gw, "comeback") == [True] * 4
    backend.kill()
    result = await gw.execute("comeback__echo")
    assert result["isError"], result

    async def marked() -> bool:
        return await _available(gw, "comeback") == [False] * 4

    await wait_for(marked, timeout=15, what="its tools marked unavailable")
    assert (await gw.health("comeback"))["status"] == "unhealthy"
    backend.start()

    async def back() -> bool:
        recheck_unavailable(gw.service)  # a monitor pass; no agent calls it meanwhile
        return await _available(gw, "comeback") == [True] * 4

    await wait_for(back, timeout=30, interval=0.5, what="the server available again")
    assert (await gw.health("comeback"))["status"] == "healthy"


async def test_a_changed_server_is_not_judged_by_its_old_runtime(
    gw: Gateway, backend: Backend
) -> None:
    r = await gw.register({"name": "renewed", "type": "remote", "config": {"url": backend.url}})
    assert r.status_code == 201, r.text
    backend.kill()
    assert (await gw.execute("renewed__echo"))["isError"]

    async def marked() -> bool:
        return await _available(gw, "renewed") == [False] * 4

    await wait_for(marked, timeout=15, what="its tools marked unavailable")
    backend.start()
    r = await gw.client.patch(
        "/api/v1/servers/renewed", json={"description": "fixed"}, headers=gw.auth()
    )
    assert r.status_code == 200, r.text
    # A new runtime, not yet tried: its tools listed as they were, unmarked, and callable.
    assert await _available(gw, "renewed") == [True] * 4
    assert not (await gw.execute("renewed__echo"))["isError"]
