"""What tracing costs a `tools/call` (``python -m bench.proxy_overhead --tracing``).

One gateway, one raw backend, one OTLP/HTTP sink in this process (it answers every
export with success and discards it: its CPU is not the gateway's). Between runs the
exporter is switched at run time through `PUT /api/v1/settings/telemetry`: off
(no exporter: the pipeline holds no tracer), on with 0% sampling (a span context per
call, propagated to the backend, nothing recorded) and on with 100% (every call's
spans recorded and exported), the order rotating run by run (the machine is noisy).
Reports the gateway's CPU per call per mode and path, and its ratio to off.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from bench.common import BENCH_KEY, GatewayProcess, free_port, median, print_table, write_results
from bench.loadgen import Target

MODES = ("off", "0%", "100%")


class _Sink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def _switch(gateway: GatewayProcess, mode: str, sink: str) -> None:
    body: dict[str, Any] = {"exporter": "none"}
    if mode != "off":
        ratio = 0.0 if mode == "0%" else 1.0
        body = {"exporter": "otlp_http", "endpoint": sink, "sample_ratio": ratio}
    auth = {"Authorization": f"Bearer {BENCH_KEY}"}
    r = httpx.put(f"{gateway.url}/api/v1/settings/telemetry", json=body, headers=auth, timeout=30)
    r.raise_for_status()
    # The previous exporter flushes its last batch in a thread: not this run's CPU.
    time.sleep(2.0)


def bench_tracing(
    args: argparse.Namespace,
    start_backend: Callable[..., Any],
    measure: Callable[..., dict[str, float]],
) -> list[dict[str, Any]]:
    """Tracing off / 0% / 100% on one gateway, alternating; rows per mode and path."""
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    sink_url = f"http://127.0.0.1:{sink.server_address[1]}"
    backend_port = free_port()
    backend = start_backend(backend_port, "raw")
    gateway = GatewayProcess(
        env={"MCPGW_ALLOW_PRIVATE_URLS": "true", "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000"}
    )
    rows: list[dict[str, Any]] = []
    try:
        gateway.start()
        gateway.add_remote("fast", f"http://127.0.0.1:{backend_port}/mcp")
        paths = {
            "/mcp 2026-07-28": Target(f"{gateway.url}/mcp", "fast__echo", "modern", BENCH_KEY),
            "/mcp 2025-11-25": Target(f"{gateway.url}/mcp", "fast__echo", "handshake", BENCH_KEY),
        }
        for concurrency in args.concurrency:
            samples = {(m, p): [] for m in MODES for p in paths}  # type: ignore[var-annotated]
            for run in range(args.runs):
                for mode in MODES[run % 3 :] + MODES[: run % 3]:
                    _switch(gateway, mode, sink_url)
                    for name, target in paths.items():
                        samples[(mode, name)].append(
                            measure("raw", target, concurrency, args.calls, gateway)
                        )
            rows += _rows(concurrency, samples)
    finally:
        gateway.stop()
        backend.kill()
        sink.shutdown()
    print_table(f"tracing cost: gateway CPU per call (median of {args.runs} runs)", rows)
    write_results("tracing_cost", {"runs": args.runs, "rows": rows})
    return rows


def _rows(
    concurrency: int, samples: dict[tuple[str, str], list[dict[str, float]]]
) -> list[dict[str, Any]]:
    rows = []
    for (mode, path), runs in samples.items():
        off = samples[("off", path)]
        rows.append(
            {
                "c": concurrency,
                "path": path,
                "tracing": mode,
                "gw_cpu_us_per_call": median([s["gw_cpu_us"] for s in runs]),
                "cpu_vs_off": median(
                    [s["gw_cpu_us"] / o["gw_cpu_us"] for s, o in zip(runs, off, strict=True)]
                ),
                "p50_ms": median([s["p50"] for s in runs]),
                "calls_per_s": median([s["calls_per_s"] for s in runs]),
                "fast_path": median([s["fast_share"] for s in runs]),
            }
        )
    return rows
