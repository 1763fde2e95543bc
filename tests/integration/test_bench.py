"""Each benchmark script runs on a tiny input and prints its table (no timing assertions)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("module", "args", "title"),
    [
        ("bench.startup", ["--runs", "1"], "startup"),
        (
            "bench.proxy_overhead",
            ["--runs", "1", "--calls", "10", "--concurrency", "1", "2"],
            "tools/call: direct vs through the gateway",
        ),
        (
            "bench.audit_cost",
            ["--runs", "1", "--calls", "10", "--concurrency", "1", "--backend", "raw"],
            "audit on vs off",
        ),
        (
            "bench.audit_load",
            ["--calls", "300", "--concurrency", "4"],
            "audit under load: nothing lost",
        ),
        (
            "bench.audit_queries",
            ["--rows", "3000", "--repeats", "2"],
            "audit queries on PostgreSQL",
        ),
        (
            "bench.catalog_scale",
            ["--tools", "20", "--repeats", "3"],
            "catalog scale",
        ),
        ("bench.token_cost", ["--tools", "5", "40"], "token cost of the tool surface"),
        (
            "bench.policy_decision",
            ["--rules", "200", "--runs", "1", "--decisions", "200"],
            "one policy decision in process",
        ),
        (
            "bench.policy_cost",
            ["--runs", "1", "--calls", "10", "--backend", "raw", "--limits", "memory", "redis"],
            "policy + rate limit on vs off",
        ),
        (
            "bench.resilience_cost",
            ["--runs", "1", "--calls", "10", "--backend", "raw"],
            "breakers + retries + 2 replicas on vs off",
        ),
        (
            "bench.cache_cost",
            ["--runs", "1", "--calls", "20", "--backend", "raw"],
            "cache hit vs the same call uncached",
        ),
        (
            "bench.http_layers",
            ["--runs", "1", "--calls", "40", "--layers", "uvicorn", "asgi-min", "raw"],
            "HTTP floor per layer",
        ),
        (
            "bench.hit_profile",
            ["--hits", "50"],
            "a cache hit in process",
        ),
        (
            "bench.transform_cost",
            ["--runs", "1", "--calls", "10"],
            "tool transforms vs none",
        ),
        ("bench.search_quality", [], "search quality"),
        (
            "bench.search_quality.scale",
            ["--tools", "500", "--runs", "1"],
            "tool search at scale",
        ),
        (
            "bench.jobs",
            ["--runs", "1", "--jobs", "3", "--modes", "embedded", "redis"],
            "jobs: submit to events at an SSE client",
        ),
        (
            "bench.generate",
            ["--runs", "1", "--drafts", "1"],
            "server generator: document to draft to loaded server",
        ),
        (
            "bench.auth_overhead",
            ["--runs", "1", "--requests", "20", "--concurrency", "1", "2"],
            "auth overhead",
        ),
        (
            "bench.sandboxes",
            ["--runs", "2", "--providers", "local"],
            "sandboxes: create / exec / stop / resume",
        ),
        (
            "bench.server_isolation",
            ["--runs", "1", "--calls", "3", "--servers", "npx"],
            "server isolation: start-up and per-call cost",
        ),
    ],
)
def test_benchmark_runs_and_reports(
    tmp_path: Path, module: str, args: list[str], title: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**__import__("os").environ, "MCPGW_BENCH_RESULTS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert title in result.stdout
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1
    data = json.loads(written[0].read_text())
    assert data["machine"]["cpus"] >= 1


def test_peer_contextforge_runs_and_reports(tmp_path: Path) -> None:
    """The ContextForge side-by-side bench on a tiny input, against the real ContextForge.

    The first run installs ``mcp-contextforge-gateway`` from PyPI into a venv cached
    under ``~/.cache/mcpgw-bench`` (a few seconds with uv here, about 80 s with pip);
    later runs reuse it. An unreachable PyPI fails here with a message saying so.
    """
    args = ["--runs", "1", "--calls", "10", "--peer-calls", "4", "--concurrency", "1", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "bench.peer_contextforge", *args, "--install-timeout", "240"],
        cwd=ROOT,
        env={**__import__("os").environ, "MCPGW_BENCH_RESULTS": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "ours vs ContextForge, pair by pair" in result.stdout
    data = json.loads((tmp_path / "peer_contextforge.json").read_text())
    assert data["contextforge"]["version"]
    paths = {row["path"] for row in data["rows"]}
    assert {"direct", "ours /mcp 2025-11-25", "contextforge /mcp 2025-11-25"} <= paths
