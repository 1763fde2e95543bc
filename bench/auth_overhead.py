"""Authentication overhead, two ways.

1. In process: `Authenticator.authenticate` for a cached key (the hot path: one
   SHA-256 and a dict lookup) vs an uncached one (database read), in microseconds;
   the same for an external JWT (cached, and verified each time). Issue 18's budget:
   a cached JWT costs at most 20 µs more than a cached key.
2. Over HTTP: alternates `GET /healthz` (no auth, the baseline) and
   `GET /api/v1/me` (Bearer key from the auth cache, plus the reads that build
   the response body) against one gateway process, at concurrency 1 and 16,
   and reports the difference run by run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench.common import BENCH_KEY, GatewayProcess, median, percentile, print_table, write_results


async def _load(url: str, path: str, concurrency: int, requests: int) -> dict[str, float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {BENCH_KEY}"}
    async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers) as client:
        await client.get(path)  # warm the connection and the auth cache
        per_worker = max(1, requests // concurrency)

        async def worker() -> None:
            for _ in range(per_worker):
                started = time.perf_counter()
                response = await client.get(path)
                latencies.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


async def _in_process(iterations: int) -> dict[str, float]:
    import tempfile
    from pathlib import Path

    from gateway import migrate
    from gateway.auth.authenticator import Authenticator
    from gateway.auth.service import IdentityService
    from gateway.config import normalize_database_url
    from gateway.db import Database

    with tempfile.TemporaryDirectory() as tmp:
        db = Database(normalize_database_url(None, Path(tmp)))
        await migrate.upgrade(db.engine)
        identity = IdentityService(db)
        await identity.bootstrap("admin@localhost", BENCH_KEY)
        cached = Authenticator(identity, ttl_seconds=60)
        uncached = Authenticator(identity, ttl_seconds=0)
        await cached.authenticate(BENCH_KEY)
        figures = {}
        for name, auth, n in (("cached", cached, iterations), ("uncached", uncached, 200)):
            started = time.perf_counter()
            for _ in range(n):
                await auth.authenticate(BENCH_KEY)
            figures[f"{name}_us"] = (time.perf_counter() - started) / n * 1e6
        figures.update(await _jwt_figures(identity, iterations))
        await db.dispose()
    return figures


async def _jwt_figures(identity: Any, iterations: int) -> dict[str, float]:
    """The same for an external JWT (HS256 with a shared secret: no issuer to reach),
    whose user exists: cached, and verified each time (signature, claims, user read)."""
    from joserfc import jwt
    from joserfc.jwk import OctKey

    from gateway.auth.authenticator import Authenticator
    from gateway.auth.jwt import JwtConfig, JwtVerifier

    secret = "b" * 40
    config = JwtConfig("bench", "bench", None, (), secret, 60.0, allow_private_urls=True)
    now = int(time.time())
    claims = {"iss": "bench", "aud": "bench", "exp": now + 3600, "email": "admin@localhost"}
    token = jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(secret))
    cached = Authenticator(identity, ttl_seconds=60, jwt=JwtVerifier(config))
    uncached = Authenticator(identity, ttl_seconds=0, jwt=JwtVerifier(config))
    await cached.authenticate(token)
    figures = {}
    for name, auth, n in (("jwt_cached", cached, iterations), ("jwt_uncached", uncached, 200)):
        started = time.perf_counter()
        for _ in range(n):
            await auth.authenticate(token)
        figures[f"{name}_us"] = (time.perf_counter() - started) / n * 1e6
    return figures


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    args = parser.parse_args(argv)
    micro = [asyncio.run(_in_process(20_000)) for _ in range(args.runs)]
    in_process = {k: median([m[k] for m in micro]) for k in micro[0]}
    in_process["ratio"] = in_process["uncached_us"] / in_process["cached_us"]
    in_process["jwt_added_cached_us"] = in_process["jwt_cached_us"] - in_process["cached_us"]
    print_table("authenticate(): cached vs database (median, microseconds)", [in_process])
    gateway = GatewayProcess()
    gateway.start()
    rows = []
    try:
        for concurrency in args.concurrency:
            pairs = []
            for _ in range(args.runs):
                base = asyncio.run(_load(gateway.url, "/healthz", concurrency, args.requests))
                auth = asyncio.run(_load(gateway.url, "/api/v1/me", concurrency, args.requests))
                pairs.append((base, auth))
            rows.append(
                {
                    "concurrency": concurrency,
                    "healthz_p50_ms": median([b["p50_ms"] for b, _ in pairs]),
                    "me_p50_ms": median([a["p50_ms"] for _, a in pairs]),
                    "me_p95_ms": median([a["p95_ms"] for _, a in pairs]),
                    "added_p50_ms": median([a["p50_ms"] - b["p50_ms"] for b, a in pairs]),
                    "healthz_rps": median([b["rps"] for b, _ in pairs]),
                    "me_rps": median([a["rps"] for _, a in pairs]),
                    "rps_ratio": median([a["rps"] / b["rps"] for b, a in pairs]),
                }
            )
        rss = gateway.rss_mib()
    finally:
        gateway.stop()
    print_table(
        f"auth overhead: /api/v1/me vs /healthz (median of {args.runs} alternating runs)", rows
    )
    print(f"gateway RSS after load: {rss:.0f} MiB")
    write_results(
        "auth_overhead",
        {"runs": args.runs, "in_process": in_process, "http": rows, "rss_mib": rss},
    )
    return rows


if __name__ == "__main__":
    main()
