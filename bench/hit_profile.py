"""A response cache hit on the `/mcp` fast path, in process: the gateway's own code
for a hit without the HTTP server and the kernel (issue 21).

The gateway app runs in this process (embedded default, a throwaway data dir) with
the raw backend (bench/backend.py) registered as `cached` (echo cached); the first
call fills the cache, then ``--hits`` calls are sent straight to the ASGI app (one
prepared scope, a receive that hands over the body, a send that keeps nothing).

    python -m bench.hit_profile --era modern --hits 2000          # CPU µs per hit
    python -m bench.hit_profile --era modern --hits 2000 --cprofile
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=OUT \\
        python -m bench.hit_profile --era modern --hits 2000 --callgrind

With ``--callgrind`` the harness switches counting on (``callgrind_control -i on``)
around the hits only: the total in OUT divided by ``--hits`` is instructions per hit,
deterministic to a fraction of a per cent (compare builds with it).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
import orjson

from bench.common import BENCH_KEY, free_port, mcp_post_scope, print_table, write_results
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
    session = r.headers["mcp-session-id"]
    headers = {**base, "mcp-protocol-version": HANDSHAKE, "mcp-session-id": session}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await client.post("/mcp", json=note, headers=headers)
    return headers


async def run(
    era: str, hits: int, profile: bool, callgrind: bool, every: int, uncached: bool = False
) -> None:
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
            origin = "http://127.0.0.1:8000"  # a host the DNS-rebinding check allows
            async with httpx.AsyncClient(transport=transport, base_url=origin) as client:
                cache = {"ttl_seconds": 3600, "tools": {"echo": {}}}
                config: dict[str, Any] = {"url": f"http://127.0.0.1:{port}/mcp"}
                if not uncached:  # --uncached: every call goes to the backend (for A/B)
                    config["cache"] = cache
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
            await _hits(app, era, body, headers, hits, profile, callgrind, every)
    finally:
        backend.kill()
        tmp.cleanup()


async def _hits(
    app: Any,
    era: str,
    body: bytes,
    headers: dict[str, str],
    hits: int,
    profile: bool,
    callgrind: bool,
    every: int,
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
        return mcp_post_scope(raw)

    for _ in range(200):  # warm
        await app(scope(), receive, send)
    profiler = cProfile.Profile() if profile else None
    if callgrind:  # under `valgrind --tool=callgrind --instr-atstart=no`: count the hits only
        # Blocking on purpose: nothing may run in between.
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], check=True)  # noqa: ASYNC221
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    for n in range(hits):
        await app(scope(), receive, send)
        if every and n % every == every - 1:  # as a served loop does: the audit writer
            await asyncio.sleep(0)  # ships its batches (and timers run: less deterministic)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - started
    if callgrind:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True)  # noqa: ASYNC221
    assert set(sent) == {200}, set(sent)
    row = {"era": era, "hits": hits, "cpu_us_per_hit": cpu / hits * 1e6, "yield_every": every}
    print_table("a cache hit in process (the gateway's code, no HTTP server)", [row])
    write_results("hit_profile", {"rows": [row]})
    await asyncio.sleep(0.3)  # let the audit batch and metrics settle before stopping
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(35)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--era", choices=["modern", "handshake"], default="modern")
    parser.add_argument("--hits", type=int, default=2000)
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument(
        "--callgrind", action="store_true", help="switch callgrind's counting on for the hits"
    )
    parser.add_argument(
        "--uncached", action="store_true", help="the same calls without the cache (A/B)"
    )
    parser.add_argument(
        "--yield-every",
        type=int,
        default=16,
        help="let the loop run every N hits (0: never; the gateway's code only, deterministic)",
    )
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(
        run(args.era, args.hits, args.cprofile, args.callgrind, args.yield_every, args.uncached)
    )


if __name__ == "__main__":
    main()
