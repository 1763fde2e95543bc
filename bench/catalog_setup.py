"""A gateway in front of one backend listing N tools, with a key per interface mode.

Shared by ``catalog_scale`` and ``token_cost``. Requests go through `/mcp` in the
2026-07-28 era (stateless: one POST per request, no session to set up).
"""

from __future__ import annotations

import subprocess
import sys
import time
from types import TracebackType
from typing import Any

import httpx
import orjson

from bench.common import BENCH_KEY, GatewayProcess, free_port

MODERN = "2026-07-28"
MODES = ("list", "search_execute")


class CatalogGateway:
    """``with CatalogGateway(1000) as gw: gw.call("tools/list", mode="list")``."""

    def __init__(self, tools: int) -> None:
        self.tools = tools
        self.backend: subprocess.Popen[bytes] | None = None
        self.gateway = GatewayProcess(env={"MCPGW_ALLOW_PRIVATE_URLS": "true"})
        self.keys: dict[str, str] = {}
        self.http = httpx.Client(timeout=120)

    def __enter__(self) -> CatalogGateway:
        port = free_port()
        self.backend = subprocess.Popen(
            [sys.executable, "-m", "bench.backend", str(port), str(self.tools)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_http(f"http://127.0.0.1:{port}/")
        self.gateway.start()
        admin = {"Authorization": f"Bearer {BENCH_KEY}"}
        # Only the backend's tools: the built-in essentials bundle would add its own.
        self.http.delete(f"{self.gateway.url}/api/v1/servers/essentials", headers=admin)
        server = self.gateway.add_remote("big", f"http://127.0.0.1:{port}/mcp")
        if server["tool_count"] != self.tools:
            raise RuntimeError(f"catalogued {server['tool_count']} tools, not {self.tools}")
        for mode in MODES:
            r = self.http.post(
                f"{self.gateway.url}/api/v1/keys",
                json={"name": f"bench-{mode}", "interface_mode": mode},
                headers=admin,
            )
            r.raise_for_status()
            self.keys[mode] = r.json()["key"]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.http.close()
        self.gateway.stop()
        if self.backend is not None:
            self.backend.kill()
            self.backend.wait()

    def call(self, method: str, params: dict[str, Any] | None = None, *, mode: str) -> bytes:
        """One JSON-RPC request through `/mcp` with ``mode``'s key; the raw response body."""
        params = dict(params or {})
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "mcpgw-bench", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
        headers = {
            "Authorization": f"Bearer {self.keys[mode]}",
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": method,
        }
        if method == "tools/call":
            headers["Mcp-Name"] = params["name"]
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        r = self.http.post(f"{self.gateway.url}/mcp", content=body, headers=headers)
        if r.status_code != 200 or b'"error"' in r.content[:60] or b'"isError":true' in r.content:
            raise RuntimeError(f"{method} failed: HTTP {r.status_code} {r.content[:300]!r}")
        return r.content


def _wait_http(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")
