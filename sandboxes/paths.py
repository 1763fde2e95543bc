"""Paths, working directories and environments of sandbox requests, checked before use,
and how provider failures become HTTP errors."""

from __future__ import annotations

from collections.abc import Mapping

from gateway import procenv
from gateway.errors import AppError, Conflict, InvalidInput, NotFound, PayloadTooLarge
from sandboxes.providers.base import WORKSPACE, FileProblem, ProviderError, ProviderUnavailable


class Unavailable(AppError):
    status_code = 503
    code = "sandbox_provider_unavailable"


class ProviderFailed(AppError):
    status_code = 502
    code = "sandbox_provider_error"


class FsTimedOut(AppError):
    status_code = 504
    code = "sandbox_fs_timeout"


def no_dots(path: str, what: str) -> list[str]:
    if "\0" in path:
        raise InvalidInput(f"{what} contains a NUL byte", code="sandbox_path_invalid")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidInput(f"{what} {path!r} may not contain '..'", code="sandbox_path_invalid")
    return parts


def workspace_path(path: str) -> str:
    """``path`` (relative, or absolute under /workspace) as a relative POSIX path."""
    if path == WORKSPACE or path.startswith(WORKSPACE + "/"):
        path = path[len(WORKSPACE) :]
    elif path.startswith("/"):
        raise InvalidInput(
            f"path {path!r} is outside the workspace: files live under {WORKSPACE}",
            code="sandbox_path_invalid",
        )
    return "/".join(no_dots(path, "path"))


def exec_cwd(cwd: str | None) -> str:
    """An exec's working directory: under /workspace (default) or /tmp."""
    if not cwd:
        return WORKSPACE
    if cwd == "/tmp" or cwd.startswith("/tmp/"):  # noqa: S108 (the sandbox's own tmpfs)
        return "/" + "/".join(no_dots(cwd, "cwd"))
    rel = workspace_path(cwd)
    return f"{WORKSPACE}/{rel}" if rel else WORKSPACE


def check_env(env: Mapping[str, str], field: str = "env") -> None:
    """Refuse malformed variables (``invalid_env``) and those that make a loader, shell
    or interpreter run code they name (``env_not_allowed``, e.g. ``LD_PRELOAD``), 422.

    The variables reach only the sandboxed process (never a launcher on the host), so
    module search paths such as ``PYTHONPATH`` are allowed; the rest are refused anyway
    as a second line of defence."""
    procenv.check_env(env, field=field, sandboxed=True)


def provider_error(exc: ProviderError) -> AppError:
    if isinstance(exc, ProviderUnavailable):
        return Unavailable(exc.message)
    if isinstance(exc, FileProblem):
        if exc.code == "sandbox_file_not_found":
            return NotFound(exc.message, code=exc.code)
        if exc.code == "sandbox_file_too_large":
            return PayloadTooLarge(exc.message, code=exc.code)
        return InvalidInput(exc.message, code=exc.code)
    if exc.code == "sandbox_fs_timeout":
        return FsTimedOut(exc.message)
    if exc.code in ("sandbox_stopped", "sandbox_disk_limit_mismatch"):
        return Conflict(exc.message, code=exc.code)
    return ProviderFailed(exc.message, code=exc.code)
