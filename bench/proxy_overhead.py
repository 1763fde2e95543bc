"""Proxy overhead: `tools/call` straight to a backend vs through the gateway's `/mcp`.

A fast backend (an SDK `MCPServer` over Streamable HTTP, stateless JSON) runs on
loopback; the gateway (embedded default, auth on) registers it as a `remote`
server. Real MCP clients (the official SDK) call the same tool directly, through
`/mcp` and through `/mcp/servers/{name}`, alternating run by run, at each
concurrency (that many clients in parallel). Reports p50/p95 per path and the
added milliseconds at the median, pair by pair.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
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

BACKEND = """
import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("fast")


@server.tool()
def echo(text: str) -> str:
    return text


uvicorn.run(
    server.streamable_http_app(stateless_http=True, json_response=True),
    host="127.0.0.1", port={port}, log_level="warning",
)
"""


def start_backend(port: int) -> subprocess.Popen[bytes]:
    script = Path(tempfile.mkdtemp(prefix="mcpgw-bench-")) / "backend.py"
    script.write_text(BACKEND.replace("{port}", str(port)))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
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


async def _run(
    url: str, headers: dict[str, str], tool: str, concurrency: int, calls: int
) -> dict[str, float]:
    started = time.perf_counter()
    per_client = max(1, calls // concurrency)
    results = await asyncio.gather(
        *(_client_loop(url, headers, tool, per_client) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r]
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "calls_per_s": len(latencies) / elapsed,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400, help="calls per run (all clients)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args(argv)

    backend_port = free_port()
    backend = start_backend(backend_port)
    gateway = GatewayProcess(env={"MCPGW_ALLOW_PRIVATE_URLS": "true"})
    rows = []
    try:
        gateway.start()
        direct_url = f"http://127.0.0.1:{backend_port}/mcp"
        r = httpx.post(
            f"{gateway.url}/api/v1/servers",
            params={"wait": True},
            json={"name": "fast", "type": "remote", "config": {"url": direct_url}},
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            timeout=60,
        )
        r.raise_for_status()
        auth = {"Authorization": f"Bearer {BENCH_KEY}"}
        paths = {
            "direct": (direct_url, {}, "echo"),
            "/mcp": (f"{gateway.url}/mcp", auth, "fast__echo"),
            "/mcp/servers/fast": (f"{gateway.url}/mcp/servers/fast", auth, "echo"),
        }
        for concurrency in args.concurrency:
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
            for _ in range(args.runs):  # alternate: the machine is noisy
                for name, (url, headers, tool) in paths.items():
                    samples[name].append(
                        asyncio.run(_run(url, headers, tool, concurrency, args.calls))
                    )
            direct = samples["direct"]
            for name in paths:
                runs = samples[name]
                rows.append(
                    {
                        "concurrency": concurrency,
                        "path": name,
                        "p50_ms": median([s["p50"] for s in runs]),
                        "p95_ms": median([s["p95"] for s in runs]),
                        "calls_per_s": median([s["calls_per_s"] for s in runs]),
                        "added_p50_ms": median(
                            [s["p50"] - d["p50"] for s, d in zip(runs, direct, strict=True)]
                        ),
                    }
                )
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


if __name__ == "__main__":
    main()
