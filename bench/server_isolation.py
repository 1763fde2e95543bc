"""Package servers isolated (bubblewrap) vs host processes: start-up and per-call cost.

For each server (``npx`` server-everything, ``uvx`` mcp-server-time) and each mode,
runs alternate (isolated, host, isolated, …; the machine is noisy) and each run
starts the server through the gateway's own connector, exactly as the pool does:
"start" is spawn → ``initialize`` → ``tools/list`` answered; then ``--calls``
sequential ``tools/call`` give the median latency and the CPU per call of the
client (this process) and of the server's whole process tree (read from
``/proc``: the launcher, ``bwrap``, npx/uvx and the server). Package caches are
warm (one unmeasured start per mode first, which fills an isolated server's
private cache; its time is reported as ``cold_start_ms``).

Expected: isolation adds a few milliseconds to start-up (``bwrap`` itself ≈ 6 ms)
and nothing per call (same pipes, same process, once it runs).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from mcp import Client

from bench.common import median, print_table, write_results
from gateway.config import DEFAULT_INHERITED_ENV
from gateway.servers.runtimes import isolation
from gateway.servers.runtimes.base import Connector, RuntimeContext, ServerSpec
from gateway.servers.runtimes.stdio import NpxConnector, UvxConnector

SERVERS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    # name: (type, config, tool, arguments)
    "npx": (
        "npx",
        {"package": "@modelcontextprotocol/server-everything", "args": ["stdio"]},
        "get-sum",
        {"a": 2, "b": 40},
    ),
    "uvx": ("uvx", {"package": "mcp-server-time"}, "get_current_time", {"timezone": "UTC"}),
}
CONNECTORS: dict[str, Connector] = {"npx": NpxConnector(), "uvx": UvxConnector()}
_TICKS = os.sysconf("SC_CLK_TCK")
MODES: tuple[Literal["bwrap", "none"], ...] = ("bwrap", "none")
MEASURES = ("start_ms", "call_ms", "client_cpu_us_per_call", "server_cpu_us_per_call")


async def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def _context(data_dir: Path, mode: Literal["bwrap", "none"]) -> RuntimeContext:
    return RuntimeContext(
        data_dir=data_dir,
        connect_timeout=300,
        allow_private_urls=False,
        inherit_env=DEFAULT_INHERITED_ENV,
        on_list_changed=_noop,
        on_health_changed=_noop,
        isolation=mode,
    )


def _descendants_cpu_s() -> float:
    """CPU seconds (user + system) of every live process descending from this one."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICKS
    ours: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - ours
        ours |= frontier
    return sum(cpu[pid] for pid in ours)


async def _one_run(
    ctx: RuntimeContext, spec: ServerSpec, tool: str, arguments: dict[str, Any], calls: int
) -> dict[str, float]:
    started = time.perf_counter()
    targets = await CONNECTORS[spec.type].targets(spec, ctx)
    async with Client(targets[0]) as client:
        tools = await client.list_tools()
        start_ms = (time.perf_counter() - started) * 1000
        assert any(t.name == tool for t in tools.tools), [t.name for t in tools.tools]
        await client.call_tool(tool, arguments)  # warm
        latencies = []
        server_cpu, client_cpu = _descendants_cpu_s(), time.process_time()
        for _ in range(calls):
            began = time.perf_counter()
            result = await client.call_tool(tool, arguments)
            latencies.append((time.perf_counter() - began) * 1000)
            assert not result.is_error, result
        client_cpu = time.process_time() - client_cpu
        server_cpu = _descendants_cpu_s() - server_cpu
    return {
        "start_ms": start_ms,
        "call_ms": median(latencies),
        "client_cpu_us_per_call": client_cpu / calls * 1e6,
        "server_cpu_us_per_call": server_cpu / calls * 1e6,
    }


async def _launcher_ms(ctx: RuntimeContext, runs: int) -> dict[str, Any]:
    """The sandbox alone: ``true`` through the launcher (fd handoff, sh, bwrap) vs on the host."""
    spec = ServerSpec(id="bench-true", name="bench-true", type="npx", config={})
    sandbox = await isolation.plan(ctx, spec)
    assert sandbox is not None, "bubblewrap is needed"
    host, boxed = [], []
    sink = io.StringIO()
    for _ in range(max(runs, 10)):
        began = time.perf_counter()
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()
        host.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        code, _ = await isolation.run_isolated(
            sandbox, ["true"], {"PATH": isolation.PATH}, log_file=sink, timeout=30
        )
        boxed.append((time.perf_counter() - began) * 1000)
        assert code == 0
    return {
        "server": "(true)",
        "mode": "isolated - host",
        "runs": len(boxed),
        "start_ms": median(boxed) - median(host),
    }


async def run(servers: list[str], runs: int, calls: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mcpgw-bench-iso-") as tmp:
        for name in servers:
            server_type, config, tool, arguments = SERVERS[name]
            contexts = {mode: _context(Path(tmp) / "data", mode) for mode in MODES}
            spec = ServerSpec(
                id=f"bench-{name}", name=f"bench-{name}", type=server_type, config=config
            )
            samples: dict[str, list[dict[str, float]]] = {mode: [] for mode in contexts}
            cold: dict[str, float] = {}
            for mode, ctx in contexts.items():  # fill caches (an isolated home starts empty)
                cold[mode] = (await _one_run(ctx, spec, tool, arguments, 1))["start_ms"]
            for _ in range(runs):
                for mode, ctx in contexts.items():
                    samples[mode].append(await _one_run(ctx, spec, tool, arguments, calls))
            for label, got in samples.items():
                row: dict[str, Any] = {
                    "server": name,
                    "mode": "isolated (bwrap)" if label == "bwrap" else "host process",
                    "runs": runs,
                    "cold_start_ms": cold[label],
                }
                for key in got[0]:
                    row[key] = median([sample[key] for sample in got])
                rows.append(row)
            isolated, host = rows[-2], rows[-1]
            rows.append(
                {
                    "server": name,
                    "mode": "isolated - host",
                    "runs": runs,
                    "cold_start_ms": isolated["cold_start_ms"] - host["cold_start_ms"],
                    **{key: isolated[key] - host[key] for key in MEASURES},
                }
            )
        launcher = await _launcher_ms(_context(Path(tmp) / "data", "bwrap"), runs)
    return [*rows, {key: launcher.get(key, "") for key in rows[0]}]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--servers", nargs="+", choices=sorted(SERVERS), default=sorted(SERVERS))
    args = parser.parse_args(argv)
    rows = asyncio.run(run(args.servers, args.runs, args.calls))
    print_table("server isolation: start-up and per-call cost (ms / µs, median)", rows)
    write_results("server_isolation", {"runs": args.runs, "calls": args.calls, "results": rows})
    return rows


if __name__ == "__main__":
    main()
