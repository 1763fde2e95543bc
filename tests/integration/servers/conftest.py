"""Fixtures for pillar 1: a gateway app wired for real backends, and real MCP servers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.db import Database
from tests.conftest import AppHarness, make_settings
from tests.support import free_port

EVERYTHING = "@modelcontextprotocol/server-everything"


class Gateway(AppHarness):
    """The app plus helpers for registering servers and calling tools."""

    async def register(
        self, body: dict[str, Any], *, wait: bool = True, key: str | None = None
    ) -> httpx.Response:
        return await self.client.post(
            "/api/v1/servers",
            json=body,
            params={"wait": wait},
            headers=self.auth(key) if key else self.auth(),
            timeout=300,
        )

    async def execute(
        self, tool: str, arguments: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        r = await self.client.post(
            "/api/v1/tools/execute",
            json={"tool": tool, "arguments": arguments or {}, **extra},
            headers=self.auth(),
            timeout=300,
        )
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def tools(self, server: str) -> list[str]:
        r = await self.client.get(f"/api/v1/servers/{server}/tools", headers=self.auth())
        assert r.status_code == 200, r.text
        return [t["name"] for t in r.json()["items"]]

    async def health(self, server: str) -> dict[str, Any]:
        r = await self.client.get(f"/api/v1/servers/{server}/health", headers=self.auth())
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    @property
    def service(self) -> Any:
        return self.app.state.gw.servers  # type: ignore[attr-defined]


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in result["content"] if c.get("type") == "text")


@pytest.fixture
async def gw(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = make_settings(
        db_url,
        tmp_path,
        allow_private_urls=True,
        git_roots=[tmp_path / "repos"],
        server_connect_timeout_seconds=120,
        health_interval_seconds=3600,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client,
    ):
        yield Gateway(app, client)


@pytest.fixture(params=["sqlite"])
def backend(request: pytest.FixtureRequest) -> str:
    """Runtime tests run on the embedded default; registry tests opt into both."""
    return str(request.param)


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} within {timeout}s")


@pytest.fixture
def everything_http() -> Iterator[Callable[[str], str]]:
    """Start server-everything over HTTP ('streamableHttp' or 'sse'); returns its URL."""
    if shutil.which("npx") is None:
        pytest.fail("npx is needed (Node.js): apt-get install nodejs npm")
    started: list[subprocess.Popen[bytes]] = []

    def start(mode: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            ["npx", "-y", EVERYTHING, mode],
            env={**os.environ, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        started.append(proc)
        _wait_port(port, proc)
        return f"http://127.0.0.1:{port}/{'mcp' if mode == 'streamableHttp' else 'sse'}"

    yield start
    for proc in started:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
