"""Jobs: latency of a job from submit to its events at an SSE client, embedded and with
Redis.

For each job (`noop`, run by a real Celery worker): the client submits
(`POST /api/v1/jobs`), opens `GET /api/v1/jobs/{id}/events` at once, and times
- `first event`: submit → the first event at the client (the job's `pending` status),
- `running`: submit → the worker's `running` status at the client (the broker's
  hand-off: the embedded SQLite broker polls every MCPGW_JOBS_POLL_SECONDS),
- `round trip`: submit → the `result` event at the client.
Targets (#19): first event <= 150 ms p50, round trip <= 300 ms p50.

Modes: `embedded` (SQLite, the embedded broker, the worker `serve` starts) and
`redis` (PostgreSQL, Redis broker and wake-ups, a `mcpgw worker` process). Each run
starts a fresh gateway, warms the worker with one job, then times ``--jobs`` jobs one
after another; the table shows the median over runs of each run's p50 (and p95).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import time
from typing import Any

import httpx

from bench.common import (
    BENCH_KEY,
    MCPGW,
    GatewayProcess,
    drop_pg_database,
    median,
    percentile,
    pg_database,
    print_table,
    write_results,
)

AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}
REDIS = os.environ.get("MCPGW_BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def time_job(client: httpx.Client) -> dict[str, float]:
    """Milliseconds from submit to the first, `running` and terminal events."""
    started = time.perf_counter()
    r = client.post("/api/v1/jobs", json={"kind": "noop", "input": {}})
    r.raise_for_status()
    job_id = r.json()["job_id"]
    out: dict[str, float] = {}
    event = ""
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                now = (time.perf_counter() - started) * 1000
                out.setdefault("first", now)
                if event == "status" and '"running"' in line:
                    out["running"] = now
                if event in ("result", "error", "cancelled"):
                    out["result"] = now
                    break
    if event != "result":
        raise RuntimeError(f"job {job_id} ended with {event!r}")
    return out


def run_mode(mode: str, jobs: int) -> dict[str, list[float]]:
    """One run: a fresh gateway (and worker) in ``mode``; the timings of ``jobs`` jobs."""
    env: dict[str, str] = {}
    worker: subprocess.Popen[bytes] | None = None
    db_url = None
    if mode == "redis":
        db_url = pg_database("mcpgw_bench_jobs")
        env = {
            "MCPGW_DATABASE_URL": db_url,
            "MCPGW_AUTO_MIGRATE": "true",
            "MCPGW_REDIS_URL": f"{REDIS.rstrip('/')}/{random.randint(1, 15)}",
        }
    gateway = GatewayProcess(env=env)
    try:
        gateway.start()
        if mode == "redis":
            worker_env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
            worker_env.update(
                env, MCPGW_DATA_DIR=gateway.data_dir or ".", MCPGW_LOG_LEVEL="WARNING"
            )
            worker = subprocess.Popen(
                [MCPGW, "worker", "-c", "1", "--loglevel", "WARNING"],
                env=worker_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        with httpx.Client(base_url=gateway.url, headers=AUTH, timeout=60) as client:
            time_job(client)  # warm-up: starts the embedded worker, opens connections
            samples = [time_job(client) for _ in range(jobs)]
    finally:
        if worker is not None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        gateway.stop()
        if db_url:
            drop_pg_database(db_url)
    return {key: [s[key] for s in samples] for key in ("first", "running", "result")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--modes", nargs="+", default=["embedded", "redis"])
    args = parser.parse_args(argv)
    rows = []
    for mode in args.modes:
        runs = [run_mode(mode, args.jobs) for _ in range(args.runs)]
        row: dict[str, Any] = {"mode": mode, "runs": args.runs, "jobs/run": args.jobs}
        for key, label in (
            ("first", "first_event"),
            ("running", "running"),
            ("result", "round_trip"),
        ):
            row[f"{label}_p50_ms"] = median([percentile(r[key], 50) for r in runs])
            row[f"{label}_p95_ms"] = median([percentile(r[key], 95) for r in runs])
        rows.append(row)
    print_table("jobs: submit to events at an SSE client (targets: 150 / 300 ms p50)", rows)
    write_results("jobs", {"rows": rows})
    return {row["mode"]: row for row in rows}


if __name__ == "__main__":
    main()
