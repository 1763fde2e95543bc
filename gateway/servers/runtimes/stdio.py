"""``npx`` and ``uvx`` adapters: an npm or PyPI package run as a stdio child process.

By default the child runs in a bubblewrap sandbox of its own (see
:mod:`~gateway.servers.runtimes.isolation`): no view of the data directory, a
private home and package cache, the network unless the server is ``offline``.
The child's stderr goes to ``data_dir/logs/servers/<name>.log`` (never to the
gateway's own log stream, which must stay JSON and secret-free).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.errors import InvalidInput
from gateway.procenv import check_env
from gateway.servers.runtimes import isolation
from gateway.servers.runtimes.base import BackendUnavailable, RuntimeContext, ServerSpec
from gateway.servers.runtimes.isolation import Sandbox


def server_log(ctx: RuntimeContext, name: str) -> TextIO:
    folder = ctx.data_dir / "logs" / "servers"
    folder.mkdir(parents=True, exist_ok=True)
    return (folder / f"{name}.log").open("a", encoding="utf-8")


def check_server_env(spec: ServerSpec) -> None:
    """Refuse to start a server whose stored env names a loader or interpreter variable
    (registered before such names were refused); the reason goes to its health."""
    for field, env in (("env", spec.env), ("secrets", spec.secret_env)):
        try:
            check_env(env, field=field)
        except InvalidInput as exc:
            raise BackendUnavailable(f"not started: {exc.message}") from None


def inherited_env(ctx: RuntimeContext) -> dict[str, str]:
    """Host variables a child may see (trust stores, proxies); never the gateway's own."""
    return {
        name: os.environ[name]
        for name in ctx.inherit_env
        if name in os.environ and not name.startswith("MCPGW_")
    }


def stdio_target(
    ctx: RuntimeContext, spec: ServerSpec, command: str, args: list[str], cwd: Path | None = None
) -> Any:
    """A transport that spawns ``command args`` on the host with the server's env and
    secrets (servers opted out of isolation, or where bubblewrap cannot run)."""
    params = StdioServerParameters(
        command=command,
        args=args,
        env={**inherited_env(ctx), **spec.env, **spec.secret_env},
        cwd=cwd,
    )
    return _logged(ctx, spec, lambda errlog: stdio_client(params, errlog=errlog))


def sandboxed_target(
    ctx: RuntimeContext,
    spec: ServerSpec,
    sandbox: Sandbox,
    command: list[str],
    extra_env: Mapping[str, str] | None = None,
) -> Any:
    """A transport that runs ``command`` inside ``sandbox``; env reaches only the inside."""
    env = sandbox.environment(ctx, {**(extra_env or {}), **spec.env, **spec.secret_env})
    return _logged(
        ctx, spec, lambda errlog: isolation.isolated_stdio(sandbox, command, env, errlog)
    )


@asynccontextmanager
async def _logged(ctx: RuntimeContext, spec: ServerSpec, open_: Any) -> AsyncIterator[Any]:
    # One log handle per connection, closed with it (reconnects would leak them).
    errlog = server_log(ctx, spec.name)
    try:
        async with open_(errlog) as streams:
            yield streams
    finally:
        errlog.close()


def _which(name: str) -> str | None:
    # Next to our interpreter first: a uv-managed venv ships `uv`/`uvx` there.
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


async def _prefetch(
    ctx: RuntimeContext, spec: ServerSpec, sandbox: Sandbox, command: list[str]
) -> None:
    """Fetch an offline server's package with network, into its own cache; a failure
    is only logged (an earlier fetch may have filled the cache)."""
    with server_log(ctx, spec.name) as log_file:
        code, _ = await isolation.run_isolated(
            sandbox,
            command,
            sandbox.environment(ctx, {}),
            log_file=log_file,
            timeout=ctx.connect_timeout,
        )
    if code != 0:
        isolation.log.warning(
            "fetching an offline server's package failed; trying the cache",
            extra={"server": spec.name, "exit_code": code},
        )


class NpxConnector:
    """``npx -y <package>[@version] <args>``."""

    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        check_server_env(spec)
        npx = _which("npx")
        if npx is None:
            raise BackendUnavailable("npx is not installed on the gateway host (install Node.js)")
        package = spec.config["package"]
        if spec.config.get("version"):
            package = f"{package}@{spec.config['version']}"
        args = ["-y", package, *spec.config.get("args", [])]
        sandbox = await isolation.plan(ctx, spec)
        if sandbox is None:
            return [stdio_target(ctx, spec, npx, args)]
        sandbox.add_node(npx)
        extra: dict[str, str] = {}
        if sandbox.offline:
            await _prefetch(ctx, spec, sandbox, [npx, "-y", "--package", package, "--", "true"])
            extra["npm_config_offline"] = "true"
        return [sandboxed_target(ctx, spec, sandbox, [npx, *args], extra)]


class UvxConnector:
    """``uvx [--from pkg] <command> <args>``; without uvx, a managed venv per package."""

    async def targets(self, spec: ServerSpec, ctx: RuntimeContext) -> Sequence[Any]:
        check_server_env(spec)
        package = spec.config["package"]
        requirement = (
            f"{package}=={spec.config['version']}" if spec.config.get("version") else package
        )
        command = spec.config.get("command") or package
        args = list(spec.config.get("args", []))
        sandbox = await isolation.plan(ctx, spec)
        uvx = _which("uvx")
        if uvx is not None:
            prefix = (
                ["--from", requirement, command]
                if command != package or spec.config.get("version")
                else [package]
            )
            if sandbox is None:
                return [stdio_target(ctx, spec, uvx, [*prefix, *args])]
            sandbox.add_uv(uvx)
            extra: dict[str, str] = {}
            if sandbox.offline:
                fetch = [uvx, "--from", requirement, "python", "-c", "pass"]
                await _prefetch(ctx, spec, sandbox, fetch)
                extra["UV_OFFLINE"] = "1"
            return [sandboxed_target(ctx, spec, sandbox, [uvx, *prefix, *args], extra)]
        venv = await ensure_venv(ctx.data_dir, requirement, sandbox=sandbox, ctx=ctx, spec=spec)
        executable = venv / "bin" / command
        if not executable.exists():
            raise BackendUnavailable(f"package {package!r} has no command {command!r}")
        if sandbox is None:
            return [stdio_target(ctx, spec, str(executable), args)]
        sandbox.add_tool(venv)
        sandbox.path_dirs.append(str(venv / "bin"))
        return [sandboxed_target(ctx, spec, sandbox, [str(executable), *args])]


_venv_locks: dict[str, asyncio.Lock] = {}


async def ensure_venv(
    data_dir: Path,
    requirement: str,
    *,
    sandbox: Sandbox | None = None,
    ctx: RuntimeContext | None = None,
    spec: ServerSpec | None = None,
) -> Path:
    """Create (once) ``data_dir/venvs/<requirement>-<sha256>`` with the package installed.

    With a sandbox the install (which may run a package's build code) happens inside
    it, the venv its only writable path; otherwise a host process with a fixed
    environment (never the gateway's settings) does it.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in requirement)
    # The digest keeps requirements apart that read the same once made safe
    # (``foo==1.0`` and ``foo__1.0``).
    digest = hashlib.sha256(requirement.encode()).hexdigest()[:12]
    name = f"{safe}-{digest}"
    venv = data_dir / "venvs" / name
    # The ready marker lives beside the venv, outside the tree the install may write:
    # a package's build code could plant a symlink there for the gateway to follow.
    marker = data_dir / "venvs" / f"{name}.ready"
    lock = _venv_locks.setdefault(name, asyncio.Lock())
    async with lock:
        if _is_ready(marker):
            return venv
        venv.mkdir(parents=True, exist_ok=True)
        python = sys.executable if sandbox is None else isolation.base_python()
        for argv in (
            [python, "-m", "venv", str(venv)],
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", requirement],
        ):
            if sandbox is None or ctx is None or spec is None:
                code, output = await _host_step(argv, ctx)
            else:
                sandbox.add_tool(isolation.python_prefix())
                with server_log(ctx, spec.name) as log_file:
                    code, output = await isolation.run_isolated(
                        sandbox,
                        argv,
                        sandbox.environment(ctx, {}),
                        log_file=log_file,
                        timeout=max(ctx.connect_timeout, 300),
                        writable=[venv],
                    )
            if code != 0:
                tail = output.strip().splitlines()[-1:] or [""]
                raise BackendUnavailable(f"installing {requirement!r} failed: {tail[0][:300]}")
        _mark_ready(marker)
    return venv


def _is_ready(marker: Path) -> bool:
    """A regular file at ``marker``, the link itself never followed."""
    try:
        return stat.S_ISREG(os.lstat(marker).st_mode)
    except OSError:
        return False


def _mark_ready(marker: Path) -> None:
    """Create ``marker`` afresh, never through a symlink."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(marker)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    os.close(os.open(marker, flags, 0o644))


async def _host_step(argv: list[str], ctx: RuntimeContext | None) -> tuple[int, str]:
    env = {
        name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ
    }
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**env, **(inherited_env(ctx) if ctx is not None else {})},
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode(errors="replace")
