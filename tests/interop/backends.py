"""The backends of the interop matrix: which SDKs and versions, and how each one runs.

Our feature servers (tests/fixtures/interop) run in four variants each: stateful or
stateless (`--stateless`), SSE or plain JSON responses (`--json`). The Python `mcp`
SDK 2.x and FastMCP 4 run in the project venv; the last `mcp` 1.x and FastMCP 2.x in
venvs this module creates with uv under the cache directory ($MCPGW_TEST_CACHE, else
~/.cache/mcpgw-tests) and reuses; the TypeScript servers from tests/fixtures/interop/ts
(`npm ci` there on first use). The npm reference servers run with npx: server-everything
over HTTP (`streamableHttp`, `sse`) started here, server-memory and server-filesystem
over stdio started by the gateway itself (`npx` servers).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from mcp.client.stdio import StdioServerParameters

from tests.interop.agents import BASE_ENV, FIXTURES, TS_DIR, npm
from tests.interop.dialects import (
    Dialect,
    EverythingDialect,
    FilesystemDialect,
    MemoryDialect,
    SpecDialect,
)

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MCPGW_TEST_CACHE") or Path.home() / ".cache" / "mcpgw-tests")
NPM_SERVERS = {  # pinned: the newest releases when this was written
    "everything": "@modelcontextprotocol/server-everything@2026.8.31",
    "memory": "@modelcontextprotocol/server-memory@2026.8.31",
    "filesystem": "@modelcontextprotocol/server-filesystem@2026.8.31",
}


class Missing(RuntimeError):
    """Something the matrix needs is not there; the message says what to do."""


@dataclass(frozen=True)
class Sdk:
    """One SDK at one version, with its feature server."""

    key: str
    label: str
    script: str  # under tests/fixtures/interop
    venv: str | None = None  # a pip requirement for a cached venv; None: the project venv
    node_sdk: str | None = None  # "new" / "old": ts/server.mjs with that SDK alias (--sdk)
    unsupported: dict[str, str] = field(default_factory=dict)


SDKS = [
    Sdk("py2", "Python mcp 2.3.0", "py_mcp2.py"),
    Sdk(
        "fm4",
        "FastMCP 4.1.2",
        "fastmcp4.py",
        unsupported={
            "subscribe": "FastMCP 4 has no resource subscriptions (neither "
            "resources/subscribe nor subscriptions/listen)"
        },
    ),
    Sdk("ts32", "TypeScript SDK 1.32.2", "ts/server.mjs", node_sdk="new"),
    Sdk("py1", "Python mcp 1.30.0", "py_mcp1.py", venv="mcp==1.30.0"),
    Sdk(
        "fm2",
        "FastMCP 2.14.7",
        "fastmcp2.py",
        venv="fastmcp==2.14.7",
        unsupported={"pages": "FastMCP 2.x has no list page size"},
    ),
    Sdk("ts17", "TypeScript SDK 1.17.5", "ts/server.mjs", node_sdk="old"),
    Sdk("ts2", "TypeScript SDK v2 2.4.0", "ts/server2.mjs"),  # @modelcontextprotocol/server
]
VARIANTS = {  # name suffix -> server flags
    "sf-sse": [],
    "sf-json": ["--json"],
    "sl-sse": ["--stateless"],
    "sl-json": ["--stateless", "--json"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _uv() -> str | None:
    for candidate in (ROOT / ".tools" / "bin" / "uv", Path(sys.executable).parent / "uv"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("uv")


def cached_venv(requirement: str) -> Path:
    """The python of a venv holding ``requirement`` (``name==version``), made once."""
    venv = CACHE / requirement.replace("==", "-")
    python = venv / "bin" / "python"
    with _locked(CACHE / f"{venv.name}.lock"):
        if (venv / ".installed").exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        uv = _uv()
        if uv:
            steps = [
                [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                [uv, "pip", "install", "--quiet", "--python", str(python), requirement],
            ]
        else:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "--quiet", requirement],
            ]
        for step in steps:
            done = subprocess.run(
                step,
                env={**BASE_ENV, "UV_PYTHON_DOWNLOADS": "never"},
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                raise Missing(
                    f"installing {requirement} into {venv} failed (is PyPI reachable?): "
                    f"{' '.join(step)}\n{done.stderr[-1500:]}"
                )
        (venv / ".installed").write_text(requirement)
        return python


def ts_installed() -> Path:
    """tests/fixtures/interop/ts with its node_modules (`npm ci` on first use)."""
    with _locked(CACHE / "interop-ts.lock"):
        if not (TS_DIR / "node_modules" / ".package-lock.json").exists():
            done = subprocess.run(
                [npm(), "ci", "--no-audit", "--no-fund"],
                cwd=TS_DIR,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                raise Missing(f"`npm ci` in {TS_DIR} failed: {done.stderr[-1500:]}")
    return TS_DIR


def _npx() -> str:
    found = shutil.which("npx")
    if found is None:
        raise Missing("npx is needed for the npm reference servers: apt-get install nodejs npm")
    return found


@dataclass
class Backend:
    """One server behind the gateway (under ``name``) and how to reach it directly."""

    name: str
    sdk: str
    dialect: Dialect
    command: list[str] | None = None  # an HTTP server we start (with PORT in env / --port)
    env: dict[str, str] = field(default_factory=dict)
    path: str = "/mcp"
    transport: str = "streamable_http"  # or "sse" (the legacy HTTP+SSE transport)
    npx: dict[str, Any] | None = None  # a stdio `npx` server the gateway starts itself
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def registration(self) -> dict[str, Any]:
        if self.npx is not None:
            return {"name": self.name, "type": "npx", "config": self.npx}
        config = {"url": self.url, "transport": self.transport, "protocol": "auto"}
        return {"name": self.name, "type": "remote", "config": config}

    def stdio(self) -> StdioServerParameters | None:
        """The same stdio server for a direct connection (None: connect to ``url``)."""
        if self.npx is None:
            return None
        spec = f"{self.npx['package']}@{self.npx['version']}"
        return StdioServerParameters(command=_npx(), args=["-y", spec, *self.npx["args"]])

    def start(self, logs: Path) -> None:
        if self.command is None or self.proc is not None:
            return
        self.port = _free_port()
        args = [a.replace("{port}", str(self.port)) for a in self.command]
        self.log = logs / f"{self.name}.log"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                args,
                env={**BASE_ENV, **self.env, "PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=FIXTURES,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise Missing(
                        f"backend {self.name} did not serve on {self.port}: "
                        f"{self.log.read_text()[-1500:]}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def _sdk_command(sdk: Sdk, flags: list[str]) -> list[str]:
    script = str(FIXTURES / sdk.script)
    if script.endswith(".mjs"):
        modules = ts_installed() / "node_modules"
        if sdk.node_sdk is None and not (modules / "@modelcontextprotocol" / "server").exists():
            # an install from before the v2 SDK joined package.json (npm ci runs once)
            raise Missing(f"{modules} predates the v2 SDK: run `npm ci` in {modules.parent}")
        node = shutil.which("node")
        if node is None:
            raise Missing("node is needed for the TypeScript fixtures: apt-get install nodejs")
        pick = ["--sdk", sdk.node_sdk] if sdk.node_sdk else []
        return [node, script, *pick, "--port", "{port}", *flags]
    python = cached_venv(sdk.venv) if sdk.venv else Path(sys.executable)
    return [str(python), script, "--port", "{port}", *flags]


def catalog() -> list[str]:
    """Every backend name, in matrix order (known without installing anything)."""
    names = [f"{sdk.key}-{variant}" for sdk in SDKS for variant in VARIANTS]
    return [*names, "everything-http", "everything-sse", "memory", "filesystem"]


def make(name: str) -> Backend:
    """The backend called ``name`` (see `catalog`), ready to `start`."""
    for sdk in SDKS:
        for variant, flags in VARIANTS.items():
            if name == f"{sdk.key}-{variant}":
                label = f"{sdk.label} {variant}"
                dialect = SpecDialect(sdk.unsupported)
                return Backend(name, label, dialect, command=_sdk_command(sdk, flags))
    package, _, version = NPM_SERVERS["everything"].rpartition("@")
    if name in ("everything-http", "everything-sse"):
        mode = "streamableHttp" if name == "everything-http" else "sse"
        return Backend(
            name,
            f"server-everything {version} {mode}",
            EverythingDialect(),
            command=[_npx(), "-y", f"{package}@{version}", mode],
            path="/mcp" if mode == "streamableHttp" else "/sse",
            transport="streamable_http" if mode == "streamableHttp" else "sse",
        )
    if name in ("memory", "filesystem"):
        package, _, version = NPM_SERVERS[name].rpartition("@")
        _npx()
        args = ["/tmp"] if name == "filesystem" else []  # inside its sandbox
        stdio_dialect = MemoryDialect() if name == "memory" else FilesystemDialect()
        npx = {"package": package, "version": version, "args": args}
        return Backend(name, f"server-{name} {version} stdio", stdio_dialect, npx=npx)
    raise KeyError(name)


def inspector_installed() -> Path:
    """The Inspector CLI launcher from tests/conformance (`npm ci` there on first use)."""
    from tests.conformance.test_conformance import HERE, INSPECTOR

    with _locked(CACHE / "conformance-npm.lock"):
        if not INSPECTOR.exists():
            done = subprocess.run(
                [npm(), "ci", "--no-audit", "--no-fund"],
                cwd=HERE,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                raise Missing(f"`npm ci` in {HERE} failed: {done.stderr[-1500:]}")
    return INSPECTOR
