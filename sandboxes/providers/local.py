"""``local``: sandboxes as bubblewrap (``bwrap``) namespaces on the gateway's own host.

The embedded default: no daemon, about ten milliseconds per exec. Each sandbox is
a workspace directory on disk plus a cgroup; each exec is a fresh ``bwrap`` with
new user, PID, IPC, UTS, cgroup and network namespaces, the host's system
directories bound read-only, the workspace bound read-write at ``/workspace``, a
tmpfs ``/tmp``, no capabilities, uid/gid 1000, and ``--die-with-parent``. When an
exec ends (or is killed) its PID namespace ends with it, so nothing it started
lives on. ``stop`` kills whatever runs and drops the cgroup; the files stay.
Starting an exec (mount, spawn, registration) and stopping or destroying the
sandbox take the same per-sandbox lock: stop sees every process an exec started,
and no exec starts on a workspace being unmounted.
Where the gateway can mount, the workspace is a loop-mounted ext4 image of the
sandbox's ``disk_mb`` (see :mod:`sandboxes.providers.diskimage`): the disk limit is
the filesystem's size, not a measurement.

What runs on the host before the namespaces exist (``sh`` joining the cgroup,
``prlimit``, ``bwrap`` itself) gets a fixed environment of its own
(:data:`LAUNCHER_ENV`): a caller's ``LD_PRELOAD`` there would run code on the host.
The sandboxed command's environment is built by ``bwrap --clearenv --setenv``, and
every bwrap option (variables, host paths, the generated /etc files) travels in
memory files (``--args FD``, ``--ro-bind-data FD``), never on an argv that host
users or the sandbox's PID 1 (``/proc/1/cmdline``) could read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any

from gateway.bwrap import etc_binds, system_binds
from gateway.handoff import memfd, nul_separated
from sandboxes import blocking
from sandboxes.blocking import BlockingPool
from sandboxes.providers import cgroups, diskimage, localfs
from sandboxes.providers.base import (
    WORKSPACE,
    ExecRequest,
    ExecResult,
    FileEntry,
    OutputCollector,
    OutputSink,
    ProviderError,
    ProviderUnavailable,
    SandboxSpec,
    Usage,
)

SANDBOX_UID = 1000
# The whole environment of the host-side launcher (sh, prlimit, bwrap): nothing of
# the caller's, the template's or the gateway's own.
LAUNCHER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": WORKSPACE,
    "USER": "sandbox",
    "LOGNAME": "sandbox",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "TMPDIR": "/tmp",  # noqa: S108 (the sandbox's own tmpfs)
}
# The few /etc entries programs need; passwd, group, hosts and hostname are generated.
ETC_ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "nsswitch.conf",
    "mime.types",
    "os-release",
    "debian_version",
    "python3",
    "python3.11",
)
# Joins the cgroups named in $MCPGW_CGROUP_PROCS, then becomes bwrap: every process
# of the exec is in the sandbox's cgroup from its first instruction.
_JOIN = (
    'for p in $MCPGW_CGROUP_PROCS; do echo $$ > "$p" || exit 125; done; '
    'unset MCPGW_CGROUP_PROCS; exec "$@"'
)
_KILL_GRACE = 5.0


def _check_env(env: dict[str, str]) -> None:
    # The service refuses these already (sandboxes/paths.check_env); here a NUL would
    # split one --args entry into several bwrap options.
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ProviderError(f"invalid environment variable {name!r}", code="invalid_env")


def _etc_files(uid: int) -> dict[str, str]:
    return {
        "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"sandbox:x:{uid}:{uid}:sandbox:{WORKSPACE}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost sandbox\n::1 localhost ip6-localhost ip6-loopback\n",
        "hostname": "sandbox\n",
    }


class LocalProvider:
    """Bubblewrap sandboxes; workspaces under ``root``."""

    name = "local"

    def __init__(
        self,
        root: Path,
        *,
        bwrap: str | None = None,
        disk_limit: diskimage.Setting = "auto",
        fs: BlockingPool | None = None,
    ) -> None:
        self.root = root
        # the sandbox's uid 1000 is the gateway's own uid outside (bwrap's user namespace)
        self.disks = diskimage.Disks(root, disk_limit)
        # workspace file I/O: the pillar's own bounded, time-limited threads
        self.fs = fs or BlockingPool("sandbox-fs")
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.prlimit = shutil.which("prlimit")
        self._cgroups: cgroups.Cgroups | None = None
        self._cgroups_checked = False
        self._running: dict[str, set[asyncio.subprocess.Process]] = {}
        # per sandbox: held across an exec's mount + spawn + registration in _running,
        # and by resume, stop and destroy
        self._guards: dict[str, asyncio.Lock] = {}
        self._system_args: list[str] | None = None

    # --- set-up ---------------------------------------------------------------------------
    @property
    def limits_mechanism(self) -> str:
        cg = self._cg()
        if cg is not None:
            return cg.version
        return "rlimit" if self.prlimit else "none"

    def _cg(self) -> cgroups.Cgroups | None:
        if not self._cgroups_checked:
            self._cgroups = cgroups.detect()
            self._cgroups_checked = True
        return self._cgroups

    async def check(self) -> None:
        if not os.path.isabs(self.bwrap) or not os.access(self.bwrap, os.X_OK):
            raise ProviderUnavailable(
                "the local sandbox provider needs bubblewrap: apt-get install -y bubblewrap "
                "(or set MCPGW_SANDBOX_PROVIDER=docker)"
            )

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "isolation": [
                "--unshare-all (user, pid, ipc, uts, cgroup, net)",
                "--disable-userns",
                "--die-with-parent",
                "--new-session",
                "--cap-drop ALL",
                f"--uid {SANDBOX_UID} --gid {SANDBOX_UID}",
                "--clearenv (the command's variables only; the launcher's are fixed)",
                "read-only system binds, generated /etc/passwd (--ro-bind-data)",
                "tmpfs /tmp, one writable /workspace",
            ],
            "limits": self.limits_mechanism,
            "disk": self.disks.kind,
            **({"disk_fallback_reason": self.disks.reason} if self.disks.reason else {}),
        }

    def _workspace(self, spec: SandboxSpec) -> Path:
        return self.disks.workspace(spec.id)

    def _guard(self, sandbox_id: str) -> asyncio.Lock:
        return self._guards.setdefault(sandbox_id, asyncio.Lock())

    def _ready(self, spec: SandboxSpec) -> None:
        """Refuse an exec unless the workspace can be bound: there, and (a sandbox with
        an image) the mounted image, never the directory under it."""
        workspace = self._workspace(spec)
        if not workspace.is_dir():
            raise ProviderError(
                f"the workspace of sandbox {spec.id} is gone from {workspace}",
                code="sandbox_workspace_missing",
            )
        if self.disks.kind_of(spec.id) == diskimage.LOOP and not os.path.ismount(workspace):
            raise diskimage.DiskError(f"the disk image of sandbox {spec.id} is not mounted")

    def _system(self) -> list[str]:
        if self._system_args is None:
            self._system_args = [*system_binds(), *etc_binds(ETC_ENTRIES)]
        return self._system_args

    def _options(
        self, spec: SandboxSpec, request: ExecRequest, etc_fds: dict[str, int]
    ) -> list[str]:
        """Every bwrap option (no command): they go through ``--args FD``."""
        args = ["--unshare-all", "--unshare-user", "--disable-userns"]
        if spec.network == "egress":
            args += ["--share-net"]
        args += [
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_UID),
            "--hostname",
            "sandbox",
            *self._system(),
        ]
        for name, fd in etc_fds.items():
            # from memory, not bound from a host directory (its path would show in
            # /proc/self/mountinfo)
            args += ["--ro-bind-data", str(fd), f"/etc/{name}"]
        if spec.network == "egress" and os.path.exists("/etc/resolv.conf"):
            args += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
        tmp_size = str(min(spec.limits.memory_mb, 1024) * 1024 * 1024)
        workspace = self._workspace(spec)
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            tmp_size,
            "--tmpfs",
            "/tmp",  # noqa: S108 (a fresh tmpfs inside the sandbox)
            "--dir",
            "/run",
            "--bind",
            str(workspace),
            WORKSPACE,
            "--chdir",
            request.cwd,
            "--clearenv",
        ]
        for name, value in {**BASE_ENV, **spec.template.env, **request.env}.items():
            args += ["--setenv", name, value]
        return args

    def _launch(self, spec: SandboxSpec, request: ExecRequest) -> tuple[list[str], list[int]]:
        """The host-side command line and the memory files it inherits (the caller
        closes them once the process is started)."""
        _check_env(spec.template.env)
        _check_env(request.env)
        if "\0" in request.cwd:
            raise ProviderError("the working directory contains a NUL byte")
        fds: list[int] = []
        try:
            etc_fds: dict[str, int] = {}
            for name, text in _etc_files(SANDBOX_UID).items():
                etc_fds[name] = memfd(name, text.encode())
                fds.append(etc_fds[name])
            options = self._options(spec, request, etc_fds)
            args_fd = memfd("args", nul_separated(options))
            fds.append(args_fd)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        # bwrap takes the command only from its own argv: the command is the caller's
        # own, and holds no host path.
        argv = [self.bwrap, "--args", str(args_fd), "--", *request.argv]
        if self._cg() is None and self.prlimit:
            limits = spec.limits
            argv = [
                self.prlimit,
                f"--nproc={limits.pids}",
                f"--as={limits.memory_mb * 1024 * 1024 * 4}",  # address space, not RSS
                "--",
                *argv,
            ]
        return argv, fds

    # --- lifecycle --------------------------------------------------------------------------
    async def create(self, spec: SandboxSpec) -> dict[str, Any]:
        await self.check()
        try:
            disk = await self.disks.create(spec.id, spec.limits.disk_mb)
            await self.resume(spec)
        except BaseException:
            await self.destroy(spec)
            raise
        return {
            "workspace": str(self._workspace(spec)),
            "limits": self.limits_mechanism,
            "disk": disk,
        }

    async def resume(self, spec: SandboxSpec) -> None:
        async with self._guard(spec.id):
            await self._resume(spec)

    async def _resume(self, spec: SandboxSpec) -> None:
        workspace = await self.disks.unpark(spec.id)
        if not workspace.is_dir():
            raise ProviderError(
                f"the workspace of sandbox {spec.id} is gone from {workspace}",
                code="sandbox_workspace_missing",
            )
        cg = self._cg()
        if cg is not None:
            await blocking.to_thread(cg.create, spec.id, spec.limits)

    async def stop(self, spec: SandboxSpec) -> None:
        async with self._guard(spec.id):
            await self._stop(spec)

    async def _stop(self, spec: SandboxSpec) -> None:
        # under the guard: no exec is between its mount and its registration
        procs = list(self._running.get(spec.id, ()))
        for proc in procs:
            self._kill(proc)
        if procs:
            await asyncio.wait(
                [asyncio.ensure_future(p.wait()) for p in procs], timeout=_KILL_GRACE
            )
        cg = self._cg()
        if cg is not None:
            await blocking.to_thread(cg.remove, spec.id)
        # after the kill: the image is unmounted and its loop device freed
        await self.disks.park(spec.id)

    async def destroy(self, spec: SandboxSpec) -> None:
        async with self._guard(spec.id):
            await self._stop(spec)
            await self.disks.remove(spec.id)
        # an exec still waiting for the old lock finds no workspace and refuses
        self._guards.pop(spec.id, None)

    async def close(self) -> None:
        """At shutdown: unmount the workspaces (no exec outlives the gateway, and the
        next use mounts again), so a stopped gateway leaves no loop device behind."""
        await self.disks.detach_all()

    # --- exec -----------------------------------------------------------------------------
    async def exec(
        self, spec: SandboxSpec, request: ExecRequest, sink: OutputSink | None = None
    ) -> ExecResult:
        await self.check()
        cg = self._cg()
        env = dict(LAUNCHER_ENV)  # never the caller's or the template's variables
        collector = OutputCollector(request.max_output, sink)
        # Mount, spawn and registration under the guard stop and destroy take: stop
        # kills every process started, and never unmounts under a bwrap yet to bind.
        async with self._guard(spec.id):
            if (self.disks.base(spec.id) / diskimage.DETACHED).exists():
                raise ProviderError(f"sandbox {spec.id} is stopped", code="sandbox_stopped")
            await self.disks.attach(spec.id)  # mounted again after a restart of the host
            self._ready(spec)
            argv, fds = self._launch(spec, request)
            try:
                if cg is not None:
                    env["MCPGW_CGROUP_PROCS"] = " ".join(cg.procs_files(spec.id))
                    argv = ["/bin/sh", "-c", _JOIN, "sh", *argv]
                    oom_before, pids_before = cg.oom_kills(spec.id), cg.pids_hits(spec.id)
                started = time.perf_counter()
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.PIPE
                    if request.stdin is not None
                    else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=env,
                    pass_fds=fds,
                    start_new_session=True,
                )
            finally:
                for fd in fds:  # the child has its own copies
                    os.close(fd)
            running = self._running.setdefault(spec.id, set())
            running.add(proc)
        timed_out = False
        work = asyncio.ensure_future(
            asyncio.gather(
                self._pump(proc.stdout, "stdout", collector),
                self._pump(proc.stderr, "stderr", collector),
                self._feed(proc, request.stdin),
                proc.wait(),
            )
        )
        try:
            done, _ = await asyncio.wait({work}, timeout=request.timeout)
            if not done:
                timed_out = True
                self._kill(proc)
                await asyncio.wait({work}, timeout=_KILL_GRACE)
            if work.done():
                work.result()
        except BaseException:
            self._kill(proc)
            work.cancel()
            raise
        finally:
            running.discard(proc)
            if not running:
                self._running.pop(spec.id, None)
        code = proc.returncode
        if code is not None and code < 0:
            code = 128 - code
        result = collector.result(code, started, timed_out=timed_out, timeout=request.timeout)
        if cg is not None:
            if cg.oom_kills(spec.id) > oom_before:
                result.oom_killed = True
                result.error = f"out of memory: the {spec.limits.memory_mb} MiB limit was hit"
            elif cg.pids_hits(spec.id) > pids_before and result.error is None:
                result.error = f"the process limit ({spec.limits.pids}) was hit"
        if code == 125 and cg is not None and not result.stdout and result.error is None:
            result.error = "could not join the sandbox's cgroup; is it stopped?"
        return result

    @staticmethod
    async def _pump(
        stream: asyncio.StreamReader | None, name: str, collector: OutputCollector
    ) -> None:
        if stream is None:
            return
        while chunk := await stream.read(65536):
            await collector.add(name, chunk)

    @staticmethod
    async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
        if proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if data:
                proc.stdin.write(data)
                await proc.stdin.drain()
            proc.stdin.close()
            await proc.stdin.wait_closed()

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        # bwrap runs the sandbox's PID 1 with --die-with-parent: killing bwrap ends the
        # PID namespace, and the kernel kills every process left in it.
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    # --- files ----------------------------------------------------------------------------
    # The workspace is mounted for each operation (a stopped sandbox's only for it).
    async def read_file(self, spec: SandboxSpec, path: str, max_bytes: int) -> bytes:
        async with self.disks.use(spec.id) as workspace:
            return await self.fs.run(
                partial(localfs.read_file, workspace, path, max_bytes), key=spec.id
            )

    async def write_file(self, spec: SandboxSpec, path: str, data: bytes) -> None:
        # The sandbox's uid 1000 is the gateway's own uid outside: no chown needed.
        async with self.disks.use(spec.id) as workspace:
            await self.fs.run(partial(localfs.write_file, workspace, path, data, None), key=spec.id)

    async def list_files(self, spec: SandboxSpec, path: str) -> list[FileEntry] | None:
        async with self.disks.use(spec.id) as workspace:
            return await self.fs.run(partial(localfs.list_dir, workspace, path), key=spec.id)

    async def delete_file(self, spec: SandboxSpec, path: str) -> None:
        async with self.disks.use(spec.id) as workspace:
            await self.fs.run(partial(localfs.delete, workspace, path), key=spec.id)

    # --- usage ----------------------------------------------------------------------------
    async def usage(self, spec: SandboxSpec) -> Usage:
        workspace = self._workspace(spec)
        if self.disks.kind_of(spec.id) == diskimage.LOOP:
            # what the image holds (None while stopped: the last figure stands)
            disk = await self.fs.run(
                partial(self.disks.used_bytes, spec.id), key=spec.id, what="measuring the disk"
            )
        else:
            disk = await self.fs.run(
                partial(localfs.disk_usage, workspace), key=spec.id, what="measuring the disk"
            )
        usage = Usage(disk_bytes=disk)
        cg = self._cg()
        if cg is not None:
            measured = await self.fs.run(partial(cg.measure, spec.id), key=spec.id)
            usage.cpu_seconds = measured.cpu_seconds
            usage.memory_bytes = measured.memory_bytes
            usage.memory_peak_bytes = measured.memory_peak_bytes
            usage.processes = measured.processes
        return usage
