"""What a server's tool transforms cost a tool call on the fast path: one gateway on one
backend, the server's transforms set and removed run by run (`PATCH
/api/v1/servers/fast`), so every mode is measured in the same process, alternating.

Modes: ``off`` (no transforms: the agent calls ``fast__echo``); ``rename+fixed`` (``echo``
renamed ``say`` with its ``text`` argument fixed: the name resolved through the
server's transforms, the transform stage forcing the value, the arguments re-sent as
changed); ``+redact`` (the same and a result redaction by pattern, applied to the
parsed result before it is sent on). Prints the median gateway CPU per call per mode,
its ratio to ``off`` and the p50 difference.

Why one process: two gateway processes on this 2-core machine differ by up to ±10 %
in CPU per call with identical settings, more than the cost measured here.

    python -m bench.transform_cost --runs 5 --calls 4000 --concurrency 16
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

from bench.common import BENCH_KEY, GatewayProcess, free_port, median, print_table, write_results
from bench.loadgen import Target
from bench.proxy_overhead import _measure, start_backend

RENAMED: dict[str, Any] = {"tools": {"echo": {"rename": "say", "fixed": {"text": "fixed"}}}}
MODES: dict[str, tuple[dict[str, Any], str]] = {
    "off": ({}, "fast__echo"),
    "rename+fixed": (RENAMED, "fast__say"),
    "+redact": (
        {**RENAMED, "results": {"redact": [{"pattern": r"\d{3}-\d{4}", "replacement": "#"}]}},
        "fast__say",
    ),
}


def _set(gateway: GatewayProcess, transforms: dict[str, Any]) -> None:
    r = httpx.patch(
        f"{gateway.url}/api/v1/servers/fast",
        json={"transforms": transforms},
        headers={"Authorization": f"Bearer {BENCH_KEY}"},
        timeout=60,
    )
    r.raise_for_status()


def _bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    port = free_port()
    backend = start_backend(port, "raw")
    gateway = GatewayProcess(
        env={"MCPGW_ALLOW_PRIVATE_URLS": "true", "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000"}
    )
    rows = []
    try:
        gateway.start()
        gateway.add_remote("fast", f"http://127.0.0.1:{port}/mcp")
        url = f"{gateway.url}/mcp"
        for concurrency in args.concurrency:
            samples: dict[tuple[str, str], list[dict[str, float]]] = {}
            for run in range(args.runs):
                order = list(MODES) if run % 2 == 0 else list(reversed(MODES))
                for mode in order:  # which goes first alternates: a fixed order biases
                    transforms, tool = MODES[mode]
                    _set(gateway, transforms)
                    for era in ("modern", "handshake"):
                        target = Target(url, tool, era, BENCH_KEY)
                        found = _measure("raw", target, concurrency, args.calls, gateway)
                        samples.setdefault((era, mode), []).append(found)
            for era in ("modern", "handshake"):
                off = samples[(era, "off")]
                for mode in MODES:
                    on = samples[(era, mode)]
                    ratios = [
                        a["gw_cpu_us"] / b["gw_cpu_us"] if b["gw_cpu_us"] else float("nan")
                        for a, b in zip(on, off, strict=True)
                    ]
                    rows.append(
                        {
                            "c": concurrency,
                            "path": f"/mcp {'2026-07-28' if era == 'modern' else '2025-11-25'}",
                            "mode": mode,
                            "cpu_us": median([s["gw_cpu_us"] for s in on]),
                            "cpu_ratio": median(ratios),
                            "added_p50_ms": median(
                                [a["p50"] - b["p50"] for a, b in zip(on, off, strict=True)]
                            ),
                            "fast_share": median([s["fast_share"] for s in on]),
                            "calls_per_s": median([s["calls_per_s"] for s in on]),
                        }
                    )
    finally:
        gateway.stop()
        backend.kill()
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=4000, help="calls per run (all agents)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    args = parser.parse_args(argv)
    rows = _bench(args)
    print_table(f"tool transforms vs none, alternating (median of {args.runs} runs)", rows)
    write_results("transform_cost", {"runs": args.runs, "rows": rows, "pid": os.getpid()})
    return rows


if __name__ == "__main__":
    main()
