"""Backends that die, change their tools, or carry secrets: the gateway copes and tells."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.servers.conftest import EVERYTHING, Gateway, text_of
from tests.support import wait_for

SECRET = "s3cr3t-Value-that-must-never-leak-42"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

CHANGING_SOURCE = '''
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("changing")


def _extra() -> str:
    """A tool added at run time."""
    return "extra!"


@server.tool()
async def grow(ctx: Context) -> str:
    """Add the tool 'extra' and announce the change."""
    server.add_tool(_extra, name="extra")
    await ctx.notify_tools_changed()
    return "grown"


@server.tool()
async def shrink(ctx: Context) -> str:
    """Remove the tool 'extra' and announce the change."""
    server.remove_tool("extra")
    await ctx.notify_tools_changed()
    return "shrunk"
'''


def _pids_with(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"TEST_MARKER={marker}".encode() in environ:
            pids.append(int(entry.name))
    return pids


async def test_killed_stdio_backend_is_reconnected(gw: Gateway) -> None:
    marker = uuid.uuid4().hex
    r = await gw.register(
        {
            "name": "fragile",
            "type": "npx",
            "config": {"package": EVERYTHING, "args": ["stdio"]},
            "env": {"TEST_MARKER": marker},
        }
    )
    assert r.status_code == 201, r.text
    assert "ok" in text_of(await gw.execute("fragile__echo", {"message": "ok"}))
    pids = _pids_with(marker)
    assert pids, "the backend process was not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    # The gateway notices, says so in health, and reconnects by itself.
    async def noticed() -> bool:
        h = await gw.health("fragile")
        return h["restarts"] >= 1

    await wait_for(noticed, timeout=30)

    async def back() -> dict[str, Any] | None:
        result = await gw.execute("fragile__echo", {"message": "back"})
        if result["isError"]:  # allowed: a clear tool error while it comes back …
            assert "fragile" in text_of(result)
            return None
        return result

    result = await wait_for(back, timeout=15, interval=0.2, what="the server to come back")
    assert "back" in text_of(result)
    health = await gw.health("fragile")
    assert health["status"] == "healthy"
    assert health["restarts"] >= 1
    assert set(_pids_with(marker)).isdisjoint(pids)  # a new process
    # the gateway itself never went down
    assert (await gw.client.get("/healthz")).status_code == 200


async def test_tools_list_changed_updates_the_catalog(gw: Gateway) -> None:
    r = await gw.register(
        {"name": "changing", "type": "generated", "config": {"source": CHANGING_SOURCE}}
    )
    assert r.status_code == 201, r.text
    assert sorted(await gw.tools("changing")) == ["grow", "shrink"]
    assert text_of(await gw.execute("changing__grow")) == "grown"

    async def has_extra() -> bool:
        return "extra" in await gw.tools("changing")

    await wait_for(has_extra, timeout=15)
    assert text_of(await gw.execute("changing__extra")) == "extra!"
    await gw.execute("changing__shrink")

    async def extra_gone() -> bool:
        return "extra" not in await gw.tools("changing")

    await wait_for(extra_gone, timeout=15)


async def test_handshake_era_list_changed_notification(gw: Gateway) -> None:
    """A 2025-11-25 stdio server pushes notifications/tools/list_changed on its stream."""
    import sys

    server = str(FIXTURES / "stdlib_mcp_server.py")
    # No registrable type runs a bare script, so drive the runtime with a script connector.
    from gateway.servers.runtimes.base import ServerSpec
    from gateway.servers.runtimes.connection import McpConnection
    from gateway.servers.runtimes.stdio import stdio_target

    class ScriptConnector:
        async def targets(self, spec, ctx):  # type: ignore[no-untyped-def]
            return [stdio_target(ctx, spec, sys.executable, [server])]

    changes: list[str] = []
    pool_ctx = gw.service.pool.ctx

    async def on_list_changed(name: str, announced: bool = False) -> None:
        changes.append(name)

    ctx = type(pool_ctx)(**{**pool_ctx.__dict__, "on_list_changed": on_list_changed})
    conn = McpConnection(
        ServerSpec(id="s", name="script", type="npx", config={}), ScriptConnector(), ctx
    )

    async def announced() -> bool:
        return bool(changes)

    try:
        await conn.start()
        await wait_for(announced, timeout=10)  # connecting itself asks for a fresh catalog
        assert [t.name for t in (await conn.catalog()).tools] == ["echo", "add", "grow", "whoami"]
        changes.clear()
        await conn.call_tool("grow", {}, 10)
        await wait_for(announced, timeout=10)
        assert "extra" in [t.name for t in (await conn.catalog()).tools]
    finally:
        await conn.stop(final=True)


async def test_secrets_never_leak(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = await gw.register(
        {
            "name": "secretive",
            "type": "npx",
            "config": {"package": EVERYTHING, "args": ["stdio"]},
            "env": {"PLAIN_SETTING": "visible"},
            "secrets": {"API_TOKEN": SECRET},
        }
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secrets"] == {"API_TOKEN": "***"}
    assert body["env"] == {"PLAIN_SETTING": "visible"}
    # the secret reaches the server process …
    result = await gw.execute("secretive__get-env")
    text = text_of(result)
    assert "API_TOKEN" in text and "PLAIN_SETTING" in text
    # … but never an API response, a version snapshot, or a log line
    assert SECRET not in str(result)
    responses = [
        await gw.client.get("/api/v1/servers/secretive", headers=gw.auth()),
        await gw.client.get("/api/v1/servers", headers=gw.auth()),
        await gw.client.get("/api/v1/servers/secretive/versions", headers=gw.auth()),
    ]
    for response in responses:
        assert response.status_code == 200
        assert SECRET not in response.text
    # the database holds it only sealed
    async with gw.app.state.gw.db.session() as session:  # type: ignore[attr-defined]
        from sqlalchemy import text as sql

        raw = (
            await session.execute(
                sql("select env, secrets_sealed from servers where name='secretive'")
            )
        ).one()
        assert SECRET not in str(raw)
    assert SECRET not in caplog.text
    # a remote server with a secret header that fails: the error does not echo it
    r = await gw.register(
        {
            "name": "remote-secret",
            "type": "remote",
            "config": {"url": "http://127.0.0.1:1/mcp"},
            "secret_headers": {"Authorization": f"Bearer {SECRET}"},
        }
    )
    assert r.status_code == 201
    assert r.json()["health"]["status"] == "unhealthy"
    assert SECRET not in r.text
    failed = await gw.execute("remote-secret__x")
    assert failed["isError"] is True and SECRET not in str(failed)
    assert SECRET not in caplog.text


async def test_call_timeout_becomes_a_tool_error(gw: Gateway) -> None:
    source = (
        "import asyncio\nfrom mcp.server.mcpserver import MCPServer\nserver = MCPServer('slow')\n"
        "@server.tool()\nasync def nap(seconds: float) -> str:\n"
        "    await asyncio.sleep(seconds)\n    return 'awake'\n"
    )
    await gw.register({"name": "slow", "type": "generated", "config": {"source": source}})
    result = await gw.execute("slow__nap", {"seconds": 5}, timeout=0.3)
    assert result["isError"] is True
    assert "timed out" in text_of(result)
    assert text_of(await gw.execute("slow__nap", {"seconds": 0})) == "awake"


async def test_concurrency_limit_per_server(gw: Gateway) -> None:
    source = (
        "import asyncio\nfrom mcp.server.mcpserver import MCPServer\nserver = MCPServer('gate')\n"
        "state = {'now': 0, 'peak': 0}\n"
        "@server.tool()\nasync def work() -> int:\n"
        "    state['now'] += 1\n    state['peak'] = max(state['peak'], state['now'])\n"
        "    await asyncio.sleep(0.05)\n    state['now'] -= 1\n    return state['peak']\n"
    )
    await gw.register(
        {"name": "gate", "type": "generated", "config": {"source": source}, "max_concurrency": 2}
    )
    results = await asyncio.gather(*(gw.execute("gate__work") for _ in range(8)))
    peaks = [int(text_of(r)) for r in results]
    assert max(peaks) == 2


async def test_idle_stdio_servers_are_stopped(gw: Gateway) -> None:
    await gw.register(
        {"name": "idle", "type": "npx", "config": {"package": EVERYTHING, "args": ["stdio"]}}
    )
    pool = gw.service.pool
    runtime = pool.get("idle")
    assert runtime.running
    pool.idle_seconds = 0.01

    # The catalog refresh that follows a connect may still be listing (for seconds on a
    # loaded machine): a server with a request in flight is never idle, so the reaper
    # passes it over until that ends.
    async def reaped() -> bool:
        return await pool.reap_idle() == ["idle"]

    await wait_for(reaped, timeout=60, interval=0.05, what="the idle server to be stopped")
    assert not runtime.running
    assert (await gw.health("idle"))["status"] == "stopped"
    # on demand again
    assert "again" in text_of(await gw.execute("idle__echo", {"message": "again"}))


async def test_remote_session_lost_when_server_restarts(gw: Gateway) -> None:
    """A Streamable HTTP server that restarts forgets our session; the gateway starts a new one."""
    import subprocess

    from tests.integration.servers.conftest import _wait_port
    from tests.support import free_port

    port = free_port()

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["npx", "-y", EVERYTHING, "streamableHttp"],
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_port(port, proc)
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    proc = start()
    try:
        r = await gw.register(
            {
                "name": "flaky-http",
                "type": "remote",
                "config": {"url": f"http://127.0.0.1:{port}/mcp"},
            }
        )
        assert r.json()["health"]["status"] == "healthy", r.json()
        assert "one" in text_of(await gw.execute("flaky-http__echo", {"message": "one"}))
        stop(proc)
        down = await gw.execute("flaky-http__echo", {"message": "down"})
        assert down["isError"] is True and "flaky-http" in text_of(down)
        proc = start()

        async def answered() -> dict[str, Any] | None:
            result = await gw.execute("flaky-http__echo", {"message": "two"})
            return None if result["isError"] else result  # within the reconnect backoff

        result = await wait_for(answered, timeout=15, interval=0.2, what="a reconnect")
        assert "two" in text_of(result)
    finally:
        stop(proc)
