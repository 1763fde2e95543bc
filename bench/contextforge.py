"""IBM ContextForge for the side-by-side bench: installed into a cached throwaway venv
(never a project dependency), started as its PyPI quick start does, its backend
registered, and its process tree measured. See ``bench/peer_contextforge.py``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.common import (
    free_port,
)
from bench.loadgen import HANDSHAKE

PACKAGE = "mcp-contextforge-gateway"
# The newest release on PyPI when this was written (2026-11); it needs Python 3.12-3.13.
DEFAULT_VERSION = "1.1.0"
CACHE = Path(os.environ.get("MCPGW_BENCH_CACHE") or Path.home() / ".cache" / "mcpgw-bench")
ROOT = Path(__file__).resolve().parents[1]
ADMIN_EMAIL = "admin@example.com"
ERAS = {"2026-07-28": "modern", "2025-11-25": "handshake"}


# --------------------------------------------------------------------------- install


def _python_version(exe: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.split()
        return int(out[0]), int(out[1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def find_python(wanted: str | None) -> str:
    """An interpreter ContextForge accepts (3.12 or 3.13): ``wanted`` or one found here."""
    if wanted:
        return wanted
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    candidates: list[str] = []
    for minor in ("3.12", "3.13"):
        candidates += [shutil.which(f"python{minor}") or ""]
        candidates += [str(p / "bin" / "python3") for p in sorted(pyenv.glob(f"{minor}.*"))]
        candidates += [f"/usr/bin/python{minor}", f"/usr/local/bin/python{minor}"]
    for exe in candidates:
        if exe and Path(exe).exists() and _python_version(exe) in {(3, 12), (3, 13)}:
            return exe
    raise SystemExit(
        f"{PACKAGE} needs Python 3.12 or 3.13 and none was found here "
        "(pass one with --contextforge-python)"
    )


def _uv() -> str | None:
    for candidate in (ROOT / ".tools" / "bin" / "uv", Path(sys.executable).parent / "uv"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("uv")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(version: str, python: str | None, timeout: float) -> tuple[Path, float | None]:
    """The cached venv with ContextForge ``version``; (venv, install seconds or None if cached)."""
    venv = CACHE / f"contextforge-{version}"
    marker = venv / ".mcpgw-bench-installed"
    with _locked(CACHE / f"contextforge-{version}.lock"):
        if marker.exists():
            return venv, None
        shutil.rmtree(venv, ignore_errors=True)
        interpreter = find_python(python)
        uv = _uv()
        spec = f"{PACKAGE}=={version}"
        if uv:
            steps = [
                [uv, "venv", "--quiet", "--python", interpreter, str(venv)],
                [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), spec],
            ]
        else:
            steps = [
                [interpreter, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", spec],
            ]
        print(f"installing {spec} into {venv} (Python {interpreter}) ...", flush=True)
        started = time.perf_counter()
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        for step in steps:
            left = timeout - (time.perf_counter() - started)
            try:
                subprocess.run(
                    step, env=env, capture_output=True, text=True, timeout=left, check=True
                )
            except subprocess.TimeoutExpired as exc:
                shutil.rmtree(venv, ignore_errors=True)
                raise SystemExit(
                    f"installing {spec} took more than {timeout:.0f} s (is PyPI reachable "
                    f"from here?): {' '.join(step)}"
                ) from exc
            except subprocess.CalledProcessError as exc:
                shutil.rmtree(venv, ignore_errors=True)
                tail = "\n".join((exc.stderr or exc.stdout or "").splitlines()[-15:])
                raise SystemExit(
                    f"installing {spec} failed (is PyPI reachable from here? does the version "
                    f"exist?): {' '.join(step)}\n{tail}"
                ) from exc
        seconds = time.perf_counter() - started
        marker.write_text(json.dumps({"version": version, "install_seconds": seconds}))
        print(f"installed {spec} in {seconds:.1f} s", flush=True)
        return venv, seconds


# --------------------------------------------------------------------------- processes


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += _children(current)
    return tree


def tree_memory_mib(pid: int) -> dict[str, float]:
    """RSS and PSS summed over a process and its descendants (forked workers count).

    Forked children share copy-on-write pages, which a sum of RSS counts once per
    process; PSS splits shared pages between their sharers, so its sum is fair.
    """
    totals = {"rss": 0, "pss": 0}
    members = process_tree(pid)
    for member in members:
        for kind, name, key in (("rss", "status", "VmRSS:"), ("pss", "smaps_rollup", "Pss:")):
            with contextlib.suppress(OSError, StopIteration, ValueError):
                lines = Path(f"/proc/{member}/{name}").read_text().splitlines()
                totals[kind] += next(int(x.split()[1]) for x in lines if x.startswith(key))
    return {
        "processes": len(members),
        "rss_mib": totals["rss"] / 1024,
        "pss_mib": totals["pss"] / 1024,
    }


def tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the live process tree has used so far."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class ContextForge:
    """ContextForge's ``mcpgateway`` CLI on a free loopback port, SQLite in a temp dir."""

    venv: Path
    workers: int = 1
    stateful: bool = False
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    token: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def version(self) -> str:
        return subprocess.run(
            [self.python, "-c", "import mcpgateway; print(mcpgateway.__version__)"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    def start(self, timeout: float = 180) -> float:
        """Start, wait for /health, mint an admin JWT; returns seconds to ready."""
        self._tmp = tempfile.TemporaryDirectory(prefix="mcpgw-bench-contextforge-")
        data = Path(self._tmp.name)
        self.settings = {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": f"sqlite:///{data / 'mcp.db'}",
            "AUTH_REQUIRED": "true",
            "JWT_SECRET_KEY": secrets.token_urlsafe(48),
            "AUTH_ENCRYPTION_SECRET": secrets.token_urlsafe(48),
            "PLATFORM_ADMIN_EMAIL": ADMIN_EMAIL,
            "PLATFORM_ADMIN_PASSWORD": f"Bench-{secrets.token_urlsafe(18)}-1a!",
            "DEFAULT_USER_PASSWORD": f"Bench-{secrets.token_urlsafe(18)}-1a!",
            "BASIC_AUTH_PASSWORD": f"Bench-{secrets.token_urlsafe(18)}-1a!",
            "MCPGATEWAY_UI_ENABLED": "false",
            "MCPGATEWAY_ADMIN_API_ENABLED": "false",
            "LOG_LEVEL": "ERROR",
            # Bench-only departures from its defaults (see the module docstring).
            "SSRF_ALLOW_LOCALHOST": "true",
            "RATE_LIMITING_ENABLED": "false",
            # Its default: stateless /mcp, so no Mcp-Session-Id and a new upstream MCP
            # session per tools/call; stateful sessions bind one upstream session to
            # each downstream session (as ours pools them).
            "USE_STATEFUL_SESSIONS": "true" if self.stateful else "false",
        }
        drop = ("MCPGW_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update(self.settings)
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        self._env = env
        self._log = (data / "contextforge.log").open("wb")
        command = [self.python, "-m", "mcpgateway.cli", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(self.workers)]
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            command,
            cwd=data,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: workers die with it
        )
        with httpx.Client(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"ContextForge exited with {self.proc.returncode}" + self.log_tail()
                    )
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(
                        f"ContextForge not healthy after {timeout:.0f} s" + self.log_tail()
                    )
                time.sleep(0.1)
        ready = time.perf_counter() - started
        mint = [self.python, "-m", "mcpgateway.utils.create_jwt_token"]
        mint += ["--username", ADMIN_EMAIL, "--exp", "240"]
        # One argument: a URL-safe secret can start with "-", which argparse would read
        # as an option (1 run in 64 failed so).
        mint += [f"--secret={self.settings['JWT_SECRET_KEY']}"]
        minted = subprocess.run(
            mint,
            cwd=data,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        self.token = minted.stdout.strip().splitlines()[-1]
        return ready

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError, AttributeError):
            text = (Path(self._tmp.name) / "contextforge.log").read_text(errors="replace")
            return "\n" + "\n".join(text.splitlines()[-lines:])
        return ""

    def register(self, backend_url: str) -> str:
        """Register the backend as a Streamable HTTP gateway; the echo tool's MCP name."""
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=60) as client:
            r = client.post(
                "/gateways",
                json={"name": "fast", "url": backend_url, "transport": "STREAMABLEHTTP"},
            )
            if r.status_code >= 300:
                raise RuntimeError(f"POST /gateways: HTTP {r.status_code} {r.text[:500]}")
            names = list_tools(client, "/mcp")
        echo = [n for n in names if n == "echo" or n.endswith(("-echo", "_echo", ".echo"))]
        if len(echo) != 1:
            raise RuntimeError(f"no single echo tool in ContextForge's tools/list: {names}")
        return echo[0]

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def memory(self) -> dict[str, float]:
        return tree_memory_mib(self.proc.pid) if self.proc else {}

    def processes(self) -> int:
        return len(process_tree(self.proc.pid)) if self.proc else 0

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.proc:  # stray workers of the group, if the supervisor went first
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(AttributeError):
            self._log.close()
            self._tmp.cleanup()


def list_tools(client: httpx.Client, path: str) -> list[str]:
    """Tool names over MCP (2025-11-25: initialize, then tools/list in its session if any)."""
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": HANDSHAKE}
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "mcpgw-bench", "version": "1"},
        },
    }
    r = client.post(path, json=init, headers=headers)
    if r.status_code != 200:
        raise RuntimeError(f"POST {path} initialize: HTTP {r.status_code} {r.text[:300]}")
    if session := r.headers.get("mcp-session-id"):
        headers["Mcp-Session-Id"] = session
    client.post(
        path, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    r = client.post(path, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
    if r.status_code != 200:
        raise RuntimeError(f"POST {path} tools/list: HTTP {r.status_code} {r.text[:300]}")
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in r.text.splitlines() if line.startswith("data:")]
        answer = json.loads(data[-1])
    else:
        answer = r.json()
    return [str(tool["name"]) for tool in answer["result"]["tools"]]
