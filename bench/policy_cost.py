"""What a policy and a rate limit cost a tool call: one gateway on one backend, a
realistic policy (100 rules, three of them on the benchmarked tool: a condition over
its arguments, a role rule, a deny glob) and a rate limit on it (per key and tool, high
enough never to refuse) applied and removed run by run (`PUT /api/v1/policies`), so
on and off are measured in the same process, alternating.

Why one process: two gateway processes on this 2-core machine differ by up to ±10 %
in CPU per call with identical settings (where each lands, what it shares a core
with), more than the cost measured here.

``--limits memory`` counts in process (the embedded default); ``--limits redis`` on the
Redis at ``MCPGW_TEST_REDIS_URL``. Prints the median gateway CPU per call with and
without, their ratio (the steady figure) and the p50 difference. Issue 17's budget at
16 agents: +15 % (in-process limits), +30 % (Redis limits).

    python -m bench.policy_cost --backend raw sdk --limits memory redis --runs 5
"""

from __future__ import annotations

import argparse
import os
import uuid
from typing import Any

import httpx
import yaml

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
from bench.policy_decision import realistic
from bench.proxy_overhead import BACKENDS, _measure, start_backend

REDIS = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")
SERVERS = ["fast__*", "pinned__*"]


def bench_policy() -> dict[str, Any]:
    """100 rules and one limit, the benchmarked tool covered by four of them."""
    document = realistic(97, 10)
    document["rules"] += [
        {
            "id": "bench-no-etc",
            "effect": "deny",
            "actions": ["tools/call"],
            "targets": SERVERS,
            "condition": 'has(args.path) && args.path.startsWith("/etc")',
        },
        {
            "id": "bench-viewers",
            "effect": "deny",
            "subjects": {"roles": ["viewer"]},
            "actions": ["tools/call"],
            "targets": SERVERS,
        },
        {
            "id": "bench-no-drop",
            "effect": "deny",
            "actions": ["tools/call"],
            "targets": ["fast__drop_*"],
        },
    ]
    document["limits"] = [
        {
            "id": "bench-rate",
            "scope": ["key", "tool"],
            "targets": SERVERS,
            "rate": "1000000/minute",
            "burst": 100000,
        }
    ]
    return document


def _gateway(limits: str, prefix: str) -> GatewayProcess:
    env = {"MCPGW_ALLOW_PRIVATE_URLS": "true", "MCPGW_MCP_MAX_SESSIONS_PER_KEY": "100000"}
    if limits == "redis":
        env |= {"MCPGW_REDIS_URL": REDIS, "MCPGW_RATE_LIMIT_KEY_PREFIX": prefix}
    return GatewayProcess(env=env)


def _apply(gateway: GatewayProcess, document: dict[str, Any]) -> None:
    r = httpx.put(
        f"{gateway.url}/api/v1/policies",
        content=yaml.safe_dump(document).encode(),
        headers={"Authorization": f"Bearer {BENCH_KEY}", "Content-Type": "application/yaml"},
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


def _bench(kind: str, limits: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    port = free_port()
    backend = start_backend(port, kind)
    gateway = _gateway(limits, f"bench-{uuid.uuid4().hex[:8]}")
    policy = bench_policy()
    rows = []
    try:
        gateway.start()
        gateway.add_remote("fast", f"http://127.0.0.1:{port}/mcp")
        if kind != "raw":
            gateway.add_remote("pinned", f"http://127.0.0.1:{port}/mcp", protocol="2026-07-28")
        targets = _targets(gateway, kind)
        for concurrency in args.concurrency:
            on, off = alternating(
                args.runs,
                lambda state: _apply(gateway, policy if state else {}),
                targets,
                lambda name, c=concurrency: _measure("raw", targets[name], c, args.calls, gateway),
            )
            for name in targets:
                row = {"limits": limits, "backend": kind, "c": concurrency, "path": name}
                rows.append(row | on_off_row(on[name], off[name]))
        if limits == "redis":  # how many calls the replica's shares spared a round trip
            calls_on = args.runs * args.calls * len(targets) * len(args.concurrency)
            for row in rows:
                row["redis_trips_per_call"] = _round_trips(gateway) / calls_on
    finally:
        gateway.stop()
        backend.kill()
    return rows


def _round_trips(gateway: GatewayProcess) -> float:
    text = httpx.get(
        f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {BENCH_KEY}"}, timeout=30
    ).text
    for line in text.splitlines():
        if line.startswith('mcpgw_limit_round_trips_total{storage="redis"}'):
            return float(line.split()[-1])
    return float("nan")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="calls per run (all agents)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--backend", choices=BACKENDS, nargs="+", default=["raw", "sdk"])
    parser.add_argument(
        "--limits", choices=["memory", "redis"], nargs="+", default=["memory", "redis"]
    )
    args = parser.parse_args(argv)
    rows = [
        row for kind in args.backend for limits in args.limits for row in _bench(kind, limits, args)
    ]
    print_table(f"policy + rate limit on vs off, alternating (median of {args.runs} runs)", rows)
    write_results("policy_cost", {"runs": args.runs, "rows": rows, "pid": os.getpid()})
    return rows


if __name__ == "__main__":
    main()
