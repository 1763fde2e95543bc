"""The contract between the sandbox service and one way of running sandboxes.

A provider owns compute and storage only: ownership, quotas, status bookkeeping,
path confinement and auditing are the service's. Paths handed to a provider are
already normalized: relative to the workspace, POSIX, never ``..`` (``""`` is the
workspace itself). Every method is async and must not block the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

WORKSPACE = "/workspace"

# Called with ("stdout"|"stderr", bytes) as output arrives (streaming execs).
OutputSink = Callable[[str, bytes], Awaitable[None]]


class ProviderError(Exception):
    """A provider could not do what was asked; ``message`` is safe to show."""

    def __init__(self, message: str, *, code: str = "sandbox_provider_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ProviderUnavailable(ProviderError):
    """The provider's runtime (bwrap, the Docker engine, an image) is missing."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="sandbox_provider_unavailable")


class FileProblem(ProviderError):
    """A path does not exist, is of the wrong kind, or is too large."""

    def __init__(self, message: str, *, code: str = "sandbox_file_not_found") -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class Limits:
    cpus: float
    memory_mb: int
    pids: int
    disk_mb: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "cpus": self.cpus,
            "memory_mb": self.memory_mb,
            "pids": self.pids,
            "disk_mb": self.disk_mb,
        }


@dataclass(frozen=True)
class TemplateSpec:
    """What a sandbox is made from: an image (docker) and the languages it runs."""

    name: str
    image: str | None
    languages: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass
class SandboxSpec:
    """Everything a provider needs to act on one sandbox."""

    id: str
    template: TemplateSpec
    limits: Limits
    network: Literal["none", "egress"] = "none"
    # What create() returned, kept in the database between calls and restarts.
    state: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecRequest:
    argv: list[str]
    cwd: str = WORKSPACE  # absolute, inside /workspace or /tmp (checked by the service)
    env: dict[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    timeout: float = 60.0
    max_output: int = 1024 * 1024  # per stream


@dataclass
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int | None  # None: killed before it could exit (timeout)
    duration_ms: float
    timed_out: bool = False
    truncated: bool = False  # stdout or stderr was cut at max_output
    oom_killed: bool = False  # the memory limit killed a process of this exec
    error: str | None = None  # why it failed to run or was killed, for humans


@dataclass
class FileEntry:
    name: str
    path: str  # relative to the workspace
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    modified: float | None = None  # epoch seconds


@dataclass
class Usage:
    cpu_seconds: float | None = None  # since the sandbox's compute last started
    memory_bytes: int | None = None
    memory_peak_bytes: int | None = None
    disk_bytes: int | None = None
    processes: int | None = None


class OutputCollector:
    """Keeps the first ``limit`` bytes of each stream, forwards chunks to a sink."""

    def __init__(self, limit: int, sink: OutputSink | None = None) -> None:
        self.limit = limit
        self.sink = sink
        self.buffers: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.truncated = False

    def result(
        self, exit_code: int | None, started: float, *, timed_out: bool, timeout: float
    ) -> ExecResult:
        """The exec's outcome from what was collected; ``started`` is its
        ``time.perf_counter()`` start. A timed-out exec has no exit code."""
        result = ExecResult(
            stdout=bytes(self.buffers["stdout"]),
            stderr=bytes(self.buffers["stderr"]),
            exit_code=None if timed_out else exit_code,
            duration_ms=(time.perf_counter() - started) * 1000,
            timed_out=timed_out,
            truncated=self.truncated,
        )
        if timed_out:
            result.error = f"timed out after {timeout:g} s; every process was killed"
        return result

    async def add(self, stream: str, chunk: bytes) -> None:
        buffer = self.buffers[stream]
        room = self.limit - len(buffer)
        if room <= 0:
            self.truncated = True
            return
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        buffer.extend(chunk)
        if self.sink is not None:
            await self.sink(stream, chunk)


@runtime_checkable
class SandboxProvider(Protocol):
    """One runtime for sandboxes (``local`` bubblewrap, ``docker``, …)."""

    name: str

    async def check(self) -> None:
        """Raise :class:`ProviderUnavailable` saying what to install or start."""

    def describe(self) -> dict[str, Any]:
        """The isolation this provider applies (flags, limit mechanism), for humans."""

    async def create(self, spec: SandboxSpec) -> dict[str, Any]:
        """Make the sandbox's storage and compute; returns state to keep in ``spec.state``.

        Must clean up after itself when it fails half-way."""

    async def exec(
        self, spec: SandboxSpec, request: ExecRequest, sink: OutputSink | None = None
    ) -> ExecResult:
        """Run ``request.argv`` inside the sandbox and wait for it.

        Output beyond ``max_output`` per stream is dropped (``truncated``); chunks go
        to ``sink`` as they arrive. Past ``timeout`` the command and every process it
        started are killed (``timed_out``). Limits hit are reported, never raised.
        Cancelling the call kills the command too."""

    async def read_file(self, spec: SandboxSpec, path: str, max_bytes: int) -> bytes:
        """The bytes of a regular file; :class:`FileProblem` if missing, a directory, or
        larger than ``max_bytes`` (code ``sandbox_file_too_large``)."""

    async def write_file(self, spec: SandboxSpec, path: str, data: bytes) -> None:
        """Create or replace a file (parents created), owned by the sandbox user."""

    async def list_files(self, spec: SandboxSpec, path: str) -> list[FileEntry] | None:
        """Entries of a directory, sorted by name; ``None`` if ``path`` is not a
        directory (a file); :class:`FileProblem` if it does not exist."""

    async def delete_file(self, spec: SandboxSpec, path: str) -> None:
        """Remove a file or a directory tree; :class:`FileProblem` if missing."""

    async def stop(self, spec: SandboxSpec) -> None:
        """Free the compute (kill every process); keep the workspace."""

    async def resume(self, spec: SandboxSpec) -> None:
        """Make a stopped sandbox ready to exec again, with its files as they were."""

    async def destroy(self, spec: SandboxSpec) -> None:
        """Remove everything of the sandbox (compute and workspace). Idempotent."""

    async def usage(self, spec: SandboxSpec) -> Usage:
        """CPU, memory and disk as measured now (None where not measurable)."""
