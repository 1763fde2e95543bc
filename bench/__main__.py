"""`make bench` / `python -m bench`: run every benchmark with its default sizes."""

from __future__ import annotations

import sys

from bench import (
    audit_cost,
    auth_overhead,
    cache_cost,
    catalog_scale,
    jobs,
    peer_contextforge,
    policy_cost,
    policy_decision,
    proxy_overhead,
    resilience_cost,
    sandboxes,
    server_isolation,
    startup,
    token_cost,
    transform_cost,
)

BENCHMARKS = {
    "startup": startup.main,
    "auth_overhead": auth_overhead.main,
    "proxy_overhead": proxy_overhead.main,
    "audit_cost": audit_cost.main,
    "policy_decision": policy_decision.main,
    "policy_cost": policy_cost.main,
    "resilience_cost": resilience_cost.main,
    "cache_cost": cache_cost.main,
    "transform_cost": transform_cost.main,
    "sandboxes": sandboxes.main,
    "jobs": jobs.main,
    "server_isolation": server_isolation.main,
    "catalog_scale": catalog_scale.main,
    "token_cost": token_cost.main,
    "peer_contextforge": peer_contextforge.main,
}


def main() -> None:
    chosen = sys.argv[1:] or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    for name in chosen:
        BENCHMARKS[name]([])


if __name__ == "__main__":
    main()
