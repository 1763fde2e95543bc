"""A response cache hit on the `/mcp` fast path, in process: the gateway's own code
for a hit without the HTTP server and the kernel (issue 21).

The gateway app runs in this process (embedded default, a throwaway data dir) with
the raw backend (bench/backend.py) registered as `cached` (echo cached); the first
call fills the cache, then ``--hits`` calls are sent straight to the ASGI app (one
prepared scope, a receive that hands over the body, a send that keeps nothing).

    python -m bench.hit_profile --era modern --hits 2000          # CPU µs per hit
    python -m bench.hit_profile --era modern --hits 2000 --cprofile
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.hit_profile --era modern --hits 1000       # I(2000) - I(1000)

Instructions per hit: run callgrind twice (``--hits N`` and ``--hits 2N``) and divide
the difference of the totals by N; start-up cancels out, nothing needs toggling.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from typing import Any

import httpx
import orjson

from bench.common import BENCH_KEY, free_port
from bench.loadgen import HANDSHAKE, MODERN
from bench.proxy_overhead import start_backend

CLIENT = {"name": "mcpgw-bench", "version": "1"}


def _body(era: str) -> bytes:
    params: dict[str, Any] = {"name": "cached__echo", "arguments": {"text": "ping"}}
    if era == "modern":
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": CLIENT,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    return orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})


async def _session(client: httpx.AsyncClient, base: dict[str, str]) -> dict[str, str]:
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": CLIENT},
    }
    r = await client.post("/mcp", json=init, headers=base)
    r.raise_for_status()
    headers = {**base, "mcp-protocol-version": HANDSHAKE, "mcp-session-id": r.headers["mcp-session-id"]}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await client.post("/mcp", json=note, headers=headers)
    return headers


async def run(era: str, hits: int, profile: bool) -> None:
    from gateway.app import create_app
    from gateway.config import load_settings
    from gateway.observability.logging import configure_logging

    port = free_port()
    backend = start_backend(port, "raw")
    tmp = tempfile.TemporaryDirectory(prefix="mcpgw-hit-")
    os.environ.update(
        {
            "MCPGW_DATA_DIR": tmp.name,
            "MCPGW_BOOTSTRAP_API_KEY": BENCH_KEY,
            "MCPGW_LOG_LEVEL": "WARNING",
            "MCPGW_SEARCH_PRELOAD": "false",
            "MCPGW_ALLOW_PRIVATE_URLS": "true",
        }
    )
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)  # as `mcpgw serve` does
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            base = {
                "authorization": f"Bearer {BENCH_KEY}",
                "accept": "application/json, text/event-stream",
                "content-type": "application/json",
            }
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
                cache = {"ttl_seconds": 3600, "tools": {"echo": {}}}
                config = {"url": f"http://127.0.0.1:{port}/mcp", "cache": cache}
                r = await client.post(
                    "/api/v1/servers",
                    params={"wait": True},
                    json={"name": "cached", "type": "remote", "config": config},
                    headers=base,
                    timeout=60,
                )
                r.raise_for_status()
                headers = dict(base)
                if era == "modern":
                    headers |= {
                        "mcp-protocol-version": MODERN,
                        "mcp-method": "tools/call",
                        "mcp-name": "cached__echo",
                    }
                else:
                    headers = await _session(client, base)
                body = _body(era)
                for _ in range(30):  # fill the cache; sessions settle onto the fast path
                    r = await client.post("/mcp", content=body, headers=headers)
                    r.raise_for_status()
                assert r.headers.get("mcpgw-route") == "direct", r.headers
            await _hits(app, era, body, headers, hits, profile)
    finally:
        backend.kill()
        tmp.cleanup()


async def _hits(
    app: Any, era: str, body: bytes, headers: dict[str, str], hits: int, profile: bool
) -> None:
    raw = [(b"host", b"127.0.0.1:8000")] + [(k.encode(), v.encode()) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    message = {"type": "http.request", "body": body, "more_body": False}
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            sent.append(event["status"])

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/mcp",
            "raw_path": b"/mcp",
            "query_string": b"",
            "root_path": "",
            "headers": list(raw),
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }

    for _ in range(200):  # warm
        await app(scope(), receive, send)
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for _ in range(hits):
        await app(scope(), receive, send)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - started
    assert set(sent) == {200}, set(sent)
    print(f"{era}: {hits} hits, {cpu / hits * 1e6:.1f} µs CPU per hit (in process)")
    await asyncio.sleep(0.3)  # let the audit batch and metrics settle before stopping
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(35)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--era", choices=["modern", "handshake"], default="modern")
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(run(args.era, args.hits, args.cprofile))


if __name__ == "__main__":
    main()
