"""Catalog scale: `tools/list` and `SEARCH_TOOLS` latency as the catalog grows.

For each size (10, 100, 1,000, 10,000 tools by default) a fresh gateway fronts a
backend listing that many tools. Through `/mcp` (2026-07-28), one agent asks
repeatedly: `tools/list` with a `list`-mode key (every definition; served from the
cached per-caller view) and `SEARCH_TOOLS` with a `search_execute`-mode key
(varied queries, limit 10), once its answers use the embeddings (``first_ms`` of
the SEARCH_TOOLS row: how long after the first search that took, the model load
and the catalog's embedding on the background thread). Reports p50/p95 and the
response size. Targets
(2 cores): `tools/list` p95 ≤ 5 ms at 1,000 tools, `SEARCH_TOOLS` p95 ≤ 10 ms at
10,000.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench.catalog_setup import CatalogGateway
from bench.common import percentile, print_table, write_results

QUERIES = [
    "create an invoice for a customer",
    "list open support tickets",
    "delete a git branch",
    "export dashboard metrics",
    "search documents about payments",
    "sync the team calendar",
    "restore an archived file",
    "who is the assignee of this issue",
]


def _timed(fn: Any, repeats: int) -> tuple[list[float], int]:
    fn()  # warm: the first call builds the caller's view and the search index
    latencies, size = [], 0
    for i in range(repeats):
        started = time.perf_counter()
        size = len(fn(i))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, size


def measure(tools: int, repeats: int, wait_dense: bool = True) -> list[dict[str, Any]]:
    rows = []
    with CatalogGateway(tools) as gw:
        startup = time.perf_counter()
        gw.call("tools/list", mode="list")
        first_list_ms = (time.perf_counter() - startup) * 1000
        listing, list_bytes = _timed(lambda i=0: gw.call("tools/list", mode="list"), repeats)
        rows.append(_row(tools, "tools/list (list mode)", listing, list_bytes, first_list_ms))
        dense_s = _until_dense(gw) if wait_dense else float("nan")
        cpu_before = gw.gateway.cpu_seconds()
        searching, search_bytes = _timed(
            lambda i=0: gw.call(
                "tools/call",
                {"name": "SEARCH_TOOLS", "arguments": {"query": QUERIES[i % len(QUERIES)]}},
                mode="search_execute",
            ),
            repeats,
        )
        cpu_ms = (gw.gateway.cpu_seconds() - cpu_before) * 1000 / (repeats + 1)
        rows.append(_row(tools, "SEARCH_TOOLS limit 10", searching, search_bytes, dense_s))
        rows[-1]["gw_cpu_ms"] = cpu_ms
    return rows


def _until_dense(gw: CatalogGateway, limit_s: float = 120) -> float:
    """Milliseconds from the first SEARCH_TOOLS until answers use the embeddings
    (built in the background: until then the gateway ranks lexically); timing
    starts after, so it measures hybrid search."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        body = gw.call(
            "tools/call",
            {"name": "SEARCH_TOOLS", "arguments": {"query": QUERIES[0]}},
            mode="search_execute",
        )
        if b"meaning " in body:
            return (time.perf_counter() - started) * 1000
        time.sleep(0.05)
    raise RuntimeError("SEARCH_TOOLS never used the embeddings (MCPGW_SEARCH_DENSE_MODEL=off?)")


def _row(
    tools: int, what: str, latencies: list[float], size: int, first_ms: float | None
) -> dict[str, Any]:
    return {
        "tools": tools,
        "request": what,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "response_kib": size / 1024,
        "first_ms": first_ms if first_ms is not None else float("nan"),
        "gw_cpu_ms": float("nan"),  # the gateway's CPU per request (SEARCH_TOOLS rows)
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=50, help="requests per measurement")
    parser.add_argument(
        "--no-wait-dense",
        action="store_true",
        help="time SEARCH_TOOLS at once (a gateway without embeddings: an A/B baseline)",
    )
    args = parser.parse_args(argv)
    rows = []
    for tools in args.tools:
        rows += measure(tools, args.repeats, wait_dense=not args.no_wait_dense)
    print_table("catalog scale: tools/list and SEARCH_TOOLS through /mcp (one agent)", rows)
    write_results("catalog_scale", {"repeats": args.repeats, "rows": rows})
    return rows


if __name__ == "__main__":
    main()
