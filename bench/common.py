"""Helpers shared by the benchmark scripts: a gateway process, statistics, reporting."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

MCPGW = str(Path(sys.executable).parent / "mcpgw")
BENCH_KEY = "mgw_live_bench_bootstrap_key_000000000000"
RESULTS = Path(os.environ.get("MCPGW_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    """``mcpgw serve`` on a free port with a throwaway data dir (embedded default)."""

    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    data_dir: str | None = None  # reuse a data dir (a restart); None: a fresh one

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait for /readyz; returns seconds from spawn to ready."""
        self._tmp = tempfile.TemporaryDirectory(prefix="mcpgw-bench-")
        if self.data_dir is None:
            self.data_dir = self._tmp.name
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        env.update(
            {
                "MCPGW_DATA_DIR": self.data_dir,
                "MCPGW_BOOTSTRAP_API_KEY": BENCH_KEY,
                "MCPGW_LOG_LEVEL": "WARNING",
                # The search model loads once, in the background, a second after start:
                # seconds of CPU that would land in whichever run is measuring then.
                # Benches measure steady state; the search benches load it themselves.
                "MCPGW_SEARCH_PRELOAD": "false",
                **self.env,
            }
        )
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [MCPGW, "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with httpx.Client(timeout=0.5) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mcpgw serve exited with {self.proc.returncode}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > 60:
                    raise RuntimeError("gateway not ready after 60 s")
                time.sleep(0.01)

    def add_remote(self, name: str, url: str, **config: Any) -> dict[str, Any]:
        """Register a Streamable HTTP backend as the `remote` server ``name`` (catalogued
        before this returns; ``config``: more of its config, e.g. ``protocol``); the
        stored server as the REST API answers it."""
        r = httpx.post(
            f"{self.url}/api/v1/servers",
            params={"wait": True},
            json={"name": name, "type": "remote", "config": {"url": url, **config}},
            headers={"Authorization": f"Bearer {BENCH_KEY}"},
            timeout=60,
        )
        r.raise_for_status()
        return dict(r.json())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the gateway process has used so far."""
        if self.proc is None:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of the gateway's event-loop thread ("main") and
        of all its other threads together ("threads": aiosqlite's connection threads,
        executors). Threads that ended are not counted."""
        out = {"main": 0.0, "threads": 0.0}
        if self.proc is None:
            return out
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            out["main" if task.name == str(self.proc.pid) else "threads"] += seconds
        return out

    def writer_cpu_seconds(self) -> float:
        """CPU time so far of the gateway's audit writer process (gateway/audit/child.py),
        which masks, hashes and stores its audit rows on another core."""
        if self.proc is None:
            return 0.0
        total = 0.0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.proc.pid:
                    continue
                if b"gateway.audit.child" not in (entry / "cmdline").read_bytes():
                    continue
            except OSError:  # the process ended meanwhile
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def rss_mib(self) -> float:
        if self.proc is None:
            return 0.0
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        return kib / 1024

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        tmp = getattr(self, "_tmp", None)  # absent when never started
        if tmp is not None:
            tmp.cleanup()


def mcp_post_scope(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, Any]:
    """The ASGI scope of one `POST /mcp` from a loopback agent (in-process benches drive
    the app with it, no HTTP server between)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    if not rows:
        return
    columns = list(rows[0])
    cells = [[_fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.0f}"
    return str(value)


def write_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": datetime.now(UTC).isoformat(), "machine": machine()}
    payload.update(data)
    path.write_text(json.dumps(payload, indent=2))
    print(f"wrote {path}")
    return path


PG_ADMIN = os.environ.get(
    "MCPGW_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pg_database(prefix: str = "mcpgw_bench") -> str:
    """A new, empty PostgreSQL database on the local server; its URL."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


Sample = dict[str, float]


def alternating(
    runs: int,
    switch: Callable[[bool], None],
    names: Iterable[str],
    measure: Callable[[str], Sample],
) -> tuple[dict[str, list[Sample]], dict[str, list[Sample]]]:
    """``runs`` runs with a setting on and off in one process (``switch``), which goes
    first alternating too (a fixed order biases the figures): per target name, its
    samples with the setting on, and off."""
    on: dict[str, list[Sample]] = {}
    off: dict[str, list[Sample]] = {}
    for run in range(runs):
        for state in (True, False) if run % 2 else (False, True):
            switch(state)
            for name in names:
                (on if state else off).setdefault(name, []).append(measure(name))
    return on, off


def on_off_row(on: list[Sample], off: list[Sample]) -> dict[str, float]:
    """Medians of gateway CPU per call on and off, the median of the runs' own ratios
    (the steady figure), the added p50, and what the on runs did."""
    ratios = [
        a["gw_cpu_us"] / b["gw_cpu_us"] if b["gw_cpu_us"] else float("nan")
        for a, b in zip(on, off, strict=True)
    ]
    return {
        "cpu_us_on": median([s["gw_cpu_us"] for s in on]),
        "cpu_us_off": median([s["gw_cpu_us"] for s in off]),
        "cpu_ratio": median(ratios),
        "added_p50_ms": median([a["p50"] - b["p50"] for a, b in zip(on, off, strict=True)]),
        "fast_share_on": median([s["fast_share"] for s in on]),
        "calls_per_s_on": median([s["calls_per_s"] for s in on]),
    }
