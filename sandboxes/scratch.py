"""Throwaway sandboxes for jobs: run one script on the configured provider and remove it.

A generator checks what it made (a skill's scripts) by running it where every other
untrusted code runs: a sandbox of the configured provider (``local`` bubblewrap by
default), with the default limits and no network. The sandbox lives only for the run
— created, given the files, one exec, destroyed — and belongs to no user, so it is not
listed or counted against anyone's quota; the job that ran it records the outcome.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath

from gateway.config import Settings
from sandboxes.providers import build_providers, sandbox_root
from sandboxes.providers.base import (
    WORKSPACE,
    ExecRequest,
    Limits,
    ProviderError,
    SandboxProvider,
    SandboxSpec,
)
from sandboxes.templates import BUILTIN

# Interpreter by file suffix; anything else runs as an executable shell script.
_RUNNERS = {".py": "python3", ".sh": "sh", ".bash": "bash", ".js": "node", ".mjs": "node"}
MAX_OUTPUT = 64 * 1024
# One provider per (kind, sandbox root) in this process: they hold thread pools and
# engine clients that a worker reuses from run to run.
_PROVIDERS: dict[tuple[str, str], SandboxProvider] = {}


@dataclass
class ScriptRun:
    """The outcome of one script run (output cut at ``MAX_OUTPUT`` bytes a stream)."""

    path: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: float
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Did the script exit 0 in time?"""
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def as_dict(self) -> dict[str, object]:
        """The run as JSON (what a job attaches as an ``artifact``)."""
        return {
            "path": self.path,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration_ms": round(self.duration_ms, 1),
            "timed_out": self.timed_out,
            "error": self.error,
        }


def command_for(path: str) -> list[str]:
    """The argv that runs the script at ``path`` (relative to the workspace)."""
    runner = _RUNNERS.get(PurePosixPath(path).suffix, "sh")
    return [runner, f"{WORKSPACE}/{path}"]


def _provider(settings: Settings) -> SandboxProvider:
    key = (settings.sandbox_provider, str(sandbox_root(settings)))
    if key not in _PROVIDERS:
        _PROVIDERS[key] = build_providers(settings)[settings.sandbox_provider]
    return _PROVIDERS[key]


async def run_script(
    settings: Settings, files: dict[str, bytes], path: str, *, timeout: float = 30.0
) -> ScriptRun:
    """Run ``files[path]`` with every file of ``files`` in the workspace of a fresh
    sandbox of the configured provider; the sandbox is destroyed afterwards. A provider
    that cannot run (no bwrap, no engine) gives a run with ``error`` set, not an
    exception."""
    provider = _provider(settings)
    template = BUILTIN["multi" if path.endswith((".js", ".mjs")) else "python"]
    if settings.sandbox_provider == "local":  # the host's own interpreters
        template = type(template)(template.name, None, template.languages)
    spec = SandboxSpec(
        id=f"gen-{uuid.uuid4().hex[:16]}",
        template=template,
        limits=Limits(
            settings.sandbox_cpus,
            settings.sandbox_memory_mb,
            settings.sandbox_pids,
            settings.sandbox_disk_mb,
        ),
        network="none",
    )
    argv = command_for(path)
    try:
        await provider.check()
        spec.state = await provider.create(spec)
    except ProviderError as exc:
        return ScriptRun(path, None, "", "", 0.0, error=exc.message)
    try:
        for name, data in files.items():
            await provider.write_file(spec, name, data)
        result = await provider.exec(
            spec, ExecRequest(argv=argv, timeout=timeout, max_output=MAX_OUTPUT)
        )
    except ProviderError as exc:
        return ScriptRun(path, None, "", "", 0.0, error=exc.message)
    finally:
        with contextlib.suppress(ProviderError):
            await provider.destroy(spec)
    return ScriptRun(
        path=path,
        exit_code=result.exit_code,
        stdout=result.stdout.decode(errors="replace"),
        stderr=result.stderr.decode(errors="replace"),
        duration_ms=result.duration_ms,
        timed_out=result.timed_out,
        error=result.error,
    )
