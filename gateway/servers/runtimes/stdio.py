"""``npx`` and ``uvx`` adapters: an npm or PyPI package run as a stdio child process.

The child's stderr goes to ``data_dir/logs/servers/<name>.log`` (never to the
gateway's own log stream, which must stay JSON and secret-free).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.servers.runtimes.base import BackendUnavailable, RuntimeContext, ServerSpec


def server_log(ctx: RuntimeContext, name: str) -> TextIO:
    folder = ctx.data_dir / "logs" / "servers"
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / f"{name}.log").open("a", encoding="utf-8")


def stdio_target(
    ctx: RuntimeContext, spec: ServerSpec, command: str, args: list[str], cwd: Path | None = None
) -> Any:
    """A transport that spawns ``command args`` with the server's env and secrets."""
    inherited = {
        name: os.environ[name]
        for name in ctx.inherit_env
        if name in os.environ and not name.startswith("MCPGW_")
    }
    params = StdioServerParameters(
        command=command,
        args=args,
        env={**inherited, **spec.env, **spec.secret_env},
        cwd=cwd,
    )
    return stdio_client(params, errlog=server_log(ctx, spec.name))


def _which(name: str) -> str | None:
    # Next to our interpreter first: a uv-managed venv ships `uv`/`uvx` there.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


class NpxConnector:
    """``npx -y <package>[@version] <args>``."""

    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        npx = _which("npx")
        if npx is None:
            raise BackendUnavailable("npx is not installed on the gateway host (install Node.js)")
        package = spec.config["package"]
        if spec.config.get("version"):
            package = f"{package}@{spec.config['version']}"
        return [stdio_target(ctx, spec, npx, ["-y", package, *spec.config.get("args", [])])]


class UvxConnector:
    """``uvx [--from pkg] <command> <args>``; without uvx, a managed venv per package."""

    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        package = spec.config["package"]
        requirement = (
            f"{package}=={spec.config['version']}" if spec.config.get("version") else package
        )
        command = spec.config.get("command") or package
        args = list(spec.config.get("args", []))
        uvx = _which("uvx")
        if uvx is not None:
            prefix = (
                ["--from", requirement, command]
                if command != package or spec.config.get("version")
                else [package]
            )
            return [stdio_target(ctx, spec, uvx, [*prefix, *args])]
        venv = await ensure_venv(ctx.data_dir, requirement)
        executable = venv / "bin" / command
        if not executable.exists():
            raise BackendUnavailable(f"package {package!r} has no command {command!r}")
        return [stdio_target(ctx, spec, str(executable), args)]


_venv_locks: dict[str, asyncio.Lock] = {}


async def ensure_venv(data_dir: Path, requirement: str) -> Path:
    """Create (once) ``data_dir/venvs/<requirement>`` with the package installed."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in requirement)
    venv = data_dir / "venvs" / safe
    lock = _venv_locks.setdefault(safe, asyncio.Lock())
    async with lock:
        if (venv / ".ready").exists():
            return venv
        venv.parent.mkdir(parents=True, exist_ok=True)
        for argv in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement],
        ):
            process = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
            )
            output, _ = await process.communicate()
            if process.returncode != 0:
                tail = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
                raise BackendUnavailable(f"installing {requirement!r} failed: {tail[0][:300]}")
        (venv / ".ready").touch()
    return venv
