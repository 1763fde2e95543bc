"""DNS rebinding: the address the SSRF guard approved is the address connected to.

The stand-in for DNS (there is none here) is the event loop's ``getaddrinfo``: for
``rebind.test`` it answers 127.0.0.2 when the guard asks and 127.0.0.1 when anything
else asks, as an attacker's name server with a zero TTL would. 127.0.0.2 stands in for
a public address (the guard is told so; nothing public can listen here). The real MCP
backend listens on 127.0.0.2; a trap on 127.0.0.1, same port, counts connections: it
must receive none, on the SDK client's path (remote runtime, both transports) and on
the fast path's own connections. The gateway runs in-process (same loop), with the
guard on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import ssrf
from gateway.app import create_app
from gateway.db import Database
from tests.conftest import make_settings
from tests.integration.servers.conftest import Gateway, text_of
from tests.support_mcp import modern_call

NAME = "rebind.test"
VETTED = "127.0.0.2"  # what the guard is told (and approves, as if public)
REBOUND = "127.0.0.1"  # what every later question is told
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SSE_SERVER = """
import sys, uvicorn
from mcp.server.mcpserver import MCPServer
server = MCPServer("sse-echo")

@server.tool()
def echo(text: str) -> str:
    \"\"\"Echo.\"\"\"
    return text

uvicorn.run(server.sse_app(host=sys.argv[1]), host=sys.argv[1], port=int(sys.argv[2]),
            log_level="warning")
"""
HTTP_SERVER = """
import sys, uvicorn
sys.path.insert(0, sys.argv[3])
from http_backend import app
uvicorn.run(app, host=sys.argv[1], port=int(sys.argv[2]), log_level="warning")
"""


def _ports() -> int:
    """A port free on both 127.0.0.2 and 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind((VETTED, 0))
            port = int(a.getsockname()[1])
            try:
                b.bind((REBOUND, port))
            except OSError:
                continue
            return port
    raise AssertionError("no port free on both loopback addresses")


@dataclass
class Trap:
    """A listener on the rebound address that records every connection."""

    connections: int = 0
    server: asyncio.Server | None = None

    async def handle(self, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@dataclass
class Rebinder:
    """The loop's resolver, answering ``NAME`` like a rebinding name server."""

    real: Any
    everyone_gets_vetted: bool = False
    rebound_answers: list[str] = field(default_factory=list)

    async def __call__(self, host: Any, port: Any = None, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio asks in bytes
        if name != NAME:
            return await self.real(host, port, *args, **kwargs)
        if self.everyone_gets_vetted or _asked_by_the_guard():
            address = VETTED
        else:
            address = REBOUND
            self.rebound_answers.append(name)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]


def _asked_by_the_guard() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename == ssrf.__file__:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _spawn(script: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", script, VETTED, str(port), str(FIXTURES)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as s:
            if s.connect_ex((VETTED, port)) == 0:
                return proc
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the backend did not listen on {VETTED}:{port}")
        time.sleep(0.05)


@pytest.fixture
def port() -> int:
    return _ports()


@pytest.fixture
def backend_proc(request: pytest.FixtureRequest, port: int) -> Iterator[str]:
    """The real MCP backend on 127.0.0.2 (``sse`` or ``streamable_http``); its URL."""
    transport = getattr(request, "param", "streamable_http")
    script = SSE_SERVER if transport == "sse" else HTTP_SERVER
    proc = _spawn(script, port)
    yield transport
    proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
async def trap(port: int) -> AsyncIterator[Trap]:
    state = Trap()
    state.server = await asyncio.start_server(state.handle, REBOUND, port)
    yield state
    state.server.close()


@pytest.fixture
async def rebinder(monkeypatch: pytest.MonkeyPatch) -> Rebinder:
    loop = asyncio.get_running_loop()
    resolver = Rebinder(loop.getaddrinfo)
    monkeypatch.setattr(loop, "getaddrinfo", resolver)
    original = ssrf.is_public
    monkeypatch.setattr(ssrf, "is_public", lambda a: str(a) == VETTED or original(a))
    return resolver


@pytest.fixture
async def guarded_gw(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = make_settings(
        db_url,
        tmp_path,
        allow_private_urls=False,  # the guard is on
        server_connect_timeout_seconds=20,
        health_interval_seconds=3600,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client,
    ):
        yield Gateway(app, client)


def _url(transport: str, port: int) -> str:
    return f"http://{NAME}:{port}/{'sse' if transport == 'sse' else 'mcp'}"


@pytest.mark.parametrize("backend_proc", ["streamable_http", "sse"], indirect=True)
async def test_the_sdk_client_connects_to_the_vetted_address_only(
    guarded_gw: Gateway, backend_proc: str, port: int, trap: Trap, rebinder: Rebinder
) -> None:
    config = {"url": _url(backend_proc, port), "transport": backend_proc}
    r = await guarded_gw.register({"name": "rb", "type": "remote", "config": config})
    assert trap.connections == 0, "the gateway connected to the rebound (loopback) address"
    assert r.status_code == 201, r.text
    assert r.json()["health"]["status"] == "healthy", r.text
    result = await guarded_gw.execute("rb__echo", {"text": "pinned"})
    assert text_of(result) == "pinned"
    assert trap.connections == 0
    assert rebinder.rebound_answers == []  # nothing but the guard even asked


async def test_the_fast_path_connects_to_the_vetted_address_only(
    guarded_gw: Gateway, backend_proc: str, port: int, trap: Trap, rebinder: Rebinder
) -> None:
    rebinder.everyone_gets_vetted = True  # the session comes up as it always did …
    r = await guarded_gw.register(
        {"name": "rb", "type": "remote", "config": {"url": _url(backend_proc, port)}}
    )
    assert r.status_code == 201 and r.json()["health"]["status"] == "healthy", r.text
    rebinder.everyone_gets_vetted = False  # … then the name rebinds to loopback
    body, headers = modern_call("rb__echo", {"text": "fast"}, key="")
    headers.update(guarded_gw.auth())
    with contextlib.suppress(httpx.HTTPError):
        reply = await guarded_gw.client.post(
            "http://127.0.0.1:8000/mcp",  # a Host /mcp accepts (in-process: no socket)
            json=body,
            headers=headers,
            timeout=30,
        )
    assert trap.connections == 0, "the fast path connected to the rebound (loopback) address"
    assert reply.headers.get("mcpgw-route") == "direct", reply.headers
    assert reply.json()["result"]["content"][0]["text"] == "fast"
    assert rebinder.rebound_answers == []
