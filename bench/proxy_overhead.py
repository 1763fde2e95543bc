"""Proxy overhead: `tools/call` straight to a backend vs through the gateway.

A backend runs on loopback; the gateway (embedded default, auth on) registers it
as a `remote` server. ``--backend`` picks it: ``raw`` (``bench/backend.py``: raw
ASGI JSON-RPC, a few tens of µs per call: the gateway's own cost stands out),
``fastmcp`` (FastMCP), ``sdk`` (the official Python SDK) or ``ts`` (the official
TypeScript SDK) — echo servers as real agents' backends are built
(``bench/sdk_backends.py``, ``bench/ts/echo.mjs``); ``--stateless`` and ``--json``
set their session and response modes. The same calls go directly to it in both
eras, through `/mcp` in both eras, and through `/mcp/servers/{name}`, alternating
run by run (the machine is noisy), at each concurrency (that many agents in
parallel). Each gateway row is compared with the direct row of its own era.

``--tracing`` (bench/tracing_cost.py): one gateway whose exporter is switched at run
time (`PUT /api/v1/settings/telemetry`) between off, on with 0% and on with 100%
sampling, run by run, against an OTLP/HTTP sink in this process.

Two load generators: ``raw`` (``bench/loadgen.py``: lean keep-alive HTTP, so the
figures are the servers', not the client's) and ``sdk`` (the official MCP client,
as agents really call). Reports p50/p95 and calls/s per path, the added
milliseconds at the median and the throughput ratio, pair by pair, and the share
of calls the fast path served (``mcpgw_tool_calls_total{route="direct"}``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
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

BACKENDS = ("raw", "fastmcp", "sdk", "ts")
TS_DIR = Path(__file__).resolve().parent / "ts"


def backend_command(kind: str, port: int, stateless: bool, json: bool) -> list[str]:
    """The command line of one echo backend on ``port``."""
    flags = [*(["--stateless"] if stateless else []), *(["--json"] if json else [])]
    if kind == "raw":
        return [sys.executable, "-m", "bench.backend", str(port)]
    if kind == "ts":
        if not (TS_DIR / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--silent"], cwd=TS_DIR, check=True)
        return ["node", str(TS_DIR / "echo.mjs"), str(port), *flags]
    return [sys.executable, "-m", "bench.sdk_backends", kind, str(port), *flags]


def start_backend(
    port: int, kind: str = "raw", *, stateless: bool = False, json: bool = False
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        backend_command(kind, port, stateless, json),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} backend exited with {proc.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            return proc
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{kind} backend did not start")


def route_counts(gateway: GatewayProcess) -> dict[str, float]:
    """Calls answered so far per route (``direct``: the fast path; ``sdk``)."""
    auth = {"Authorization": f"Bearer {BENCH_KEY}"}
    text = httpx.get(f"{gateway.url}/metrics", headers=auth, timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("mcpgw_tool_calls_total{"):
            labels, value = line.rsplit(" ", 1)
            route = labels.split('route="', 1)[1].split('"', 1)[0]
            counts[route] = counts.get(route, 0.0) + float(value)
    return counts


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
    routes = route_counts(gateway) if gateway else {}
    cpu_before = gateway.cpu_seconds() if gateway else 0.0
    latencies, elapsed = _run_loop(runner(target, concurrency, calls))
    cpu = gateway.cpu_seconds() - cpu_before if gateway else float("nan")
    fast = float("nan")
    if gateway:
        after = route_counts(gateway)
        served = {k: after.get(k, 0.0) - routes.get(k, 0.0) for k in after}
        fast = served.get("direct", 0.0) / max(1.0, sum(served.values()))
    return {
        "fast_share": fast,
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
    parser.add_argument("--backend", choices=BACKENDS, nargs="+", default=["raw"])
    parser.add_argument("--stateless", action="store_true", help="SDK backends without sessions")
    parser.add_argument("--json", action="store_true", help="SDK backends answer plain JSON")
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="instead: one gateway, tracing off vs on at 0%% and 100%% sampling, alternating",
    )
    args = parser.parse_args(argv)
    if args.tracing:
        from bench.tracing_cost import bench_tracing

        return bench_tracing(args, start_backend, _measure)
    rows: list[dict[str, Any]] = []
    rss = 0.0
    for kind in args.backend:
        found, rss = _bench_backend(kind, args)
        rows += found
    title = f"tools/call: direct vs through the gateway (median of {args.runs} runs)"
    print_table(title, rows)
    print(f"gateway RSS after load: {rss:.0f} MiB")
    write_results(
        "proxy_overhead", {"runs": args.runs, "rows": rows, "rss_mib": rss, "pid": os.getpid()}
    )
    return rows


def _bench_backend(kind: str, args: argparse.Namespace) -> tuple[list[dict[str, Any]], float]:
    backend_port = free_port()
    backend = start_backend(backend_port, kind, stateless=args.stateless, json=args.json)
    # Every 2025-11-25 run opens a session per agent and the load generator never
    # DELETEs them: lift the per-key cap (100) so the runs are not refused.
    gateway = GatewayProcess(
        env={"MCPGW_ALLOW_PRIVATE_URLS": "true", "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000"}
    )
    rows = []
    try:
        gateway.start()
        direct_url = f"http://127.0.0.1:{backend_port}/mcp"
        gateway.add_remote("fast", direct_url)
        paths = {
            "direct 2025-11-25": Target(direct_url, "echo", "handshake"),
            "direct 2026-07-28": Target(direct_url, "echo", "modern"),
            "/mcp 2026-07-28": Target(f"{gateway.url}/mcp", "fast__echo", "modern", BENCH_KEY),
            "/mcp 2025-11-25": Target(f"{gateway.url}/mcp", "fast__echo", "handshake", BENCH_KEY),
            "/mcp/servers/fast": Target(
                f"{gateway.url}/mcp/servers/fast", "echo", "modern", BENCH_KEY
            ),
        }
        if kind == "raw":
            del paths["direct 2026-07-28"]  # one era: the raw backend ignores the envelope
        else:
            # The same backend pinned to 2026-07-28: a 2025 agent is bridged on the SDK
            # path, the cost of every call the fast path does not take.
            gateway.add_remote("pinned", direct_url, protocol="2026-07-28")
            paths["/mcp 2025-11-25 SDK path"] = Target(
                f"{gateway.url}/mcp", "pinned__echo", "handshake", BENCH_KEY
            )
        for client in args.client:
            # The SDK client picks its era itself; one row per target is enough for it.
            names = [
                n
                for n in paths
                if client == "raw" or n not in ("/mcp 2025-11-25", "direct 2026-07-28")
            ]
            for concurrency in args.concurrency:
                samples: dict[str, list[dict[str, float]]] = {name: [] for name in names}
                for _ in range(args.runs):  # alternate: the machine is noisy
                    for name in names:
                        via = None if name.startswith("direct") else gateway
                        samples[name].append(
                            _measure(client, paths[name], concurrency, args.calls, via)
                        )
                rows += _rows(kind, client, concurrency, samples)
        rss = gateway.rss_mib()
    finally:
        gateway.stop()
        backend.kill()
    return rows, rss


def _baseline(name: str, samples: dict[str, list[dict[str, float]]]) -> list[dict[str, float]]:
    """The direct runs a path is compared with: those of the same era."""
    era = "2025-11-25" if "2025-11-25" in name else "2026-07-28"
    return samples.get(f"direct {era}") or samples["direct 2025-11-25"]


def _rows(
    kind: str, client: str, concurrency: int, samples: dict[str, list[dict[str, float]]]
) -> list[dict[str, Any]]:
    rows = []
    for name, runs in samples.items():
        direct = _baseline(name, samples)
        rows.append(
            {
                "backend": kind,
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
                "fast_path": median([s["fast_share"] for s in runs]),
            }
        )
    return rows


if __name__ == "__main__":
    main()
