"""Sandbox latency per provider: create, exec, stop and resume, and exec overhead.

Each figure is the median of ``--runs`` measurements, taken on the provider
itself (the code the REST API calls), on this machine's real bubblewrap and
Docker engine. "exec overhead" is an exec of ``true`` in the sandbox minus the
same ``true`` started directly on the host as an asyncio subprocess. A provider
that cannot run here (no bwrap, no engine, no image) is reported, not measured.

Targets: exec overhead ≤ 20 ms (local), ≤ 60 ms (docker); resume ≤ 1 s (docker).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import median, percentile, print_table, write_results
from sandboxes.providers.base import ExecRequest, Limits, SandboxProvider, SandboxSpec
from sandboxes.providers.docker import DockerProvider
from sandboxes.providers.local import LocalProvider
from sandboxes.templates import BUILTIN

TARGETS = {
    "local": {"exec_overhead_ms": 20.0},
    "docker": {"exec_overhead_ms": 60.0, "resume_ms": 1000.0},
}


async def _host_true(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _timed(coro: Any) -> float:
    started = time.perf_counter()
    await coro
    return (time.perf_counter() - started) * 1000


async def _measure(provider: SandboxProvider, runs: int, host_ms: float) -> dict[str, Any]:
    limits = Limits(cpus=1.0, memory_mb=256, pids=128, disk_mb=256)
    creates: list[float] = []
    specs: list[SandboxSpec] = []
    try:
        for _ in range(runs):
            spec = SandboxSpec(
                id=f"bench-{uuid.uuid4().hex[:12]}", template=BUILTIN["python"], limits=limits
            )
            specs.append(spec)
            creates.append(await _timed(provider.create(spec)))
            if len(specs) > 3:  # keep a few alive, not all
                await provider.destroy(specs.pop(0))
        spec = specs[-1]
        request = ExecRequest(argv=["true"], timeout=30)
        await provider.exec(spec, request)  # warm
        execs = [await _timed(provider.exec(spec, request)) for _ in range(runs)]
        stops, resumes = [], []
        for _ in range(runs):
            stops.append(await _timed(provider.stop(spec)))
            resumes.append(await _timed(provider.resume(spec)))
        result = await provider.exec(spec, ExecRequest(argv=["python3", "-c", "print(1)"]))
        assert result.stdout == b"1\n", result
    finally:
        for spec in specs:
            await provider.destroy(spec)
    return {
        "create_ms": median(creates),
        "exec_ms": median(execs),
        "exec_p95_ms": percentile(execs, 95),
        "exec_overhead_ms": median(execs) - host_ms,
        "stop_ms": median(stops),
        "resume_ms": median(resumes),
    }


async def run(providers: list[str], runs: int) -> list[dict[str, Any]]:
    host_ms = median(await _host_true(max(runs, 5)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcpgw-bench-sbx-") as tmp:
        available: dict[str, SandboxProvider] = {
            "local": LocalProvider(Path(tmp)),
            "docker": DockerProvider(disk_root=Path(tmp) / "docker"),
        }
        for name in providers:
            provider = available[name]
            row: dict[str, Any] = {"provider": name, "runs": runs, "host_true_ms": host_ms}
            try:
                await provider.check()
                row.update(await _measure(provider, runs, host_ms))
                row["disk"] = provider.describe().get("disk")  # loop-ext4 or measured
                targets = TARGETS.get(name, {})
                row["meets_targets"] = all(row[k] <= v for k, v in targets.items())
            except Exception as exc:  # reported, not measured
                row["skipped"] = str(exc).splitlines()[0][:120]
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--providers", nargs="+", choices=["local", "docker"], default=["local", "docker"]
    )
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.providers, args.runs))
    print_table("sandboxes: create / exec / stop / resume latency (ms, median)", rows)
    write_results("sandboxes", {"runs": args.runs, "targets": TARGETS, "results": rows})
    return rows


if __name__ == "__main__":
    main()
