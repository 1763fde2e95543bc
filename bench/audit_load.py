"""Nothing lost: ≥ 50,000 `tools/call` at ≥ 1,000 calls/s through the gateway with the
audit trail on, and a fault in the middle; afterwards audit rows == calls answered and
the hash chain verifies.

Faults (``--fault``):
- ``sigterm``: the gateway gets SIGTERM halfway (it drains, flushes the audit queue
  and exits), is started again on the same database and port, and the load goes on;
- ``db-restart``: PostgreSQL is restarted halfway while the load goes on (the writer
  retries); with ``--down-seconds 10`` it stays down longer than the retries last, so
  the writer spills to its file and reads the spill back once the database answers.

Agents speak 2026-07-28 (stateless) on keep-alive connections (bench/loadgen.py) to
a raw echo backend; a call counts as answered when its agent got a JSON-RPC result.
Bounded: ``--calls`` answered calls or ``--max-seconds``, whichever comes first.

    python -m bench.audit_load --database sqlite --fault sigterm
    python -m bench.audit_load --database postgresql --fault sigterm
    python -m bench.audit_load --database postgresql --fault db-restart
    python -m bench.audit_load --database postgresql --fault db-restart --down-seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BENCH_KEY,
    MCPGW,
    GatewayProcess,
    drop_pg_database,
    free_port,
    pg_database,
    print_table,
    write_results,
)
from bench.loadgen import Agent, Target
from bench.proxy_overhead import start_backend

AUTH = {"Authorization": f"Bearer {BENCH_KEY}"}


@dataclass
class Tally:
    answered: int = 0
    refused: int = 0  # an HTTP error or a dropped connection: not answered, not audited
    fault_at: float | None = None
    fault_seconds: float = 0.0
    half: int = 0
    halfway: asyncio.Event = field(default_factory=asyncio.Event)


def _postgres(action: str) -> None:
    cluster = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", action],
        check=True,
        capture_output=True,
    )


def _restart_postgres(down_seconds: float) -> None:
    """Restart PostgreSQL; with ``down_seconds``, keep it stopped that long first."""
    if not down_seconds:
        _postgres("restart")
        return
    _postgres("stop")
    try:
        time.sleep(down_seconds)
    finally:
        _postgres("start")


async def _agent(target: Target, tally: Tally, goal: int, deadline: float) -> None:
    agent = Agent(target)
    request = b""
    while tally.answered < goal and time.monotonic() < deadline:
        try:
            if agent.reply is None:
                await agent.open()
                request = agent.call_request()
            assert agent.reply is not None
            status, _, body = await agent.reply.exchange(request)
        except (OSError, ConnectionError, RuntimeError):
            agent.close()
            agent.reply = None
            tally.refused += 1
            await asyncio.sleep(0.05)  # the gateway is restarting
            continue
        if status == 200 and b'"result"' in body:
            tally.answered += 1
            if tally.answered == tally.half:
                tally.halfway.set()
        else:
            tally.refused += 1
            await asyncio.sleep(0.01)
    agent.close()


def _audit_fates(url: str) -> dict[str, int]:
    """``mcpgw_audit_rows_total`` by result, and failed writes, from /metrics."""
    text = httpx.get(f"{url}/metrics", headers=AUTH, timeout=30).text
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith("mcpgw_audit_rows_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            out[result] = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("mcpgw_audit_write_failures_total "):
            out["retries"] = int(float(line.rsplit(" ", 1)[1]))
    return out


def _usage_calls(url: str) -> int:
    r = httpx.get(f"{url}/api/v1/usage", params={"by": "server"}, headers=AUTH, timeout=60)
    r.raise_for_status()
    return sum(i["calls"] for i in r.json()["items"] if i["key"] == "fast")


async def _load(args: argparse.Namespace, gateway: GatewayProcess, env: dict[str, str]) -> Tally:
    tally = Tally(half=args.calls // 2)
    target = Target(f"{gateway.url}/mcp", "fast__echo", "modern", BENCH_KEY)
    deadline = time.monotonic() + args.max_seconds
    agents = [
        asyncio.create_task(_agent(target, tally, args.calls, deadline))
        for _ in range(args.concurrency)
    ]
    halfway = asyncio.ensure_future(tally.halfway.wait())
    await asyncio.wait({halfway, *agents}, return_when=asyncio.FIRST_COMPLETED)
    halfway.cancel()
    tally.fault_at = tally.answered
    started = time.monotonic()
    if args.fault == "sigterm":
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(gateway.proc.wait, 120)
        # uvicorn re-raises the signal once it has shut down gracefully: -15 is normal.
        if code not in (0, -signal.SIGTERM):
            raise RuntimeError(f"the gateway exited {code} on SIGTERM")
        again = GatewayProcess(env=env, port=gateway.port, data_dir=gateway.data_dir)
        await asyncio.to_thread(again.start)
        gateway.proc = again.proc
    else:
        await asyncio.to_thread(_restart_postgres, args.down_seconds)
    tally.fault_seconds = time.monotonic() - started
    await asyncio.gather(*agents)
    return tally


def run(args: argparse.Namespace) -> dict[str, Any]:
    backend_port = free_port()
    backend = start_backend(backend_port, "raw")
    pg_url = pg_database() if args.database == "postgresql" else None
    env = {"MCPGW_ALLOW_PRIVATE_URLS": "true"}
    if pg_url:
        env["MCPGW_DATABASE_URL"] = pg_url
        env["MCPGW_AUTO_MIGRATE"] = "true"
    data_dir = tempfile.mkdtemp(prefix="mcpgw-audit-load-")  # kept past stop() for verify
    gateway = GatewayProcess(env=env, data_dir=data_dir)
    try:
        gateway.start()
        gateway.add_remote("fast", f"http://127.0.0.1:{backend_port}/mcp")
        started = time.monotonic()
        tally = asyncio.run(_load(args, gateway, env))
        elapsed = time.monotonic() - started
        if args.fault == "sigterm":  # no calls are answered while it restarts
            elapsed -= tally.fault_seconds
        rows = _usage_calls(gateway.url)
        fates = _audit_fates(gateway.url)
        gateway.stop()
        verify = subprocess.run(
            [MCPGW, "audit", "verify"],
            env={**os.environ, **env, "MCPGW_DATA_DIR": str(gateway.data_dir)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        spill = Path(str(gateway.data_dir)) / "audit-spill"
        return {
            "database": args.database,
            "fault": args.fault,
            "answered": tally.answered,
            "audit_rows": rows,
            "missing": tally.answered - rows,
            "refused": tally.refused,
            "fault_at": tally.fault_at,
            "fault_s": round(tally.fault_seconds, 2),
            "calls_per_s": round(tally.answered / elapsed),
            "verify": verify.stdout.strip().splitlines()[0] if verify.stdout else verify.stderr,
            "spill_left": len(list(spill.glob("*"))) if spill.is_dir() else 0,
            # of the process serving at the end (after a SIGTERM: the restarted one)
            "spilled": fates.get("spilled", 0),
            "reingested": fates.get("reingested", 0),
            "write_retries": fates.get("retries", 0),
        }
    finally:
        gateway.stop()
        backend.kill()
        if pg_url:
            drop_pg_database(pg_url)
        shutil.rmtree(data_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--fault", choices=["sigterm", "db-restart"], default="sigterm")
    parser.add_argument("--calls", type=int, default=50_000, help="answered calls to reach")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--down-seconds",
        type=float,
        default=0,
        help="db-restart: keep PostgreSQL stopped this long (longer than the writer's "
        "retries, ~6 s, makes it spill to its file and read the spill back)",
    )
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args(argv)
    if args.fault == "db-restart" and args.database != "postgresql":
        parser.error("--fault db-restart needs --database postgresql")
    row = run(args)
    print_table("audit under load: nothing lost", [row])
    write_results("audit_load", {"rows": [row], "pid": os.getpid()})
    if row["missing"] != 0 or not str(row["verify"]).startswith("ok"):
        raise SystemExit(f"audit rows lost or chain broken: {row}")
    return [row]


if __name__ == "__main__":
    main()
