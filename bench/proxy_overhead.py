"""Proxy overhead: `tools/call` straight to a backend vs through the gateway.

A fast backend (``bench/backend.py``: raw ASGI JSON-RPC, a few tens of µs per
call) runs on loopback; the gateway (embedded default, auth on) registers it as
a `remote` server. The same calls go directly to it, through `/mcp` in both
protocol eras, and through `/mcp/servers/{name}`, alternating run by run (the
machine is noisy), at each concurrency (that many agents in parallel).

Two load generators: ``raw`` (``bench/loadgen.py``: lean keep-alive HTTP, so the
figures are the servers', not the client's) and ``sdk`` (the official MCP client,
as agents really call). Reports p50/p95 and calls/s per path and the added
milliseconds at the median and the throughput ratio, pair by pair.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import Any

import httpx

from bench.common import (
    BENCH_KEY,
    GatewayProcess,
    free_port,
    median,
    percentile,
    print_table,
    write_results,
)
from bench.loadgen import Target, run_load


def start_backend(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.backend", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("backend did not start")


async def _client_loop(url: str, headers: dict[str, str], tool: str, calls: int) -> list[float]:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    http = create_mcp_http_client(headers=headers)
    latencies = []
    async with http, Client(streamable_http_client(url, http_client=http), cache=None) as client:  # type: ignore[arg-type]
        await client.call_tool(tool, {"text": "warm"})
        for _ in range(calls):
            started = time.perf_counter()
            result = await client.call_tool(tool, {"text": "ping"})
            latencies.append((time.perf_counter() - started) * 1000)
            if result.is_error:
                raise RuntimeError(f"tool error via {url}: {result.content}")
    return latencies


async def _sdk_run(target: Target, concurrency: int, calls: int) -> tuple[list[float], float]:
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    per_client = max(1, calls // concurrency)
    started = time.perf_counter()
    results = await asyncio.gather(
        *(_client_loop(target.url, headers, target.tool, per_client) for _ in range(concurrency))
    )
    return [x for r in results for x in r], time.perf_counter() - started


def _measure(
    client: str, target: Target, concurrency: int, calls: int, gateway: GatewayProcess | None
) -> dict[str, float]:
    runner = run_load if client == "raw" else _sdk_run
    cpu_before = gateway.cpu_seconds() if gateway else 0.0
    latencies, elapsed = _run_loop(runner(target, concurrency, calls))
    cpu = gateway.cpu_seconds() - cpu_before if gateway else float("nan")
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "calls_per_s": len(latencies) / elapsed,
        # The gateway's own CPU per call: steadier than latency on a busy machine.
        "gw_cpu_us": cpu / len(latencies) * 1e6,
    }


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per run (all agents)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--client", choices=["raw", "sdk"], nargs="+", default=["raw", "sdk"])
    args = parser.parse_args(argv)

    backend_port = free_port()
    backend = start_backend(backend_port)
    gateway = GatewayProcess(env={"MCPGW_ALLOW_PRIVATE_URLS": "true"})
    rows = []
    try:
        gateway.start()
        direct_url = f"http://127.0.0.1:{backend_port}/mcp"
        gateway.add_remote("fast", direct_url)
        paths = {
            "direct": Target(direct_url, "echo", "handshake"),
            "/mcp 2026-07-28": Target(f"{gateway.url}/mcp", "fast__echo", "modern", BENCH_KEY),
            "/mcp 2025-11-25": Target(f"{gateway.url}/mcp", "fast__echo", "handshake", BENCH_KEY),
            "/mcp/servers/fast": Target(
                f"{gateway.url}/mcp/servers/fast", "echo", "modern", BENCH_KEY
            ),
        }
        for client in args.client:
            # The SDK client picks its era itself; one /mcp row is enough for it.
            names = [n for n in paths if client == "raw" or n != "/mcp 2025-11-25"]
            for concurrency in args.concurrency:
                samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
                for _ in range(args.runs):  # alternate: the machine is noisy
                    for name in names:
                        via = None if name == "direct" else gateway
                        samples[name].append(
                            _measure(client, paths[name], concurrency, args.calls, via)
                        )
                rows += _rows(client, concurrency, samples)
        rss = gateway.rss_mib()
    finally:
        gateway.stop()
        backend.kill()
    print_table(f"tools/call: direct vs through the gateway (median of {args.runs} runs)", rows)
    print(f"gateway RSS after load: {rss:.0f} MiB")
    write_results(
        "proxy_overhead", {"runs": args.runs, "rows": rows, "rss_mib": rss, "pid": os.getpid()}
    )
    return rows


def _rows(
    client: str, concurrency: int, samples: dict[str, list[dict[str, float]]]
) -> list[dict[str, Any]]:
    direct = samples["direct"]
    rows = []
    for name, runs in samples.items():
        rows.append(
            {
                "client": client,
                "c": concurrency,
                "path": name,
                "p50_ms": median([s["p50"] for s in runs]),
                "p95_ms": median([s["p95"] for s in runs]),
                "p99_ms": median([s["p99"] for s in runs]),
                "calls_per_s": median([s["calls_per_s"] for s in runs]),
                "gw_cpu_us_per_call": median([s["gw_cpu_us"] for s in runs]),
                "added_p50_ms": median(
                    [s["p50"] - d["p50"] for s, d in zip(runs, direct, strict=True)]
                ),
                "throughput_ratio": median(
                    [s["calls_per_s"] / d["calls_per_s"] for s, d in zip(runs, direct, strict=True)]
                ),
            }
        )
    return rows


if __name__ == "__main__":
    main()
