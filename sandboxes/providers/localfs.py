"""Workspace file operations on the host that never follow a symlink out of the workspace.

Sandboxed code can put symlinks in its workspace (``ln -s /etc/shadow x``). The
gateway reads and writes workspaces from the host, so every path is walked one
component at a time with ``O_NOFOLLOW`` relative to the workspace directory's file
descriptor: a symlink anywhere in the path is refused, not followed, and nothing
a concurrent process does can redirect the walk.

Sandboxed code can also leave FIFOs and sockets there (``mkfifo x``): every open
is ``O_NONBLOCK``, so it never waits for a writer or reader, and only regular
files are read. Blocking (a large tree, a slow disk): call through the sandboxes'
own thread pool (:mod:`sandboxes.blocking`), never the default executor.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from sandboxes.providers.base import FileEntry, FileProblem

MAX_DEPTH = 256  # directory levels disk_usage descends
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# O_NONBLOCK: opening a FIFO returns at once instead of waiting for the other end
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


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
    if exc.errno == errno.ENXIO:  # opening a socket (files are never opened to write)
        return _special(path, stat.S_IFSOCK)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the workspace's filesystem is full
        return FileProblem(
            f"{path!r} does not fit: no space left in the workspace", code="sandbox_disk_full"
        )
    return FileProblem(f"{path!r}: {exc.strerror}", code="sandbox_path_invalid")


def _special(path: str, mode: int | None = None) -> FileProblem:
    kind = "a FIFO" if mode is not None and stat.S_ISFIFO(mode) else "not a regular file"
    if mode is not None and stat.S_ISSOCK(mode):
        kind = "a socket"
    return FileProblem(
        f"{path!r} is {kind}; the files API reads and writes regular files only "
        "(run a command in the sandbox for anything else)",
        code="sandbox_path_invalid",
    )


def read_file(root: Path, path: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path`` (at most ``max_bytes``)."""
    parts = _parts(path)
    if not parts:
        raise FileProblem("the workspace is a directory", code="sandbox_path_invalid")
    try:
        with _dir_fd(root, parts[:-1]) as parent:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=parent)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if stat.S_ISDIR(info.st_mode):
                    raise FileProblem(f"{path!r} is a directory", code="sandbox_path_invalid")
                if not stat.S_ISREG(info.st_mode):
                    raise _special(path, info.st_mode)
                if info.st_size > max_bytes:
                    raise FileProblem(
                        f"{path!r} is {info.st_size} bytes, more than the {max_bytes} the files "
                        "API returns",
                        code="sandbox_file_too_large",
                    )
                return handle.read(max_bytes + 1)[:max_bytes]
    except OSError as exc:
        raise _problem(path, exc) from exc


def _create_temp(parent: int, name: str) -> tuple[str, int]:
    """A new file next to ``name``. O_EXCL with an unguessable name: whatever the
    sandbox put in the directory (a FIFO, a symlink) is never opened."""
    for _ in range(16):
        tmp = f".mcpgw-upload-{secrets.token_hex(8)}"  # short: any name's length fits
        try:
            return tmp, os.open(tmp, _CREATE_FLAGS, 0o644, dir_fd=parent)
        except FileExistsError:
            continue
    raise FileProblem(
        f"could not create a temporary file for {name!r}", code="sandbox_path_invalid"
    )


def write_file(root: Path, path: str, data: bytes, owner: tuple[int, int] | None) -> None:
    """Create or replace ``path`` (parents created). A FIFO or socket there is replaced
    by the new file (a rename never opens it); a directory there is refused."""
    parts = _parts(path)
    if not parts:
        raise FileProblem("cannot write the workspace itself", code="sandbox_path_invalid")
    try:
        with _dir_fd(root, parts[:-1], create=True) as parent:
            tmp, fd = _create_temp(parent, parts[-1])
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
    """Entries of the directory ``path``; None if it is not a directory."""
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
    """Remove a file, a FIFO or socket, or a directory tree (symlinks not followed)."""
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
    """Bytes used under ``root`` (allocated blocks; symlinks not followed).

    Each directory is opened relative to its parent's fd with ``O_NOFOLLOW``, so a
    directory swapped for a symlink meanwhile cannot lead the walk out of ``root``.
    Iterative, holding one fd per level; levels below :data:`MAX_DEPTH` are not
    counted (a hard size limit belongs to the filesystem, not to this estimate)."""
    total = 0
    try:
        top = os.open(root, _DIR_FLAGS)
    except OSError:
        return 0
    stack: list[tuple[int, list[str]]] = []
    fd = top
    while True:
        subdirs: list[str] = []
        with contextlib.suppress(OSError), os.scandir(fd) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    total += info.st_blocks * 512
                    if stat.S_ISDIR(info.st_mode) and len(stack) < MAX_DEPTH:
                        subdirs.append(entry.name)
        stack.append((fd, subdirs))
        fd = -1
        while stack and fd < 0:
            parent, pending = stack[-1]
            if not pending:
                os.close(parent)
                stack.pop()
                continue
            with contextlib.suppress(OSError):
                fd = os.open(pending.pop(), _DIR_FLAGS, dir_fd=parent)
        if fd < 0:
            return total
