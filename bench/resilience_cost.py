"""What circuit breakers, retries and replicas cost a tool call while nothing fails: one
gateway, the global defaults off (``MCPGW_BREAKER_ENABLED=false``,
``MCPGW_RETRIES_ENABLED=false``) and each server's config switched run by run
(`PATCH /api/v1/servers/{name}`) between *on* — breakers + retries (the benchmarked
tool marked idempotent, so its calls carry a retry plan that is never used) and a
round-robin over two replicas (two backend processes, `config.replicas`) — and *off*:
nothing, one backend (the pipeline's breaker slot then empty). On and off are measured
in the same process, alternating (which goes first alternates too).

Why one process: two gateway processes on this 2-core machine differ by up to ±10 %
in CPU per call with identical settings, as much as the budget measured here.

Prints the median gateway CPU per call with and without, their ratio (the steady
figure) and the p50 difference. Issue 21's budget at 16 agents: +10 %.

    python -m bench.resilience_cost --backend raw sdk --runs 5
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

from bench.common import (
    BENCH_KEY,
    GatewayProcess,
    alternating,
    free_port,
    on_off_row,
    print_table,
    write_results,
)
from bench.loadgen import Target
from bench.proxy_overhead import BACKENDS, _measure, start_backend

ON = {
    "breaker": {"enabled": True},
    "retries": {"enabled": True},
    "tools": {"echo": {"idempotent": True}},
}


def _configure(
    gateway: GatewayProcess, servers: dict[str, dict[str, Any]], on: bool, second: str
) -> None:
    """Each server's config with (or without) its resilience settings and replicas."""
    replicas = {"strategy": "round_robin", "endpoints": [{"url": second}]}
    for name, config in servers.items():
        body = {"config": {**config, "resilience": ON, "replicas": replicas} if on else config}
        r = httpx.patch(
            f"{gateway.url}/api/v1/servers/{name}",
            json=body,
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            timeout=60,
        )
        r.raise_for_status()


def _targets(gateway: GatewayProcess, kind: str) -> dict[str, Target]:
    url = f"{gateway.url}/mcp"
    paths = {
        "/mcp 2026-07-28 (fast)": Target(url, "fast__echo", "modern", BENCH_KEY),
        "/mcp 2025-11-25 (fast)": Target(url, "fast__echo", "handshake", BENCH_KEY),
    }
    if kind != "raw":
        paths["/mcp 2025-11-25 SDK path"] = Target(url, "pinned__echo", "handshake", BENCH_KEY)
    return paths


def _bench(kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    port, port2 = free_port(), free_port()
    backend = start_backend(port, kind)
    backend2 = start_backend(port2, kind)  # the second replica
    second = f"http://127.0.0.1:{port2}/mcp"
    gateway = GatewayProcess(
        env={
            "MCPGW_ALLOW_PRIVATE_URLS": "true",
            "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000",
            "MCPGW_BREAKER_ENABLED": "false",
            "MCPGW_RETRIES_ENABLED": "false",
        }
    )
    url = f"http://127.0.0.1:{port}/mcp"
    servers: dict[str, dict[str, Any]] = {"fast": {"url": url}}
    if kind != "raw":
        servers["pinned"] = {"url": url, "protocol": "2026-07-28"}
    rows = []
    try:
        gateway.start()
        for name, config in servers.items():
            gateway.add_remote(name, url, **{k: v for k, v in config.items() if k != "url"})
        targets = _targets(gateway, kind)
        for concurrency in args.concurrency:

            def measure(name: str, c: int = concurrency) -> dict[str, float]:
                _measure("raw", targets[name], c, max(20, args.calls // 10), gateway)  # warm
                return _measure("raw", targets[name], c, args.calls, gateway)

            on, off = alternating(
                args.runs,
                lambda state: _configure(gateway, servers, state, second),
                targets,
                measure,
            )
            for name in targets:
                row = {"backend": kind, "c": concurrency, "path": name}
                rows.append(row | on_off_row(on[name], off[name]))
    finally:
        gateway.stop()
        backend.kill()
        backend2.kill()
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per run (all agents)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--backend", choices=BACKENDS, nargs="+", default=["raw", "sdk"])
    args = parser.parse_args(argv)
    rows = [row for kind in args.backend for row in _bench(kind, args)]
    title = "breakers + retries + 2 replicas on vs off, alternating"
    print_table(f"{title} (median of {args.runs} runs)", rows)
    write_results("resilience_cost", {"runs": args.runs, "rows": rows, "pid": os.getpid()})
    return rows


if __name__ == "__main__":
    main()
