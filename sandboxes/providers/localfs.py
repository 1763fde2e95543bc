"""Workspace file operations on the host that never follow a symlink out of the workspace.

Sandboxed code can put symlinks in its workspace (``ln -s /etc/shadow x``). The
gateway reads and writes workspaces from the host, so every path is walked one
component at a time with ``O_NOFOLLOW`` relative to the workspace directory's file
descriptor: a symlink anywhere in the path is refused, not followed, and nothing
a concurrent process does can redirect the walk. Blocking: call in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from sandboxes.providers.base import FileEntry, FileProblem

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):  # the service normalizes; refuse anyway
        raise FileProblem(f"path {path!r} leaves the workspace", code="sandbox_path_invalid")
    return parts


@contextlib.contextmanager
def _dir_fd(root: Path, parts: list[str], *, create: bool = False) -> Iterator[int]:
    """An fd of the directory ``root/parts…``, walked without following symlinks."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts:
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _problem(path: str, exc: OSError) -> FileProblem:
    if exc.errno in (errno.ENOENT,):
        return FileProblem(f"no such file or directory: {path or '/'}")
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return FileProblem(
            f"{path!r} goes through a symlink or a file; the files API does not follow "
            "symlinks (run a command in the sandbox instead)",
            code="sandbox_path_invalid",
        )
    if exc.errno == errno.EISDIR:
        return FileProblem(f"{path!r} is a directory", code="sandbox_path_invalid")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the workspace's filesystem is full
        return FileProblem(
            f"{path!r} does not fit: no space left in the workspace", code="sandbox_disk_full"
        )
    return FileProblem(f"{path!r}: {exc.strerror}", code="sandbox_path_invalid")


def read_file(root: Path, path: str, max_bytes: int) -> bytes:
    parts = _parts(path)
    if not parts:
        raise FileProblem("the workspace is a directory", code="sandbox_path_invalid")
    try:
        with _dir_fd(root, parts[:-1]) as parent:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise FileProblem(
                        f"{path!r} is not a regular file", code="sandbox_path_invalid"
                    )
                if info.st_size > max_bytes:
                    raise FileProblem(
                        f"{path!r} is {info.st_size} bytes, more than the {max_bytes} the files "
                        "API returns",
                        code="sandbox_file_too_large",
                    )
                return handle.read(max_bytes + 1)[:max_bytes]
    except OSError as exc:
        raise _problem(path, exc) from exc


def write_file(root: Path, path: str, data: bytes, owner: tuple[int, int] | None) -> None:
    parts = _parts(path)
    if not parts:
        raise FileProblem("cannot write the workspace itself", code="sandbox_path_invalid")
    try:
        with _dir_fd(root, parts[:-1], create=True) as parent:
            tmp = f".{parts[-1]}.mcpgw-upload-{os.getpid()}"
            fd = os.open(
                tmp,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
                dir_fd=parent,
            )
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    if owner is not None:
                        with contextlib.suppress(PermissionError):
                            os.fchown(handle.fileno(), *owner)
                # rename replaces a file; over a directory it fails (EISDIR)
                os.rename(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=parent)
                raise
    except OSError as exc:
        raise _problem(path, exc) from exc


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def list_dir(root: Path, path: str) -> list[FileEntry] | None:
    parts = _parts(path)
    try:
        if parts:
            with _dir_fd(root, parts[:-1]) as parent:
                info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                return None
        entries = []
        with _dir_fd(root, parts) as fd:
            for name in sorted(os.listdir(fd)):
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                rel = "/".join([*parts, name])
                entries.append(
                    FileEntry(
                        name=name,
                        path=rel,
                        type=_kind(info.st_mode),  # type: ignore[arg-type]
                        size=info.st_size,
                        modified=info.st_mtime,
                    )
                )
        return entries
    except OSError as exc:
        raise _problem(path, exc) from exc


def delete(root: Path, path: str) -> None:
    parts = _parts(path)
    if not parts:
        raise FileProblem("cannot delete the workspace itself", code="sandbox_path_invalid")
    try:
        with _dir_fd(root, parts[:-1]) as parent:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(parts[-1], dir_fd=parent)
            else:
                os.unlink(parts[-1], dir_fd=parent)
    except OSError as exc:
        raise _problem(path, exc) from exc


def disk_usage(root: Path) -> int:
    """Bytes used under ``root`` (allocated blocks; symlinks not followed)."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*filenames, *dirnames]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total
