"""Peer, side by side: our gateway vs IBM ContextForge on the same backend and load.

ContextForge (PyPI ``mcp-contextforge-gateway``) is installed by this script into a
throwaway venv under ``~/.cache/mcpgw-bench/contextforge-<version>`` (reused across
runs; never a project dependency; it needs Python 3.12 or 3.13, found on this
machine or given with ``--contextforge-python``) and started the way its PyPI
quick start does: the ``mcpgateway`` CLI (uvicorn; ``--contextforge-workers`` adds
uvicorn worker processes), SQLite in a temp dir, auth on (a JWT minted with its
own ``mcpgateway.utils.create_jwt_token``), admin UI off. Two of its defaults are
changed, and only for the bench: SSRF protection would refuse the loopback
backend (``SSRF_ALLOW_LOCALHOST=true``) and its rate limiter allows 100 MCP
requests a minute (``RATE_LIMITING_ENABLED=false``; ours has no per-call limiter).
Its ``/mcp`` is stateless by default, so it opens an upstream MCP session per
``tools/call``; ``--contextforge-stateful`` turns on its stateful sessions, which
bind one upstream session to each downstream ``Mcp-Session-Id`` (2025-11-25 only).

The fast backend (``bench/backend.py``) is registered in both gateways: in
ContextForge as a Streamable HTTP gateway (``POST /gateways``), whose tool it
renames ``<gateway slug>-echo``; in ours as the `remote` server ``fast``. The same
lean load generator (``bench/loadgen.py``) then calls ``echo`` directly, through
our ``/mcp`` and through ContextForge's ``/mcp``, in both protocol eras where
both support them, alternating run by run. Reports p50/p95, calls/s, the added
milliseconds at the median vs direct, gateway CPU per call, RSS, and the ratios
ours/ContextForge pair by pair (same run, same era), median of runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from bench.common import (
    BENCH_KEY,
    GatewayProcess,
    free_port,
    median,
    percentile,
    print_table,
    write_results,
)
from bench.contextforge import (
    DEFAULT_VERSION,
    ERAS,
    PACKAGE,
    ContextForge,
    install,
    tree_memory_mib,
)
from bench.loadgen import Agent, Target
from bench.proxy_overhead import start_backend


def era_supported(target: Target, concurrency: int = 1) -> str | None:
    """None if a few calls in ``target``'s era go through, else why not."""
    try:
        _run(_load(target, concurrency, 2, None))
    except (RuntimeError, ConnectionError, OSError) as exc:
        return str(exc)[:200]
    return None


# --------------------------------------------------------------------------- measuring


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(coro)


async def _load(
    target: Target, concurrency: int, calls: int, cpu: Callable[[], float] | None
) -> tuple[list[float], float, float]:
    """``run_load`` with the gateway's CPU read around the timed calls only.

    Opening sessions and warming up are left out: at 16 agents and a hundred calls
    they would otherwise add a visible share to the CPU per call.
    """
    agents = [Agent(target) for _ in range(concurrency)]
    try:
        for agent in agents:
            await agent.open()
        await asyncio.gather(*(agent.run(3) for agent in agents))  # warm
        per_agent = max(1, calls // concurrency)
        cpu_before = cpu() if cpu else 0.0
        started = time.perf_counter()
        results = await asyncio.gather(*(agent.run(per_agent) for agent in agents))
        elapsed = time.perf_counter() - started
        used = cpu() - cpu_before if cpu else float("nan")
    finally:
        for agent in agents:
            agent.close()
    return [x for r in results for x in r], elapsed, used


def _measure(
    target: Target, concurrency: int, calls: int, cpu: Callable[[], float] | None
) -> dict[str, float]:
    latencies, elapsed, used = _run(_load(target, concurrency, calls, cpu))
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "calls_per_s": len(latencies) / elapsed,
        "cpu_us": used / len(latencies) * 1e6,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument(
        "--calls", type=int, default=2000, help="calls per run, direct and our gateway"
    )
    parser.add_argument(
        "--peer-calls", type=int, default=100, help="calls per run through ContextForge (slow)"
    )
    parser.add_argument("--contextforge-version", default=DEFAULT_VERSION)
    parser.add_argument(
        "--contextforge-workers", type=int, default=1, help="uvicorn workers (quick start: 1)"
    )
    parser.add_argument(
        "--contextforge-stateful",
        action="store_true",
        help="USE_STATEFUL_SESSIONS=true (its default is stateless: an upstream session per call)",
    )
    parser.add_argument("--contextforge-python", help="Python 3.12/3.13 for its venv")
    parser.add_argument(
        "--install-timeout", type=float, default=600, help="seconds for a first install"
    )
    args = parser.parse_args(argv)

    venv, install_seconds = install(
        args.contextforge_version, args.contextforge_python, args.install_timeout
    )
    backend_port = free_port()
    direct_url = f"http://127.0.0.1:{backend_port}/mcp"
    backend = start_backend(backend_port)
    ours = GatewayProcess(env={"MCPGW_ALLOW_PRIVATE_URLS": "true"})
    peer = ContextForge(
        venv, workers=args.contextforge_workers, stateful=args.contextforge_stateful
    )
    rows: list[dict[str, Any]] = []
    ratios: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        ours.start()
        ours.add_remote("fast", direct_url)
        peer_ready = peer.start()
        peer_version = peer.version()
        peer_tool = peer.register(direct_url)
        print(
            f"ContextForge {peer_version}: ready in {peer_ready:.1f} s, "
            f"{args.contextforge_workers} uvicorn worker(s), {peer.processes()} process(es), "
            f"{'stateful' if args.contextforge_stateful else 'stateless'} /mcp, "
            f"tool {peer_tool!r} at {peer.url}/mcp",
            flush=True,
        )
        paths: dict[str, tuple[Target, Callable[[], float] | None, int]] = {
            "direct": (Target(direct_url, "echo", "handshake"), None, args.calls)
        }
        for era, mode in ERAS.items():
            ours_target = Target(f"{ours.url}/mcp", "fast__echo", mode, BENCH_KEY)
            paths[f"ours /mcp {era}"] = (ours_target, ours.cpu_seconds, args.calls)
        for era, mode in ERAS.items():
            peer_target = Target(f"{peer.url}/mcp", peer_tool, mode, peer.token)
            why = era_supported(peer_target)
            if why:
                notes.append(f"ContextForge /mcp {era} skipped: {why}")
                continue
            paths[f"contextforge /mcp {era}"] = (peer_target, peer.cpu_seconds, args.peer_calls)
        for concurrency in args.concurrency:
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
            for run in range(args.runs):  # alternate: the machine is noisy
                for name, (target, cpu, calls) in paths.items():
                    samples[name].append(_measure(target, concurrency, calls, cpu))
                print(f"c={concurrency} run {run + 1}/{args.runs} done", flush=True)
            rows += _rows(concurrency, samples)
            ratios += _ratios(concurrency, samples)
        assert ours.proc is not None
        memory = {"ours": tree_memory_mib(ours.proc.pid), "contextforge": peer.memory()}
    finally:
        peer.stop()
        ours.stop()
        backend.kill()
        backend.wait()

    print_table(f"tools/call: direct, our gateway, ContextForge (median of {args.runs} runs)", rows)
    print_table("ours vs ContextForge, pair by pair (median of per-run ratios)", ratios)
    for name, m in memory.items():
        print(
            f"memory after load, {name}: {m['processes']:.0f} process(es), "
            f"RSS {m['rss_mib']:.0f} MiB, PSS {m['pss_mib']:.0f} MiB (summed over them)"
        )
    for note in notes:
        print(note)
    at16 = [r["throughput_x"] for r in ratios if r["c"] == 16]
    if at16:
        verdict = "met" if min(at16) >= 20 else "not met"
        print(f"target: ours >= 20x ContextForge throughput at c=16: {verdict} ({min(at16):.1f}x)")
    write_results(
        "peer_contextforge",
        {
            "runs": args.runs,
            "calls": {"direct_and_ours": args.calls, "contextforge": args.peer_calls},
            "contextforge": {
                "package": PACKAGE,
                "version": peer_version,
                "venv": str(venv),
                "install_seconds": install_seconds,
                "ready_seconds": peer_ready,
                "workers": args.contextforge_workers,
                "stateful_sessions": args.contextforge_stateful,
                "tool": peer_tool,
                "settings": {
                    k: v
                    for k, v in peer.settings.items()
                    if "SECRET" not in k and "PASSWORD" not in k
                },
            },
            "rows": rows,
            "ratios": ratios,
            "memory": memory,
            "notes": notes,
        },
    )
    return rows


def _rows(concurrency: int, samples: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    direct = samples["direct"]
    rows = []
    for name, runs in samples.items():
        rows.append(
            {
                "c": concurrency,
                "path": name,
                "p50_ms": median([s["p50"] for s in runs]),
                "p95_ms": median([s["p95"] for s in runs]),
                "calls_per_s": median([s["calls_per_s"] for s in runs]),
                "added_p50_ms": median(
                    [s["p50"] - d["p50"] for s, d in zip(runs, direct, strict=True)]
                ),
                "gw_cpu_us_per_call": median([s["cpu_us"] for s in runs]),
            }
        )
    return rows


def _ratios(concurrency: int, samples: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    direct = samples["direct"]
    out = []
    for era in ERAS:
        mine, theirs = samples[f"ours /mcp {era}"], samples.get(f"contextforge /mcp {era}")
        if not theirs:
            continue
        triples = list(zip(mine, theirs, direct, strict=True))
        out.append(
            {
                "c": concurrency,
                "era": era,
                "throughput_x": median(
                    [m["calls_per_s"] / t["calls_per_s"] for m, t, _ in triples]
                ),
                "p50_x": median([t["p50"] / m["p50"] for m, t, _ in triples]),
                "added_p50_x": median(
                    [(t["p50"] - d["p50"]) / max(m["p50"] - d["p50"], 1e-3) for m, t, d in triples]
                ),
                "cpu_per_call_x": median([_div(t["cpu_us"], m["cpu_us"]) for m, t, _ in triples]),
            }
        )
    return out


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")


if __name__ == "__main__":
    main()
