"""What a response cache hit costs and saves: the same `tools/call` answered from the
cache vs by the backend, one gateway, runs alternating (which goes first too).

One echo backend (the Python SDK's by default: a real server's per-call cost, which a
hit saves) is registered twice: `fast` as it is and `cached` with
``cache: {tools: {echo: {}}}`` (an admin's setting: echo has no readOnlyHint), and, for
the SDK path, twice more pinned to 2026-07-28 (`pinned`, `pinnedc`: a 2025 agent is
bridged on the SDK path). The load generator sends the same arguments every call, so
every call of a cached server after its first is a hit.

Prints, per path (fast path in both eras, the SDK path) and agent count: gateway CPU
per call and p50 for hits and uncached calls, their ratio, and the share of hits.
Issue 21's figures at 16 agents: a hit ≤ 60 µs of gateway CPU, and ≥ 3 times faster (p50)
than the backend call it replaces.

Unless ``--no-floor``: also, in the same runs, the CPU per request of a bare ASGI app
on uvicorn with the gateway's HTTP protocol answering the same requests
(bench/http_floor.py, ``cpu_us_floor``): what any answer costs here before the gateway
does anything, and ``cpu_us_hit_over_floor``, the gateway's own part of a hit.

``--baseline DIR``: an A/B in one run. A second gateway runs the source tree in DIR
(e.g. ``git archive <commit> | tar -x -C DIR``; this checkout's environment, DIR first
on PYTHONPATH) and its hits are measured next to this build's, run by run
(``cpu_us_hit_baseline``, and ``hit_cpu_ratio``: the median of the runs' ratios).

    python -m bench.cache_cost --runs 5 --calls 4000 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

from bench.common import BENCH_KEY, GatewayProcess, free_port, median, print_table, write_results
from bench.http_floor import FloorProcess
from bench.loadgen import Target, run_load
from bench.proxy_overhead import BACKENDS, _measure, _run_loop, start_backend

CACHE = {"ttl_seconds": 3600, "tools": {"echo": {}}}


def _paths(url: str, kind: str) -> dict[str, tuple[Target, Target]]:
    """Per path: (uncached target, cached target)."""
    paths = {
        "/mcp 2026-07-28 (fast)": (
            Target(url, "fast__echo", "modern", BENCH_KEY),
            Target(url, "cached__echo", "modern", BENCH_KEY),
        ),
        "/mcp 2025-11-25 (fast)": (
            Target(url, "fast__echo", "handshake", BENCH_KEY),
            Target(url, "cached__echo", "handshake", BENCH_KEY),
        ),
    }
    if kind != "raw":
        paths["/mcp 2025-11-25 SDK path"] = (
            Target(url, "pinned__echo", "handshake", BENCH_KEY),
            Target(url, "pinnedc__echo", "handshake", BENCH_KEY),
        )
    return paths


def _counts(gateway: GatewayProcess) -> tuple[float, float]:
    """(cache hits, tool calls answered) so far, all servers."""
    auth = {"Authorization": f"Bearer {BENCH_KEY}"}
    text = httpx.get(f"{gateway.url}/metrics", headers=auth, timeout=30).text
    hits = calls = 0.0
    for line in text.splitlines():
        if line.startswith("mcpgw_cache_hits_total{"):
            hits += float(line.rsplit(" ", 1)[1])
        elif line.startswith("mcpgw_tool_calls_total{"):
            calls += float(line.rsplit(" ", 1)[1])
    return hits, calls


def _floor(floor: FloorProcess, era: str, concurrency: int, calls: int) -> float:
    """CPU µs per request of the bare app (bench/http_floor.py) at ``concurrency``."""
    target = Target(floor.url, "echo", era)
    before = floor.cpu_seconds()
    latencies, _ = _run_loop(run_load(target, concurrency, calls))
    return (floor.cpu_seconds() - before) / len(latencies) * 1e6


def _started(url: str, kind: str, pythonpath: str | None = None) -> GatewayProcess:
    """A gateway with the bench's servers registered on the backend at ``url``."""
    env = {"MCPGW_ALLOW_PRIVATE_URLS": "true", "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    gateway = GatewayProcess(env=env)
    gateway.start()
    gateway.add_remote("fast", url)
    gateway.add_remote("cached", url, cache=CACHE)
    if kind != "raw":
        gateway.add_remote("pinned", url, protocol="2026-07-28")
        gateway.add_remote("pinnedc", url, protocol="2026-07-28", cache=CACHE)
    return gateway


def _bench(kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    port = free_port()
    backend = start_backend(port, kind)
    url = f"http://127.0.0.1:{port}/mcp"
    gateways: list[GatewayProcess] = []
    floor = FloorProcess(free_port()) if args.floor else None
    rows = []
    try:
        gateways.append(gateway := _started(url, kind))
        paths = _paths(f"{gateway.url}/mcp", kind)
        baseline = None
        if args.baseline:
            gateways.append(baseline := _started(url, kind, args.baseline))
            paths_then = _paths(f"{baseline.url}/mcp", kind)
        for concurrency in args.concurrency:
            samples: dict[tuple[str, str], list[dict[str, float]]] = {}
            for run in range(args.runs):
                for name, (plain, cached) in paths.items():
                    order = [("hit", cached, gateway), ("uncached", plain, gateway)]
                    if baseline is not None:
                        order.insert(1, ("hit_baseline", paths_then[name][1], baseline))
                    for mode, target, serving in order if run % 2 else order[::-1]:
                        hits, calls = _counts(serving)
                        found = _measure("raw", target, concurrency, args.calls, serving)
                        hits_after, calls_after = _counts(serving)
                        found["hit_share"] = (hits_after - hits) / max(1.0, calls_after - calls)
                        samples.setdefault((name, mode), []).append(found)
                    if floor is not None and "(fast)" in name:
                        cpu = _floor(floor, plain.era, concurrency, args.calls)
                        samples.setdefault((name, "floor"), []).append({"gw_cpu_us": cpu})
            for name in paths:
                hit, plain = samples[(name, "hit")], samples[(name, "uncached")]
                floors = [s["gw_cpu_us"] for s in samples.get((name, "floor"), [])]
                cpu_hit = median([s["gw_cpu_us"] for s in hit])
                rows.append(
                    {
                        "backend": kind,
                        "c": concurrency,
                        "path": name,
                        "cpu_us_hit": cpu_hit,
                        **_against(hit, samples.get((name, "hit_baseline"))),
                        "cpu_us_floor": median(floors) if floors else None,
                        "cpu_us_hit_over_floor": cpu_hit - median(floors) if floors else None,
                        "cpu_us_uncached": median([s["gw_cpu_us"] for s in plain]),
                        "p50_ms_hit": median([s["p50"] for s in hit]),
                        "p50_ms_uncached": median([s["p50"] for s in plain]),
                        "p50_speedup": median(
                            [
                                b["p50"] / a["p50"] if a["p50"] else float("nan")
                                for a, b in zip(hit, plain, strict=True)
                            ]
                        ),
                        "hit_share": median([s["hit_share"] for s in hit]),
                        "fast_share_hit": median([s["fast_share"] for s in hit]),
                        "calls_per_s_hit": median([s["calls_per_s"] for s in hit]),
                    }
                )
    finally:
        for started in gateways:
            started.stop()
        backend.kill()
        if floor is not None:
            floor.stop()
    return rows


def _against(hit: list[dict[str, float]], then: list[dict[str, float]] | None) -> dict[str, Any]:
    """The baseline build's hits next to this one's (nothing without ``--baseline``)."""
    if not then:
        return {}
    ratios = [a["gw_cpu_us"] / b["gw_cpu_us"] for a, b in zip(hit, then, strict=True)]
    return {
        "cpu_us_hit_baseline": median([s["gw_cpu_us"] for s in then]),
        "hit_cpu_ratio": median(ratios),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per run (all agents)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--backend", choices=BACKENDS, nargs="+", default=["sdk"])
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="a source tree of another build, run by a second gateway for an A/B of hits",
    )
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the bare uvicorn app's CPU per request (bench/http_floor.py)",
    )
    args = parser.parse_args(argv)
    rows = [row for kind in args.backend for row in _bench(kind, args)]
    print_table(f"cache hit vs the same call uncached (median of {args.runs} runs)", rows)
    write_results("cache_cost", {"runs": args.runs, "rows": rows, "pid": os.getpid()})
    return rows


if __name__ == "__main__":
    main()
