"""Package servers (``npx``, ``uvx``) run in a bubblewrap sandbox of their own.

Any npm or PyPI package runs with whatever the process that starts it can reach.
On the gateway host that would be the secret key and the SQLite database in
``MCPGW_DATA_DIR``, every other server's files, and the gateway's own settings.
So each package server gets, by default where ``bwrap`` works:

- new user, mount, PID, IPC, UTS and cgroup namespaces (``--unshare-all``), no
  capabilities, uid/gid 1000 inside, no nested user namespaces, and it dies with
  the gateway (``--die-with-parent``);
- the host's system directories and the runner it needs (node/npx, uv/uvx, a
  managed venv) read-only, a few ``/etc`` files, a fresh ``/proc``, ``/dev`` and
  ``/tmp``, and a private writable home with its package caches at ``/home/mcp``
  (``MCPGW_DATA_DIR/servers/<id>/home`` on the host) — nothing else of the data
  directory, which is masked with an empty tmpfs if a bound tree contains it;
- the host's network (servers call APIs), or none but its own loopback when the
  server's config says ``offline: true``; the package is then fetched first, in
  the same sandbox with network, and the server runs against the cache;
- an environment made only of what the gateway sets there (``--clearenv``), sent
  to ``bwrap`` on fd 3 (``--args 3``) so values are on no command line, while
  ``bwrap`` itself runs with the gateway's fixed minimal environment.

``MCPGW_SERVER_ISOLATION``: ``auto`` (bwrap where it works, else a warning and
host processes), ``bwrap`` (required: servers fail to start without it), ``none``.
An admin can opt one server out with ``isolation: "none"`` in its config.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.bwrap import SYSTEM_DIRS, etc_binds, system_binds
from gateway.handoff import FD, Handoff, nul_separated
from gateway.servers.runtimes.base import BackendUnavailable, RuntimeContext, ServerSpec

log = logging.getLogger("gateway.servers")

SERVER_UID = 1000
HOME = "/home/mcp"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The /etc entries runners need: TLS trust, name resolution, time zone, the dynamic
# loader's cache, npm's and pip's global settings. passwd and group are generated.
ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "gai.conf",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "npmrc",
    "nsswitch.conf",
    "os-release",
    "pip.conf",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
# Inside, caches live in the private home; the host's own cache locations (among the
# inherited variables) would point at paths that are not there.
_HOME_ENV = {
    "HOME": HOME,
    "USER": "mcp",
    "LOGNAME": "mcp",
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",  # noqa: S108 (the sandbox's own tmpfs)
    "XDG_CACHE_HOME": f"{HOME}/.cache",
    "npm_config_cache": f"{HOME}/.npm",
    "npm_config_update_notifier": "false",
    "UV_CACHE_DIR": f"{HOME}/.cache/uv",
}
_NOT_INHERITED = frozenset(name.upper() for name in (*_HOME_ENV, "NPM_CONFIG_CACHE"))


@dataclass(frozen=True)
class Bubblewrap:
    """A ``bwrap`` that was seen to work here, and the flags it supports."""

    path: str
    disable_userns: bool


_probe: tuple[Bubblewrap | None, str] | None = None
_probe_lock = asyncio.Lock()
_warned = False


async def _run_quietly(*argv: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"PATH": PATH},
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), 20)
    except TimeoutError:
        process.kill()
        return 1, "timed out"
    return process.returncode or 0, out.decode(errors="replace").strip()


async def find_bubblewrap() -> tuple[Bubblewrap | None, str]:
    """The working ``bwrap`` (probed once: namespaces may be forbidden here), or why not."""
    global _probe
    async with _probe_lock:
        if _probe is None:
            _probe = await _find()
        return _probe


async def _find() -> tuple[Bubblewrap | None, str]:
    path = shutil.which("bwrap")
    if path is None:
        return None, "bubblewrap is not installed (apt-get install -y bubblewrap)"
    _, usage = await _run_quietly(path, "--help")
    bwrap = Bubblewrap(path, disable_userns="--disable-userns" in usage)
    code, out = await _run_quietly(
        *sandbox_flags(bwrap, network=False), *system_binds(), "--proc", "/proc", "--", "true"
    )
    if code != 0:
        return None, f"bubblewrap cannot create namespaces here: {out[-200:] or code}"
    return bwrap, ""


def sandbox_flags(bwrap: Bubblewrap, *, network: bool) -> list[str]:
    """Namespaces, identity and capabilities of every package-server sandbox."""
    flags = [bwrap.path, "--unshare-all", "--unshare-user"]
    if bwrap.disable_userns:
        flags.append("--disable-userns")
    if network:
        flags.append("--share-net")
    return [
        *flags,
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--uid",
        str(SERVER_UID),
        "--gid",
        str(SERVER_UID),
        "--hostname",
        "mcp-server",
    ]


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def in_system_dirs(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (resolved) is already visible through the system binds."""
    roots = [os.path.realpath(top) if os.path.islink(top) else top for top in SYSTEM_DIRS]
    return _under(os.path.realpath(path), roots)


@dataclass
class Sandbox:
    """How one server's processes are wrapped: its home, extra binds and network."""

    bwrap: Bubblewrap
    data_dir: Path
    home: Path  # host side of /home/mcp
    etc: Path  # host folder with the generated passwd and group
    offline: bool
    tools: list[str] = field(default_factory=list)  # read-only: runners outside /usr
    late_binds: list[str] = field(default_factory=list)  # read-only, inside the data dir
    path_dirs: list[str] = field(default_factory=list)  # first on PATH inside

    def add_tool(self, path: str | os.PathLike[str]) -> None:
        """Make a runner (file or folder) visible read-only at its host path."""
        text = os.path.abspath(path)
        home = os.path.expanduser("~")
        if text == "/" or _under(home, [text]):
            # A runner installed straight into / or a home folder: never expose those.
            log.warning("not exposing %s to isolated servers", text)
        elif _under(text, [str(self.data_dir)]):
            self.late_binds.append(text)
        elif not in_system_dirs(text):
            self.tools.append(text)

    def add_node(self, npx: str) -> None:
        """npx and node: npx is a script inside npm's package, run by the node on PATH."""
        node = shutil.which("node") or str(Path(npx).with_name("node"))
        for tool in (npx, node):
            real = os.path.realpath(tool)
            if not in_system_dirs(tool):  # e.g. /opt/node: its bin folder and package
                self.add_tool(os.path.dirname(tool))
                self.add_tool(os.path.dirname(real))
                self.add_tool(Path(real).parents[1])
            self.path_dirs.append(os.path.dirname(tool))

    def add_uv(self, uvx: str) -> None:
        """uvx and the ``uv`` it runs from beside its real path: two binaries only."""
        for path in (uvx, os.path.realpath(uvx)):
            self.add_tool(path)
            self.add_tool(os.path.join(os.path.dirname(path), "uv"))
        self.path_dirs.append(os.path.dirname(uvx))

    def argv(
        self,
        command: list[str],
        *,
        network: bool | None = None,
        writable: Iterable[Path] = (),
    ) -> list[str]:
        """``bwrap … -- command``, environment excluded (it goes through fd 3)."""
        net = not self.offline if network is None else network
        args = [*sandbox_flags(self.bwrap, network=net), "--args", str(FD), *system_binds()]
        args += etc_binds(ETC_ENTRIES)
        args += [
            "--ro-bind",
            str(self.etc / "passwd"),
            "/etc/passwd",
            "--ro-bind",
            str(self.etc / "group"),
            "/etc/group",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",  # noqa: S108 (a fresh tmpfs inside the sandbox)
            "--dir",
            "/run",
            "--bind",
            str(self.home),
            HOME,
        ]
        # Runners and venvs last: they may live under /tmp (then on top of the tmpfs).
        bound: list[str] = []
        for tool in dict.fromkeys(self.tools):
            if os.path.exists(tool):
                args += ["--ro-bind", tool, tool]
                bound.append(tool)
        # Mask the data dir wherever a bind exposes it: a runner folder or a system
        # directory (a data dir under /usr/local/var is visible through /usr).
        data = str(self.data_dir)
        if in_system_dirs(data):
            args += ["--tmpfs", os.path.realpath(data)]
        elif _under(data, bound):
            args += ["--tmpfs", data]
        for path in dict.fromkeys(self.late_binds):
            args += ["--ro-bind", path, path]
        for rw in writable:
            args += ["--bind", str(rw), str(rw)]
        return [*args, "--chdir", HOME, "--", *command]

    def env_args(self, env: Mapping[str, str]) -> bytes:
        """What ``bwrap`` reads on fd 3: a clean environment for the sandboxed process."""
        args = ["--clearenv"]
        for name, value in env.items():
            args += ["--setenv", name, value]
        return nul_separated(args)

    def environment(self, ctx: RuntimeContext, server_env: Mapping[str, str]) -> dict[str, str]:
        """Inherited host variables (trust stores, proxies), the home's, then ``server_env``
        (the server's env and secrets; empty for fetch and install steps)."""
        inherited = {
            name: os.environ[name]
            for name in ctx.inherit_env
            if name in os.environ
            and not name.startswith("MCPGW_")
            and name.upper() not in _NOT_INHERITED
        }
        path = ":".join([*dict.fromkeys(self.path_dirs), PATH])
        return {
            **inherited,
            **_HOME_ENV,
            "PATH": path,
            **server_env,
        }


async def plan(ctx: RuntimeContext, spec: ServerSpec) -> Sandbox | None:
    """The sandbox ``spec`` runs in, or None to run it as a host process.

    Raises BackendUnavailable when the server must not start: isolation required but
    impossible, or an offline server that only isolation could keep offline.
    """
    global _warned
    offline = bool(spec.config.get("offline"))
    if spec.config.get("isolation") == "none":
        return None  # an admin opted this server out
    if ctx.isolation == "none":
        if offline:
            raise BackendUnavailable(
                "config.offline needs isolation, but MCPGW_SERVER_ISOLATION=none"
            )
        return None
    bwrap, reason = await find_bubblewrap()
    if bwrap is None:
        if ctx.isolation == "bwrap":
            raise BackendUnavailable(f"MCPGW_SERVER_ISOLATION=bwrap, but {reason}")
        if offline:
            raise BackendUnavailable(f"config.offline needs isolation, but {reason}")
        if not _warned:
            _warned = True
            log.warning(
                "package servers run as host processes with the gateway's file access",
                extra={"reason": reason, "setting": "MCPGW_SERVER_ISOLATION=auto"},
            )
        return None
    base = server_dir(ctx.data_dir, spec)
    sandbox = Sandbox(
        bwrap=bwrap,
        data_dir=ctx.data_dir,
        home=base / "home",
        etc=ctx.data_dir / "servers" / "_etc",
        offline=offline,
    )
    await asyncio.to_thread(_prepare, sandbox)
    return sandbox


def server_dir(data_dir: Path, spec: ServerSpec) -> Path:
    """Where one server's private files live; by id, so a re-registered name starts fresh."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in spec.id)
    return data_dir / "servers" / safe


def forget(data_dir: Path, server_id: str) -> None:
    """Remove the private files of a removed server (and of its bundle members)."""
    root = data_dir / "servers"
    if not root.is_dir():
        return
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in server_id)
    for child in root.iterdir():
        if child.name == safe or child.name.startswith(safe + "_"):
            shutil.rmtree(child, ignore_errors=True)


def _prepare(sandbox: Sandbox) -> None:
    sandbox.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    sandbox.etc.mkdir(parents=True, exist_ok=True)
    files = {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"mcp:x:{SERVER_UID}:{SERVER_UID}:mcp:{HOME}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nmcp:x:{SERVER_UID}:\nnogroup:x:65534:\n",
    }
    for name, text in files.items():
        target = sandbox.etc / name
        if not target.exists() or target.read_text() != text:
            partial = target.with_suffix(f".{os.getpid()}")
            partial.write_text(text)
            partial.replace(target)


def python_prefix() -> str:
    """The gateway's Python installation (what a managed venv's interpreter links to)."""
    return os.path.realpath(sys.base_prefix)


def base_python() -> str:
    """The gateway's interpreter outside any venv (the gateway's venv is not visible)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


@contextlib.asynccontextmanager
async def isolated_stdio(
    sandbox: Sandbox, command: list[str], env: Mapping[str, str], errlog: TextIO
) -> AsyncIterator[Any]:
    """The SDK's stdio transport around ``sh → bwrap … -- command``.

    The SDK starts the launcher in a new session and, on close, ends its whole process
    group; ``--die-with-parent`` then takes the sandbox's PID namespace down with it.
    """
    with Handoff(sandbox.env_args(env)) as handoff:
        launcher = handoff.wrap(sandbox.argv(command))
        params = StdioServerParameters(
            command=launcher[0], args=launcher[1:], env={}, cwd=str(sandbox.home)
        )
        async with stdio_client(params, errlog=errlog) as streams:
            yield streams


async def run_isolated(
    sandbox: Sandbox,
    command: list[str],
    env: Mapping[str, str],
    *,
    log_file: TextIO,
    timeout: float,
    network: bool = True,
    writable: Iterable[Path] = (),
) -> tuple[int, str]:
    """Run a one-off step (fetch a package, build a venv) in the sandbox, with network
    unless told otherwise; its exit code and output (also appended to ``log_file``)."""
    argv = sandbox.argv(command, network=network, writable=writable)
    with Handoff(sandbox.env_args(env)) as handoff:
        process = await asyncio.create_subprocess_exec(
            *handoff.wrap(argv),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={"PATH": PATH},
            cwd=str(sandbox.home),
            start_new_session=True,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), timeout)
        except BaseException:  # timeout or cancel: the step and its children go
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            raise
    text = out.decode(errors="replace")
    log_file.write(text)
    return process.returncode or 0, text
