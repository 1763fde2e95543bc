"""Hand a child process data in a memory file, never on its argv or in its environ.

The gateway spawns some host processes whose input includes secrets or host
layout: ``bwrap`` (the variables it sets inside a sandbox or package server, its
bind options) and the ``docker`` CLI (the container's env file). On a command
line the values would be readable by every local user (``/proc/<pid>/cmdline``);
in the launcher's own environment they would configure the launcher itself
(``LD_PRELOAD``, ``DOCKER_HOST``). Instead the data
sits in an anonymous memory file (``memfd``; a 0600 temporary file where memfd is
missing), and a tiny ``sh`` trampoline opens it as fd 3 before it execs the
launcher, which reads ``--args 3`` or ``--env-file /dev/fd/3``. Where the gateway
spawns the child itself it passes :func:`memfd` descriptors with ``pass_fds``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

FD = 3
# $1: the path to open as fd 3; $2: "unlink" when it is a temporary file to remove
# at once (a memfd needs no removal). Then exec the launcher, keeping fd 3 open.
_TRAMPOLINE = (
    'exec 3<"$1" || exit 126; if [ "$2" = unlink ]; then rm -f -- "$1"; fi; shift 2; exec "$@"'
)


def memfd(name: str, data: bytes, *, cloexec: bool = False) -> int:
    """An in-memory file holding ``data``, positioned at its start (Linux only).

    Nothing of it is on disk or on an argv; a child inherits it through
    ``pass_fds`` (or, with ``cloexec``, opens it through ``/proc/<pid>/fd``).
    """
    fd = os.memfd_create(f"mcpgw-{name}", os.MFD_CLOEXEC if cloexec else 0)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class Handoff:
    """``data`` for one child to read on fd 3; close it once the child has started."""

    def __init__(self, data: bytes) -> None:
        self._fd: int | None = None
        self._file: str | None = None
        if hasattr(os, "memfd_create"):
            self._fd = memfd("handoff", data, cloexec=True)
            # Another process opens it through our /proc entry (same user only).
            self.path = f"/proc/{os.getpid()}/fd/{self._fd}"
            self.unlink = False
            return
        # macOS and other hosts without memfd
        fd, self._file = tempfile.mkstemp(prefix="mcpgw-handoff-")  # created 0600
        self.path = self._file
        self.unlink = True
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run with this data open on fd 3 (through ``sh``, which then execs)."""
        sh = shutil.which("sh") or "/bin/sh"
        return [
            sh,
            "-c",
            _TRAMPOLINE,
            "mcpgw-handoff",
            self.path,
            "unlink" if self.unlink else "keep",
            *argv,
        ]

    def close(self) -> None:
        """Release the data (idempotent); a temporary file left by a failed spawn goes too."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._file is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._file)
            self._file = None

    def __enter__(self) -> Handoff:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def nul_separated(args: list[str]) -> bytes:
    """Arguments in the form ``bwrap --args FD`` reads (each ends with a NUL byte)."""
    return b"".join(os.fsencode(arg) + b"\0" for arg in args)
