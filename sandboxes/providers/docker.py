"""``docker``: one long-lived container per sandbox on a Docker engine, via its API.

The container runs ``sleep infinity`` under docker-init; every exec is an API exec
as uid/gid 1000 (``sandbox``). The root filesystem is read-only, ``/tmp`` is a
tmpfs, ``/workspace`` outlives the container (so ``stop`` — a container stop —
frees CPU and memory and keeps files): where the gateway shares the engine's host
and can mount, a loop-mounted ext4 image of ``disk_mb`` bound in (a hard limit, see
:mod:`sandboxes.providers.diskimage`), otherwise a named volume (measured). All
capabilities are dropped, privileges cannot be regained (no-new-privileges),
pids/memory/CPU are limited and the network is ``none`` unless the sandbox may use
it. The SDK blocks, so every call runs in a worker thread. Workspace files are read,
written and listed as tar archives through the engine (see docker_files.py); a
delete runs ``rm`` in the running sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors
from docker.utils.socket import frames_iter

from sandboxes import blocking
from sandboxes.providers import diskimage, docker_files, localfs
from sandboxes.providers.base import (
    WORKSPACE,
    ExecRequest,
    ExecResult,
    FileEntry,
    FileProblem,
    OutputCollector,
    OutputSink,
    ProviderError,
    ProviderUnavailable,
    SandboxSpec,
    Usage,
)

log = logging.getLogger("sandboxes.docker")
T = TypeVar("T")

USER = "1000:1000"
LABEL = "mcpgw.sandbox"
ENGINE_HINT = (
    "the docker sandbox provider needs a Docker engine: apt-get install -y docker.io && "
    "(dockerd >/var/log/dockerd.log 2>&1 &)"
)
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": WORKSPACE,
    "USER": "sandbox",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}
# The command becomes a process group of its own whose id lands in /tmp, so a timeout
# kills it with every child it started (and nothing else of the sandbox).
_WRAP = (
    'f="/tmp/.mcpgw-exec-$MCPGW_EXEC"; echo $$ > "$f"; unset MCPGW_EXEC; '
    '"$@"; s=$?; rm -f "$f"; exit $s'
)
_KILL_GRACE = 5.0
_MARKER = ".mcpgw-mount-check"  # put in a new image, looked for through the engine


def resource_name(sandbox_id: str) -> str:
    return f"mcpgw-sbx-{sandbox_id}"


def _engine_elsewhere(base_url: str | None) -> str | None:
    """Why the engine cannot see this process's mounts (None: it may; create checks)."""
    url = base_url or os.environ.get("DOCKER_HOST") or "unix://"
    if not url.startswith("unix://"):
        return f"the Docker engine is remote ({url.split('://')[0]})"
    return None


class DockerProvider:
    name = "docker"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        disk_root: Path | None = None,
        disk_limit: diskimage.Setting = "auto",
    ) -> None:
        self.base_url = base_url
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        # Images live on the gateway's host and are bind-mounted: the engine must share it.
        self.disks = diskimage.Disks(
            disk_root or Path("/nonexistent"),
            disk_limit if disk_root else "measured",
            owner=(1000, 1000),
        )
        if disk_root is None:
            self.disks.reason = "no directory for workspace images was given (disk_root)"
        elif disk_limit == "auto" and not self.disks.reason:
            self.disks.reason = _engine_elsewhere(base_url)

    # --- plumbing ---------------------------------------------------------------------------
    def _docker(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                try:
                    client = (
                        docker.DockerClient(base_url=self.base_url)
                        if self.base_url
                        else docker.from_env()
                    )
                    client.ping()
                except Exception as exc:
                    raise ProviderUnavailable(f"{ENGINE_HINT} ({exc})") from exc
                self._client = client
            return self._client

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            except docker.errors.APIError as exc:
                explanation = getattr(exc, "explanation", None) or str(exc)
                raise ProviderError(f"Docker engine: {explanation}") from exc

        return await blocking.to_thread(run)

    async def check(self) -> None:
        client = await blocking.to_thread(self._docker)
        try:
            await blocking.to_thread(client.ping)
        except Exception as exc:
            with self._lock:
                self._client = None
            raise ProviderUnavailable(f"{ENGINE_HINT} ({exc})") from exc

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.name,
            "isolation": [
                "read_only root filesystem",
                "tmpfs /tmp (nosuid, nodev)",
                "/workspace: a loop-mounted ext4 image (bind)"
                if self.disks.kind == diskimage.LOOP
                else "/workspace: a named volume",
                f"user {USER} (non-root)",
                "cap_drop ALL",
                "security_opt no-new-privileges",
                "network_mode none (unless egress is allowed)",
                "pids_limit, mem_limit = memswap_limit, nano_cpus",
                "init (docker-init as PID 1)",
            ],
            "limits": "docker",
            "disk": self.disks.kind,
            **({"disk_fallback_reason": self.disks.reason} if self.disks.reason else {}),
        }

    def _container(self, spec: SandboxSpec) -> Any:
        try:
            return self._docker().containers.get(resource_name(spec.id))
        except docker.errors.NotFound as exc:
            raise ProviderError(
                f"the container of sandbox {spec.id} is gone", code="sandbox_container_missing"
            ) from exc

    # --- lifecycle --------------------------------------------------------------------------
    async def create(self, spec: SandboxSpec) -> dict[str, Any]:
        await self.check()
        image = spec.template.image
        if not image:
            raise ProviderError(f"template {spec.template.name!r} names no image for docker")
        try:
            await blocking.to_thread(self._docker().images.get, image)
        except docker.errors.ImageNotFound as exc:
            raise ProviderUnavailable(
                f"the image {image} of template {spec.template.name!r} is missing: run "
                f"`mcpgw sandboxes image build --template {spec.template.name}`"
            ) from exc
        try:
            bind = None
            if self.disks.kind == diskimage.LOOP:
                if await self.disks.create(spec.id, spec.limits.disk_mb) == diskimage.LOOP:
                    bind = str(self.disks.workspace(spec.id))
                    await blocking.to_thread(self._mark, spec, True)
                else:  # auto fell back: a named volume, as before
                    await self.disks.remove(spec.id)
            container = await self._call(self._run, spec, image, bind)
            if bind and not await self._engine_sees_mount(spec):
                await self.destroy(spec)
                return await self.create(spec)  # now with a named volume
        except BaseException:
            await self.destroy(spec)
            raise
        if bind:
            return {"container": container.id, "workspace": bind, "image": image, "disk": "loop"}
        return {"container": container.id, "volume": resource_name(spec.id), "image": image}

    def _mark(self, spec: SandboxSpec, present: bool) -> None:
        marker = self.disks.workspace(spec.id) / _MARKER
        if present:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    async def _engine_sees_mount(self, spec: SandboxSpec) -> bool:
        """Whether the container got the image, not the empty directory under it (an
        engine in another mount namespace or on another host). Checked on every
        create: one HEAD request. Falls back to named volumes for good if not."""
        seen = await self._archive(docker_files.stat, spec, _MARKER) is not None
        await blocking.to_thread(self._mark, spec, False)
        if not seen:
            self.disks.reason = "the Docker engine does not see the gateway's mounts"
            log.warning(
                "docker sandbox workspaces fall back to named volumes: no hard disk limit",
                extra={"reason": self.disks.reason},
            )
        return seen

    def _run(self, spec: SandboxSpec, image: str, bind: str | None) -> Any:
        client = self._docker()
        name = resource_name(spec.id)
        labels = {LABEL: spec.id}
        if bind is None:
            client.volumes.create(name=name, labels=labels)
        limits = spec.limits
        memory = limits.memory_mb * 1024 * 1024
        tmp_size = min(limits.memory_mb, 1024) * 1024 * 1024
        return client.containers.run(
            image,
            ["sleep", "infinity"],
            name=name,
            hostname="sandbox",
            detach=True,
            init=True,
            user=USER,
            working_dir=WORKSPACE,
            environment={**BASE_ENV, **spec.template.env},
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={tmp_size},mode=1777"},  # noqa: S108
            volumes={bind or name: {"bind": WORKSPACE, "mode": "rw"}},
            network_mode="bridge" if spec.network == "egress" else "none",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=limits.pids,
            mem_limit=memory,
            memswap_limit=memory,
            nano_cpus=int(limits.cpus * 1e9),
            labels=labels,
        )

    async def stop(self, spec: SandboxSpec) -> None:
        def stop() -> None:
            with contextlib.suppress(docker.errors.NotFound):
                self._docker().containers.get(resource_name(spec.id)).stop(timeout=2)

        await self._call(stop)
        await self.disks.park(spec.id)  # the image is unmounted, its loop device freed

    async def resume(self, spec: SandboxSpec) -> None:
        def start() -> None:
            container = self._container(spec)
            if container.status != "running":
                container.start()

        await self.disks.unpark(spec.id)  # before the start: the bind must find the mount
        await self._call(start)

    async def destroy(self, spec: SandboxSpec) -> None:
        def remove() -> None:
            client = self._docker()
            name = resource_name(spec.id)
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(name).remove(force=True, v=True)
            with contextlib.suppress(docker.errors.NotFound):
                client.volumes.get(name).remove(force=True)

        await self._call(remove)
        await self.disks.remove(spec.id)

    # --- exec -------------------------------------------------------------------------------
    async def exec(
        self, spec: SandboxSpec, request: ExecRequest, sink: OutputSink | None = None
    ) -> ExecResult:
        api = (await blocking.to_thread(self._docker)).api
        marker = uuid.uuid4().hex
        env = {**BASE_ENV, **spec.template.env, **request.env, "MCPGW_EXEC": marker}
        started = time.perf_counter()
        exec_id = (
            await self._call(
                api.exec_create,
                resource_name(spec.id),
                ["setsid", "-w", "/bin/sh", "-c", _WRAP, "sh", *request.argv],
                stdin=request.stdin is not None,
                environment=env,
                workdir=request.cwd,
                user=USER,
            )
        )["Id"]
        sock = await self._call(api.exec_start, exec_id, socket=True)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        raw = getattr(sock, "_sock", sock)

        def read() -> None:
            try:
                for stream, data in frames_iter(sock, tty=False):  # type: ignore[no-untyped-call]
                    name = "stderr" if stream == 2 else "stdout"
                    loop.call_soon_threadsafe(queue.put_nowait, (name, data))
            except Exception:  # closed under us after a kill
                log.debug("exec stream ended", exc_info=True)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        def write() -> None:
            with contextlib.suppress(OSError):
                if request.stdin:
                    raw.sendall(request.stdin)
                raw.shutdown(2 - 1)  # SHUT_WR: the command sees end of input

        collector = OutputCollector(request.max_output, sink)

        async def consume() -> None:
            while (item := await queue.get()) is not None:
                await collector.add(*item)

        # threads of their own: they last as long as the command (never a pool's)
        reader = blocking.in_thread(read, name=f"docker-exec-{spec.id}")
        stdin = request.stdin is not None  # b"" too: the command must see end of input
        writer = blocking.in_thread(write, name="docker-stdin") if stdin else None
        work = asyncio.ensure_future(consume())
        timed_out = False
        restarted = False

        def hang_up() -> None:
            # shutdown() wakes the reader thread blocked in recv(); close() alone does not
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                raw.close()

        try:
            done, _ = await asyncio.wait({work}, timeout=request.timeout)
            if not done:
                timed_out = True
                restarted = not await self._kill(spec, marker)
                done, _ = await asyncio.wait({work}, timeout=_KILL_GRACE)
                if not done:  # something outside the group holds the output open
                    hang_up()
                    await asyncio.wait({work}, timeout=_KILL_GRACE)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._kill(spec, marker))
            hang_up()
            work.cancel()
            raise
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait({reader, *([writer] if writer else [])}, timeout=_KILL_GRACE)
            with contextlib.suppress(OSError):
                sock.close()
        info = await self._call(api.exec_inspect, exec_id)
        code = info.get("ExitCode")
        result = collector.result(code, started, timed_out=timed_out, timeout=request.timeout)
        if timed_out:
            if restarted:
                result.error = (result.error or "") + (
                    " (the sandbox was at its process limit, so it was restarted; files are kept)"
                )
        elif code == 137:
            result.oom_killed = True
            result.error = (
                f"killed (SIGKILL): out of memory, the {spec.limits.memory_mb} MiB limit was hit"
            )
        return result

    async def _kill(self, spec: SandboxSpec, marker: str) -> bool:
        """SIGKILL the process group of one exec (found through its marker file).

        When even that helper cannot start (a fork bomb holds every process slot), the
        container is restarted: everything in it dies, the workspace volume stays.
        Returns False in that case."""
        script = f'f=/tmp/.mcpgw-exec-{marker}; [ -f "$f" ] && kill -9 -"$(cat "$f")"; rm -f "$f"'
        try:
            code, _ = await self._quick(spec, ["/bin/sh", "-c", script])
            if code in (0, 1):
                return True
        except ProviderError:
            pass

        def restart() -> None:
            self._container(spec).restart(timeout=0)

        await self._call(restart)
        return False

    async def _quick(self, spec: SandboxSpec, argv: list[str]) -> tuple[int, bytes]:
        """Run a short helper command as the sandbox user; (exit code, stdout)."""

        def run() -> tuple[int, bytes]:
            container = self._container(spec)
            code, out = container.exec_run(argv, user=USER, demux=True)
            return int(code or 0), (out[0] or b"") if out else b""

        result: tuple[int, bytes] = await self._call(run)
        return result

    # --- files (docker_files.py: the engine's archive endpoint) -----------------------------
    async def _archive(self, helper: Callable[..., T], spec: SandboxSpec, *args: Any) -> T:
        """Run one of :mod:`docker_files`' helpers on the sandbox's container, in a thread."""
        result: T = await self._call(
            lambda: helper(self._docker().api, resource_name(spec.id), *args)
        )
        return result

    async def read_file(self, spec: SandboxSpec, path: str, max_bytes: int) -> bytes:
        async with self.disks.use(spec.id):  # a stopped sandbox's image, for the engine
            return await self._archive(docker_files.read_file, spec, path, max_bytes)

    async def write_file(self, spec: SandboxSpec, path: str, data: bytes) -> None:
        full = FileProblem(
            f"{path!r} does not fit: the workspace is limited to {spec.limits.disk_mb} MiB",
            code="sandbox_disk_full",
        )
        async with self.disks.use(spec.id) as workspace:
            # the engine writes in place: check first rather than leave half a file
            free = await blocking.to_thread(self.disks.free_bytes, spec.id)
            if free is not None and len(data) + 64 * 1024 > free:
                raise full
            try:
                await self._archive(docker_files.write_file, spec, path, data)
            except ProviderError as exc:
                if "no space left on device" not in exc.message.lower():
                    raise
                if free is not None:  # the partial file, through the host's mount
                    with contextlib.suppress(ProviderError, OSError):
                        await blocking.to_thread(localfs.delete, workspace, path)
                raise full from exc

    async def list_files(self, spec: SandboxSpec, path: str) -> list[FileEntry] | None:
        async with self.disks.use(spec.id):
            return await self._archive(docker_files.list_dir, spec, path)

    async def delete_file(self, spec: SandboxSpec, path: str) -> None:
        async with self.disks.use(spec.id):
            exists = await self._archive(docker_files.stat, spec, path)
        if exists is None:
            raise FileProblem(f"no such file or directory: {path}")
        status = await self._call(lambda: self._container(spec).status)
        if status != "running":
            raise ProviderError(
                "deleting files of a stopped docker sandbox needs it running: resume it first",
                code="sandbox_stopped",
            )
        code, _ = await self._quick(spec, ["rm", "-rf", "--", f"{WORKSPACE}/{path}"])
        if code != 0:
            raise ProviderError(f"could not delete {path!r} (exit {code})")

    # --- usage ----------------------------------------------------------------------------
    async def usage(self, spec: SandboxSpec) -> Usage:
        def measure() -> Usage:
            container = self._container(spec)
            if container.status != "running":
                return Usage()
            stats = self._docker().api.stats(container.id, stream=False, one_shot=True)
            memory = stats.get("memory_stats") or {}
            cpu = (stats.get("cpu_stats") or {}).get("cpu_usage") or {}
            pids = (stats.get("pids_stats") or {}).get("current")
            disk = self.disks.used_bytes(spec.id)  # an image: what it holds, no exec
            if disk is None:
                code, out = container.exec_run(["du", "-sb", WORKSPACE], user=USER, demux=True)
                if code == 0 and out and out[0]:
                    with contextlib.suppress(ValueError):
                        disk = int(out[0].split()[0])
            total = cpu.get("total_usage")
            return Usage(
                cpu_seconds=total / 1e9 if total is not None else None,
                memory_bytes=memory.get("usage"),
                memory_peak_bytes=memory.get("max_usage"),
                disk_bytes=disk,
                processes=pids,
            )

        result: Usage = await self._call(measure)
        return result
