"""Workspaces with a hard size limit: a sparse ext4 image per sandbox, loop-mounted.

A plain directory on the host's disk can only be *measured*: a command in the
sandbox can write far past its ``disk_mb`` before anyone looks, and fill the host.
So each sandbox gets ``<dir>/<id>/disk.img``, a sparse file of ``disk_mb`` MiB
formatted as ext4 (no journal, no reserved blocks), loop-mounted ``nosuid,nodev``
at ``<dir>/<id>/workspace``. A write past the limit fails inside the sandbox with
``ENOSPC``; nothing else notices. ``discard`` hands freed blocks back to the host.

The mount is made on create and resume, and again on first use after a restart of
the gateway or the host (the mount table is the truth, never memory); ``stop``
unmounts it, which frees the loop device (``mount -o loop`` sets autoclear). The
files API can still reach a stopped sandbox: the image is mounted for the
operation and unmounted again once nothing uses it.

Mounting needs root, loop devices, ``mkfs.ext4`` and the kernel's ext4. Where any
is missing (a developer's laptop) the workspace is a plain directory whose usage is
measured after each exec, as before; so are sandboxes made before this existed
(no image). The size is fixed at creation: limits are not resized afterwards.

The tools run with a fixed minimal environment and fixed arguments; nothing a
caller sends reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

from sandboxes import blocking
from sandboxes.providers.base import ProviderError, ProviderUnavailable

log = logging.getLogger("sandboxes.disk")

LOOP = "loop-ext4"
MEASURED = "measured"
Setting = Literal["auto", "loop", "measured"]
IMAGE = "disk.img"
WORKSPACE_DIR = "workspace"
DETACHED = "detached"  # marker file: the sandbox is stopped, keep its image unmounted
MOUNT_OPTIONS = "loop,nosuid,nodev,noatime,discard"
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
_TOOL_TIMEOUT = 60.0
_MIB = 1024 * 1024


class DiskError(ProviderError):
    """A disk tool failed; the message says which and why."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="sandbox_disk_unavailable")


def _tool(name: str) -> str | None:
    return shutil.which(name, path=_ENV["PATH"])


def unavailable_reason() -> str | None:
    """Why this process cannot loop-mount images (None: it can, as far as can be seen
    without trying)."""
    if os.geteuid() != 0:
        return "the gateway does not run as root"
    if not os.path.exists("/dev/loop-control"):
        return "there are no loop devices (/dev/loop-control)"
    missing = [t for t in ("mkfs.ext4", "mount", "umount") if _tool(t) is None]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install -y e2fsprogs mount)"
    return None


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 4 <= len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _mount_points() -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as table:
        return [_unescape(f[4]) for line in table if len(f := line.split(" ", 5)) > 4]


def mounts_at(target: Path) -> int:
    """How many mounts sit on ``target`` in this process's mount namespace."""
    return _mount_points().count(str(target))


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_ENV,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), _TOOL_TIMEOUT)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    if proc.returncode:
        why = err.decode(errors="replace").strip()[-300:]
        raise DiskError(f"{Path(argv[0]).name} failed (exit {proc.returncode}): {why}")


class Disks:
    """The workspaces of one provider: ``<root>/<id>/workspace`` (+ ``disk.img``)."""

    def __init__(
        self, root: Path, setting: Setting = "auto", owner: tuple[int, int] | None = None
    ) -> None:
        self.root = root
        self.setting = setting
        # Who owns the workspace's root directory, as the host sees it.
        self.owner = owner or (os.getuid(), os.getgid())
        self.reason: str | None = (
            "MCPGW_SANDBOX_DISK_LIMIT=measured" if setting == MEASURED else unavailable_reason()
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @property
    def kind(self) -> str:
        """What new workspaces get: ``loop-ext4`` (a hard limit) or ``measured``."""
        return MEASURED if self.reason else LOOP

    def base(self, sandbox_id: str) -> Path:
        return self.root / sandbox_id

    def workspace(self, sandbox_id: str) -> Path:
        return self.root / sandbox_id / WORKSPACE_DIR

    def image(self, sandbox_id: str) -> Path:
        return self.root / sandbox_id / IMAGE

    def kind_of(self, sandbox_id: str) -> str:
        """How this sandbox's workspace is stored (older sandboxes have no image)."""
        return LOOP if self.image(sandbox_id).exists() else MEASURED

    def _lock(self, sandbox_id: str) -> asyncio.Lock:
        return self._locks.setdefault(sandbox_id, asyncio.Lock())

    # --- lifecycle ----------------------------------------------------------------------
    async def create(self, sandbox_id: str, size_mb: int) -> str:
        """Make the workspace (mounted, empty); returns its kind. Cleans up on failure."""
        workspace = self.workspace(sandbox_id)
        await blocking.to_thread(workspace.mkdir, parents=True, exist_ok=True)
        if self.reason:
            if self.setting == "loop":
                raise ProviderUnavailable(
                    f"cannot enforce the disk limit (MCPGW_SANDBOX_DISK_LIMIT=loop): {self.reason}"
                )
            return MEASURED
        try:
            await self._format(sandbox_id, size_mb)
            await self.attach(sandbox_id)
            # mke2fs makes lost+found; the sandbox's files API should start empty
            await blocking.to_thread(_rmdir_quietly, workspace / "lost+found")
        except (DiskError, OSError) as exc:
            await self.remove(sandbox_id)
            await blocking.to_thread(workspace.mkdir, parents=True, exist_ok=True)
            if self.setting == "loop":
                raise DiskError(f"cannot enforce the disk limit: {exc}") from exc
            # auto: this host cannot do it after all (e.g. root without CAP_SYS_ADMIN)
            self.reason = str(exc)
            log.warning(
                "sandbox workspaces fall back to measured disk usage: no hard disk limit",
                extra={"reason": self.reason},
            )
            return MEASURED
        return LOOP

    async def _format(self, sandbox_id: str, size_mb: int) -> None:
        image = self.image(sandbox_id)

        def make() -> None:
            fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.ftruncate(fd, size_mb * _MIB)  # sparse: blocks come as files are written
            finally:
                os.close(fd)

        await blocking.to_thread(make)
        uid, gid = self.owner
        await _run(
            _tool("mkfs.ext4") or "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-O",
            "^has_journal",
            "-E",
            f"root_owner={uid}:{gid}",
            str(image),
        )

    async def attach(self, sandbox_id: str) -> Path:
        """The workspace, mounted if it has an image; cheap when it already is."""
        workspace = self.workspace(sandbox_id)
        image = self.image(sandbox_id)
        if not self._needs_mount(workspace, image):
            return workspace
        async with self._lock(sandbox_id):
            if mounts_at(workspace) == 0:
                if not workspace.is_dir():
                    workspace.mkdir(parents=True)
                # the same image is reused by util-linux's mount if a loop device still
                # holds it (a dying exec), so there is never a second superblock
                await _run(
                    _tool("mount") or "mount",
                    "-t",
                    "ext4",
                    "-o",
                    MOUNT_OPTIONS,
                    str(image),
                    str(workspace),
                )
        return workspace

    @staticmethod
    def _needs_mount(workspace: Path, image: Path) -> bool:
        # Three stat calls on the gateway's own directories (microseconds, on every
        # exec): cheaper inline than a trip through a thread.
        return image.exists() and not os.path.ismount(workspace)

    async def detach(self, sandbox_id: str) -> None:
        """Unmount the workspace (every mount stacked on it), freeing its loop device."""
        workspace = self.workspace(sandbox_id)
        async with self._lock(sandbox_id):
            for _ in range(8):
                if mounts_at(workspace) == 0:
                    return
                try:
                    await _run(_tool("umount") or "umount", str(workspace))
                except DiskError:
                    # still busy (a file being read): detach now, free when released
                    await _run(_tool("umount") or "umount", "-l", str(workspace))
            raise DiskError(f"{workspace} stays mounted")

    @contextlib.asynccontextmanager
    async def use(self, sandbox_id: str) -> AsyncIterator[Path]:
        """The workspace for one operation of the files API, mounted for its duration;
        a stopped sandbox's image is unmounted again afterwards."""
        self._users[sandbox_id] = self._users.get(sandbox_id, 0) + 1
        try:
            yield await self.attach(sandbox_id)
        finally:
            self._users[sandbox_id] -= 1
            if not self._users[sandbox_id]:
                del self._users[sandbox_id]
                if (self.base(sandbox_id) / DETACHED).exists():
                    with contextlib.suppress(DiskError):
                        await self.detach(sandbox_id)

    async def park(self, sandbox_id: str) -> None:
        """On stop: unmount (unless the files API is using it; it unmounts after)."""
        if not self.image(sandbox_id).exists():
            return
        await blocking.to_thread((self.base(sandbox_id) / DETACHED).touch)
        if not self._users.get(sandbox_id):
            await self.detach(sandbox_id)

    async def unpark(self, sandbox_id: str) -> Path:
        """On resume: mount again."""
        with contextlib.suppress(FileNotFoundError):
            await blocking.to_thread((self.base(sandbox_id) / DETACHED).unlink)
        return await self.attach(sandbox_id)

    async def detach_all(self) -> None:
        """Unmount every workspace of this root (at shutdown: nothing runs in them any
        more, and the next use after a start mounts again)."""
        for point in _mount_points():
            path = Path(point)
            if path.name == WORKSPACE_DIR and path.parent.parent == self.root:
                try:
                    await self.detach(path.parent.name)
                except DiskError:
                    log.warning("could not unmount a sandbox workspace", extra={"path": point})

    async def remove(self, sandbox_id: str) -> None:
        """Unmount and delete everything of the sandbox. Idempotent."""
        base = self.base(sandbox_id)
        if base.exists():
            await self.detach(sandbox_id)
            # never delete through a mount (it would survive, holding a loop device)
            if mounts_at(self.workspace(sandbox_id)) == 0:
                await blocking.to_thread(shutil.rmtree, base, True)
        self._locks.pop(sandbox_id, None)

    def used_bytes(self, sandbox_id: str) -> int | None:
        """Bytes in use on a mounted image (blocking; None when it is not mounted)."""
        workspace = self.workspace(sandbox_id)
        if not os.path.ismount(workspace):
            return None
        stats = os.statvfs(workspace)
        return (stats.f_blocks - stats.f_bfree) * stats.f_frsize

    def free_bytes(self, sandbox_id: str) -> int | None:
        """Bytes a file may still take on a mounted image (blocking; None: no image)."""
        workspace = self.workspace(sandbox_id)
        if not os.path.ismount(workspace):
            return None
        stats = os.statvfs(workspace)
        return stats.f_bavail * stats.f_frsize


def _rmdir_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
