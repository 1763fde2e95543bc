"""What the audit trail costs a tool call: two gateways on one backend, audit on and
off (``MCPGW_AUDIT_ENABLED``), measured run by run in alternation (the machine is noisy).

For each path (fast path in both eras, the SDK path) and concurrency, prints the median
gateway CPU per call with audit on and off and their ratio (the steady figure), where
it went (the event loop's thread, the other threads: aiosqlite's, which inserts on
SQLite with ``MCPGW_AUDIT_WRITER=inline``), the audit writer process's CPU per call
(``writer_us_on``: masking, hashing and inserts, on another core) and the ratio of the
two processes together to audit off (``total_ratio``), and p50 with audit on minus p50
with audit off. ``--writer inline`` measures rows stored in the gateway's own process.
Issue 16's budget: CPU per call at 16 agents at most +15 %, p50 at 1 agent at most
+0.1 ms.

    python -m bench.audit_cost --backend raw sdk --runs 5 --calls 2000
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from bench.common import (
    BENCH_KEY,
    GatewayProcess,
    drop_pg_database,
    free_port,
    median,
    pg_database,
    print_table,
    write_results,
)
from bench.loadgen import Target
from bench.proxy_overhead import BACKENDS, _measure, start_backend

_WRITER_SETTLE = 0.6  # s: longer than the default flush interval (0.5 s)


def _gateway(
    audit: bool, database_url: str | None, writer: str, extra: list[str]
) -> GatewayProcess:
    env = {
        **dict(item.split("=", 1) for item in extra),
        "MCPGW_ALLOW_PRIVATE_URLS": "true",
        "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000",
        "MCPGW_AUDIT_ENABLED": "true" if audit else "false",
        "MCPGW_AUDIT_WRITER": writer,
    }
    if database_url:
        env["MCPGW_DATABASE_URL"] = database_url
        env["MCPGW_AUTO_MIGRATE"] = "true"
    return GatewayProcess(env=env)


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
    port = free_port()
    backend = start_backend(port, kind)
    databases = [pg_database() for _ in range(2)] if args.database == "postgresql" else [None] * 2
    gateways = {
        "on": _gateway(True, databases[0], args.writer, args.env),
        "off": _gateway(False, databases[1], args.writer, args.env),
    }
    rows = []
    try:
        for gateway in gateways.values():
            gateway.start()
            gateway.add_remote("fast", f"http://127.0.0.1:{port}/mcp")
            if kind != "raw":
                gateway.add_remote("pinned", f"http://127.0.0.1:{port}/mcp", protocol="2026-07-28")
        names = list(_targets(gateways["on"], kind))
        for concurrency in args.concurrency:
            samples: dict[tuple[str, str], list[dict[str, float]]] = {}
            for run in range(args.runs):
                for name in names:
                    # Which goes first alternates too: a fixed order biases the figures.
                    order = list(gateways.items())
                    for mode, gateway in order if run % 2 else reversed(order):
                        target = _targets(gateway, kind)[name]
                        before = gateway.thread_cpu_seconds()
                        before["writer"] = gateway.writer_cpu_seconds()
                        found = _measure("raw", target, concurrency, args.calls, gateway)
                        after = gateway.thread_cpu_seconds()
                        # The writer process stores a batch up to a flush interval later.
                        time.sleep(_WRITER_SETTLE)
                        after["writer"] = gateway.writer_cpu_seconds()
                        for part in ("main", "threads", "writer"):
                            used = after[part] - before[part]
                            found[f"{part}_us"] = used / args.calls * 1e6
                        samples.setdefault((name, mode), []).append(found)
            for name in names:
                on, off = samples[(name, "on")], samples[(name, "off")]
                # A tiny run can round a gateway's CPU to 0 ticks: no ratio then.
                ratios = [
                    a["gw_cpu_us"] / b["gw_cpu_us"] if b["gw_cpu_us"] else float("nan")
                    for a, b in zip(on, off, strict=True)
                ]
                totals = [
                    (a["gw_cpu_us"] + a["writer_us"]) / b["gw_cpu_us"]
                    if b["gw_cpu_us"]
                    else float("nan")
                    for a, b in zip(on, off, strict=True)
                ]
                rows.append(
                    {
                        "db": args.database,
                        "writer": args.writer,
                        "backend": kind,
                        "c": concurrency,
                        "path": name,
                        "cpu_us_on": median([s["gw_cpu_us"] for s in on]),
                        "cpu_us_off": median([s["gw_cpu_us"] for s in off]),
                        "cpu_ratio": median(ratios),
                        # Where the CPU went: the event loop's thread, the others (on
                        # SQLite, aiosqlite's thread does the inserts).
                        "loop_us_on": median([s["main_us"] for s in on]),
                        "threads_us_on": median([s["threads_us"] for s in on]),
                        "loop_us_off": median([s["main_us"] for s in off]),
                        "writer_us_on": median([s["writer_us"] for s in on]),
                        "total_ratio": median(totals),
                        "p50_on_ms": median([s["p50"] for s in on]),
                        "p50_off_ms": median([s["p50"] for s in off]),
                        "added_p50_ms": median(
                            [a["p50"] - b["p50"] for a, b in zip(on, off, strict=True)]
                        ),
                        "calls_per_s_on": median([s["calls_per_s"] for s in on]),
                    }
                )
    finally:
        for gateway in gateways.values():
            gateway.stop()
        backend.kill()
        for url in databases:
            if url:
                drop_pg_database(url)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per run (all agents)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--backend", choices=BACKENDS, nargs="+", default=["raw", "sdk"])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--writer",
        choices=["process", "inline"],
        default="process",
        help="where audit rows are stored (MCPGW_AUDIT_WRITER)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more settings for both gateways (e.g. MCPGW_AUDIT_FLUSH_SECONDS=0.1)",
    )
    args = parser.parse_args(argv)
    rows = [row for kind in args.backend for row in _bench(kind, args)]
    print_table(f"audit on vs off, alternating (median of {args.runs} runs)", rows)
    write_results("audit_cost", {"runs": args.runs, "rows": rows, "pid": os.getpid()})
    return rows


if __name__ == "__main__":
    main()
