"""A lean MCP load generator: keep-alive HTTP/1.1 connections sending `tools/call`.

The official SDK client spends about a millisecond of CPU per call, so N SDK clients
in one process measure the client more than the server. This generator opens one
connection per simulated agent, speaks the chosen protocol era by hand (a
2025-11-25 session with `initialize`, or stateless 2026-07-28 requests with their
headers and `_meta`), sends pre-serialized requests and parses responses with
``httptools``. It reports latency per call and calls per second.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools
import orjson

MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"


class _Reply(asyncio.Protocol):
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: Any = None
        self.done: asyncio.Future[tuple[int, dict[bytes, bytes], bytes]] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection closed"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            status = self.parser.get_status_code()
            self.done.set_result((status, self.headers, b"".join(self.body)))

    async def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        self.headers, self.body = {}, []
        self.done = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.done


@dataclass
class Target:
    """Where to send calls and how: ``era`` is ``modern`` or ``handshake``."""

    url: str
    tool: str
    era: str = "modern"
    token: str | None = None


class Agent:
    """One connection, one (optional) session, many calls."""

    def __init__(self, target: Target) -> None:
        self.target = target
        parts = urlsplit(target.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.session: str | None = None
        self.reply: _Reply | None = None

    def _request(self, message: dict[str, Any], extra: dict[str, str]) -> bytes:
        body = orjson.dumps(message)
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            "Accept: application/json, text/event-stream",
            f"Content-Length: {len(body)}",
        ]
        if self.target.token:
            lines.append(f"Authorization: Bearer {self.target.token}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        transport, self.reply = await loop.create_connection(_Reply, self.host, self.port)
        self.reply.transport = transport
        if self.target.era == "handshake":
            init = {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": HANDSHAKE,
                    "capabilities": {},
                    "clientInfo": {"name": "mcpgw-bench", "version": "1"},
                },
            }
            status, headers, _ = await self.reply.exchange(self._request(init, {}))
            if status != 200:
                raise RuntimeError(f"initialize answered HTTP {status}")
            self.session = headers.get(b"mcp-session-id", b"").decode() or None
            note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            await self.reply.exchange(self._request(note, self._session_headers()))

    def _session_headers(self) -> dict[str, str]:
        headers = {"MCP-Protocol-Version": HANDSHAKE}
        if self.session:
            headers["Mcp-Session-Id"] = self.session
        return headers

    def call_request(self) -> bytes:
        """The pre-serialized `tools/call` this agent repeats."""
        params: dict[str, Any] = {"name": self.target.tool, "arguments": {"text": "ping"}}
        if self.target.era == "modern":
            params["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": MODERN,
                "io.modelcontextprotocol/clientInfo": {"name": "mcpgw-bench", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            headers = {
                "MCP-Protocol-Version": MODERN,
                "Mcp-Method": "tools/call",
                "Mcp-Name": self.target.tool,
            }
        else:
            headers = self._session_headers()
        message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        return self._request(message, headers)

    async def run(self, calls: int) -> list[float]:
        assert self.reply is not None
        request = self.call_request()
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            status, _, body = await self.reply.exchange(request)
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200 or b'"isError":true' in body or b'"error"' in body[:40]:
                raise RuntimeError(f"call failed: HTTP {status} {body[:300]!r}")
        return latencies

    def close(self) -> None:
        if self.reply is not None and self.reply.transport is not None:
            self.reply.transport.close()


async def run_load(target: Target, concurrency: int, calls: int) -> tuple[list[float], float]:
    """``calls`` calls spread over ``concurrency`` agents; (latencies ms, seconds)."""
    agents = [Agent(target) for _ in range(concurrency)]
    for agent in agents:
        await agent.open()
    try:
        await asyncio.gather(*(agent.run(3) for agent in agents))  # warm
        per_agent = max(1, calls // concurrency)
        started = time.perf_counter()
        results = await asyncio.gather(*(agent.run(per_agent) for agent in agents))
        elapsed = time.perf_counter() - started
    finally:
        for agent in agents:
            agent.close()
    return [x for r in results for x in r], elapsed
