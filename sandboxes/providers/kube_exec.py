"""Exec, files and usage over the pods/exec subresource, for both Kubernetes providers.

Every exec is a websocket (``kubernetes.stream``; channels 0 stdin, 1 stdout, 2 stderr,
3 the final ``Status`` with the exit code). The Kubernetes exec API has no working
directory or environment, and the older ``v4.channel.k8s.io`` protocol cannot close
stdin, so a small ``sh`` wrapper does the rest:

- argv carries only non-secret values (marker, lengths, timeout, cwd): the apiserver's
  audit log records the exec URL, so environment values travel on stdin, as a
  shell-quoted header of exact length, followed by the command's own stdin of exact
  length (``head -c``) — input ends where it should on either protocol;
- ``setsid`` makes the command a process group whose id is kept in ``/tmp``; a timeout
  kills that group through a second exec, and a watchdog inside the group kills it
  anyway shortly after (when the gateway is gone or the pod is at its process limit).

Files are read, written, listed and deleted by ``sh``/coreutils/findutils inside the
sandbox, so they need the pod running; a stopped sandbox says so (``sandbox_stopped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandboxes.providers.base import (
    WORKSPACE,
    ExecRequest,
    ExecResult,
    FileEntry,
    FileProblem,
    OutputCollector,
    OutputSink,
    ProviderError,
    SandboxSpec,
    Usage,
)
from sandboxes.providers.kube_common import KubeAPI, oom_killed, status_message
from sandboxes.providers.kube_scripts import (
    DELETE,
    FILE_ERRORS,
    KILL,
    LIST,
    READ,
    USAGE,
    WRAP,
    WRITE,
    env_header,
    exit_status,
)

log = logging.getLogger("sandboxes.kubernetes")

_HANDSHAKE = re.compile(r"Handshake status (\d{3})")
_CHUNK = 256 * 1024
_KILL_GRACE = 5.0
_WATCHDOG_GRACE = 3


class PodMissing(ProviderError):
    """The pod to exec in does not exist (stopped, evicted or deleted)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="sandbox_stopped")


class PodNotReady(ProviderError):
    """The API server refused the exec (400): the pod is starting, ending or restarting."""


_MOVED = (PodMissing, PodNotReady)


@dataclass
class _Done:
    status: bytes | BaseException


class _Stream:
    """The websocket of one exec, so another thread can hang it up."""

    def __init__(self) -> None:
        self.ws: Any = None
        self.closed = False

    def hang_up(self) -> None:
        self.closed = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.sock.abort()  # wakes the reader blocked in poll/recv


class KubeExec:
    """Exec, files and usage; subclasses say which pod a sandbox runs in."""

    name: str
    api: KubeAPI
    container: str | None = None

    async def _pod_name(self, spec: SandboxSpec) -> str:
        raise NotImplementedError

    async def _heal(self, spec: SandboxSpec) -> bool:
        """The sandbox should be running but its pod is gone: bring one back (True) or not."""
        return False

    # --- the stream -------------------------------------------------------------------------
    def _pump(
        self,
        pod: str,
        argv: list[str],
        data: bytes | None,
        emit: Callable[[str, bytes], None],
        handle: _Stream,
    ) -> bytes:
        """Blocking: run ``argv`` in ``pod``; output goes to ``emit``; returns channel 3."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream import stream, ws_client

        try:
            ws = stream(
                self.api.exec_api().connect_get_namespaced_pod_exec,
                pod,
                self.api.namespace,
                command=argv,
                container=self.container,
                stdin=data is not None,
                stdout=True,
                stderr=True,
                tty=False,
                binary=True,
                _preload_content=False,
            )
        except ApiException as exc:
            raise self._handshake_error(pod, exc) from exc
        handle.ws = ws
        ws._all = ws_client._IgnoredIO()  # output is consumed here, not accumulated
        if handle.closed:
            handle.hang_up()
        if data is not None:
            threading.Thread(target=self._feed, args=(ws, data), daemon=True).start()

        def drain() -> None:
            for channel, stream_name in ((1, "stdout"), (2, "stderr")):
                chunk = ws.read_channel(channel)
                if chunk:
                    emit(stream_name, chunk)

        try:
            while ws.is_open():
                ws.update(timeout=0.5)
                drain()
        except Exception:  # connection reset, aborted by hang_up
            log.debug("exec stream of %s ended", pod, exc_info=True)
        drain()
        raw = ws.read_channel(3)
        with contextlib.suppress(Exception):
            ws.sock.shutdown()
        return raw if isinstance(raw, bytes) else str(raw).encode()

    @staticmethod
    def _feed(ws: Any, data: bytes) -> None:
        with contextlib.suppress(Exception):
            view = memoryview(data)
            for start in range(0, len(data), _CHUNK):
                ws.write_stdin(bytes(view[start : start + _CHUNK]))
            ws.close_channel(0)  # v5 only; on v4 the wrapper's length framing ends input

    def _handshake_error(self, pod: str, exc: Any) -> ProviderError:
        reason = str(getattr(exc, "reason", "") or exc)
        match = _HANDSHAKE.search(reason)
        status = int(match.group(1)) if match else 0
        body = reason.rsplit("-+-+-", 1)[-1].strip().removeprefix("b'").removesuffix("'")
        message = body if body.startswith("{") else reason
        if status == 404:
            return PodMissing(f"the sandbox has no pod {pod!r} (stopped or deleted): resume it")
        if status == 0:
            return ProviderError(f"cannot open an exec stream to pod {pod!r}: {reason[:300]}")
        if status == 400:
            return PodNotReady(f"exec in pod {pod!r} refused: {status_message(message)}")
        return self.api.failure(status, status_message(message), f"exec in pod {pod!r}")

    def _start(
        self, pod: str, argv: list[str], data: bytes | None
    ) -> tuple[_Stream, asyncio.Queue[tuple[str, bytes] | _Done]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, bytes] | _Done] = asyncio.Queue()
        handle = _Stream()

        def put(item: tuple[str, bytes] | _Done) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone (shutdown)
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            result: bytes | BaseException
            try:
                result = self._pump(pod, argv, data, lambda s, c: put((s, c)), handle)
            except BaseException as exc:
                result = exc
            put(_Done(result))

        threading.Thread(target=run, name=f"kube-exec-{pod}", daemon=True).start()
        return handle, queue

    @staticmethod
    async def _consume(
        queue: asyncio.Queue[tuple[str, bytes] | _Done], collector: OutputCollector
    ) -> bytes:
        while True:
            item = await queue.get()
            if isinstance(item, _Done):
                if isinstance(item.status, BaseException):
                    raise item.status
                return item.status
            await collector.add(*item)

    async def _helper(
        self,
        pod: str,
        argv: list[str],
        data: bytes | None = None,
        *,
        limit: int = 1024 * 1024,
        timeout: float | None = None,
    ) -> tuple[int, bytes, bytes]:
        """Run a short command (no wrapper); (exit code, stdout, stderr)."""
        collector = OutputCollector(limit)
        handle, queue = self._start(pod, argv, data)
        work = asyncio.ensure_future(self._consume(queue, collector))
        try:
            done, _ = await asyncio.wait({work}, timeout=timeout or self.api.options.api_timeout)
        except BaseException:
            handle.hang_up()
            work.cancel()
            raise
        if not done:
            handle.hang_up()
            work.cancel()
            raise ProviderError(f"a helper command in pod {pod!r} did not answer in time")
        code, failure = exit_status(work.result())
        if code is None:
            raise ProviderError(f"a helper command in pod {pod!r} failed: {failure}")
        return code, bytes(collector.buffers["stdout"]), bytes(collector.buffers["stderr"])

    # --- exec -------------------------------------------------------------------------------
    async def exec(
        self, spec: SandboxSpec, request: ExecRequest, sink: OutputSink | None = None
    ) -> ExecResult:
        try:
            return await self._exec_once(spec, request, sink)
        except _MOVED:
            if not await self._heal(spec):
                raise
            return await self._exec_once(spec, request, sink)

    async def _exec_once(
        self, spec: SandboxSpec, request: ExecRequest, sink: OutputSink | None
    ) -> ExecResult:
        pod = await self._pod_name(spec)
        marker = uuid.uuid4().hex
        header = env_header(request.env)
        stdin = request.stdin
        argv = [
            "setsid",
            "-w",
            "/bin/sh",
            "-c",
            WRAP,
            "sh",
            marker,
            str(len(header)),
            str(len(stdin) if stdin is not None else -1),
            str(math.ceil(request.timeout) + _WATCHDOG_GRACE),
            request.cwd,
            *request.argv,
        ]
        started, wall = time.perf_counter(), time.time()
        collector = OutputCollector(request.max_output, sink)
        payload = header + (stdin or b"") if header or stdin is not None else None
        handle, queue = self._start(pod, argv, payload)
        work = asyncio.ensure_future(self._consume(queue, collector))
        timed_out = False
        try:
            done, _ = await asyncio.wait({work}, timeout=request.timeout)
            if not done:
                timed_out = True
                await self._kill(pod, marker)
                done, _ = await asyncio.wait({work}, timeout=_KILL_GRACE)
                if not done:  # something outside the group holds the stream open
                    handle.hang_up()
                    await asyncio.wait({work}, timeout=_KILL_GRACE)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._kill(pod, marker))
            handle.hang_up()
            work.cancel()
            raise
        raw = b""
        if work.done():
            raw = work.result()  # raises PodMissing / ProviderError from the handshake
        else:
            work.cancel()
        code, failure = exit_status(raw)
        result = collector.result(code, started, timed_out=timed_out, timeout=request.timeout)
        if timed_out:
            pass  # collector.result said so
        elif code is None:
            result.error = failure
            result.oom_killed = await self._oom_since(pod, wall)
        elif code == 137:
            result.oom_killed = True
            restarted = await self._oom_since(pod, wall)
            result.error = (
                f"killed: out of memory, the {spec.limits.memory_mb} MiB limit was hit"
                + (" (the container restarted; processes it ran are gone)" if restarted else "")
            )
        if result.oom_killed and not result.error:
            result.error = f"killed: out of memory, the {spec.limits.memory_mb} MiB limit was hit"
        return result

    async def _oom_since(self, pod: str, since: float) -> bool:
        with contextlib.suppress(ProviderError):
            found = await self.api.get("core", "read_namespaced_pod", pod, self.api.namespace)
            return found is not None and oom_killed(found, since)
        return False

    async def _kill(self, pod: str, marker: str) -> None:
        """SIGKILL the process group of one exec; the in-group watchdog is the fallback."""
        with contextlib.suppress(ProviderError):
            await self._helper(pod, ["/bin/sh", "-c", KILL, "sh", marker], timeout=10)

    async def _refresh(self, spec: SandboxSpec) -> bool:
        """The pod a running sandbox had is gone: find its current one (True) or not."""
        return False

    async def _in_pod(
        self, spec: SandboxSpec, argv: list[str], data: bytes | None = None, **kw: Any
    ) -> tuple[int, bytes, bytes]:
        """A helper command in the sandbox's pod, looked up again once if it moved."""
        try:
            return await self._helper(await self._pod_name(spec), argv, data, **kw)
        except _MOVED:
            if not await self._refresh(spec):
                raise
            return await self._helper(await self._pod_name(spec), argv, data, **kw)

    # --- files ------------------------------------------------------------------------------
    async def _file_op(
        self,
        spec: SandboxSpec,
        script: str,
        path: str,
        *extra: str,
        data: bytes | None = None,
        limit: int = 1024 * 1024,
        expected: tuple[int, ...] = (),
    ) -> tuple[int, bytes, bytes]:
        """Run a file script on ``/workspace/path``; exit codes not in ``expected`` that
        mean a known problem become FileProblems."""
        target = f"{WORKSPACE}/{path}".rstrip("/") if path else WORKSPACE
        timeout = self.api.options.api_timeout + max(len(data or b""), limit) / (4 * 1024 * 1024)
        code, out, err = await self._in_pod(
            spec,
            ["/bin/sh", "-c", script, "sh", WORKSPACE, target, *extra],
            data,
            limit=limit,
            timeout=timeout,
        )
        if code == 2:
            raise FileProblem(f"no such file or directory: {path or '/'}")
        if code in FILE_ERRORS and code not in expected:
            message, problem = FILE_ERRORS[code]
            raise FileProblem(message.format(path=path), code=problem)
        return code, out, err

    async def read_file(self, spec: SandboxSpec, path: str, max_bytes: int) -> bytes:
        code, out, err = await self._file_op(spec, READ, path, str(max_bytes), limit=max_bytes)
        if code == 6:
            raise FileProblem(
                f"{path!r} is {out.decode().strip()} bytes, more than the {max_bytes} the "
                "files API returns",
                code="sandbox_file_too_large",
            )
        if code != 0:
            raise ProviderError(f"could not read {path!r}: {err.decode(errors='replace')[:300]}")
        return out

    async def write_file(self, spec: SandboxSpec, path: str, data: bytes) -> None:
        code, _, err = await self._file_op(spec, WRITE, path, str(len(data)), data=data)
        if code == 8:
            raise ProviderError(f"the upload of {path!r} was cut short")
        if code != 0:
            raise ProviderError(f"could not write {path!r}: {err.decode(errors='replace')[:300]}")

    async def list_files(self, spec: SandboxSpec, path: str) -> list[FileEntry] | None:
        code, out, err = await self._file_op(
            spec, LIST, path, limit=64 * 1024 * 1024, expected=(4,)
        )
        if code == 4:
            return None
        if code != 0:
            raise ProviderError(f"could not list {path!r}: {err.decode(errors='replace')[:300]}")
        kinds = {"f": "file", "d": "dir", "l": "symlink"}
        entries = []
        for record in out.split(b"\0"):
            if not record:
                continue
            kind, size, mtime, name = record.decode(errors="replace").split("\t", 3)
            rel = f"{path}/{name}" if path else name
            modified = float(mtime) if mtime else None
            entries.append(FileEntry(name, rel, kinds.get(kind, "other"), int(size), modified))  # type: ignore[arg-type]
        return sorted(entries, key=lambda e: e.name)

    async def delete_file(self, spec: SandboxSpec, path: str) -> None:
        code, _, err = await self._file_op(spec, DELETE, path)
        if code != 0:
            raise ProviderError(f"could not delete {path!r} (exit {code}): {err.decode()[:300]}")

    # --- usage ------------------------------------------------------------------------------
    async def usage(self, spec: SandboxSpec) -> Usage:
        try:
            _, out, _ = await self._in_pod(spec, ["/bin/sh", "-c", USAGE, "sh", WORKSPACE])
        except PodMissing:
            return Usage()
        values: dict[str, int] = {}
        for line in out.decode(errors="replace").splitlines():
            key, _, value = line.partition("=")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
        cpu = values.get("cpu_usec")
        return Usage(
            cpu_seconds=cpu / 1e6 if cpu is not None else None,
            memory_bytes=values.get("memory.current"),
            memory_peak_bytes=values.get("memory.peak"),
            disk_bytes=values.get("disk"),
            processes=values.get("pids.current"),
        )
