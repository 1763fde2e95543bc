"""Workspace files of a docker sandbox through the engine's archive endpoint.

The engine reads and writes a container's files as tar streams (``GET``/``PUT``
``/containers/{id}/archive``) and stats a path with a ``HEAD`` on the same endpoint,
so no helper process runs in the sandbox and a stopped container's files are
reachable too. These helpers block (the SDK does): the docker provider runs them in
its worker threads, on ``api`` (the SDK's low-level client) and the name of the
sandbox's container. Paths are relative to the workspace, as the service hands them
over.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import time
from typing import Any

import docker
import docker.errors

from sandboxes.providers.base import WORKSPACE, FileEntry, FileProblem, ProviderError

_MODE_DIR = 1 << 31  # Go's os.ModeDir, as the engine reports a path's mode
_MODE_SYMLINK = 1 << 27  # os.ModeSymlink


def stat(api: docker.APIClient, container: str, path: str) -> dict[str, Any] | None:
    """The engine's stat of a workspace path (HEAD on the archive endpoint), or None."""
    client: Any = api  # the SDK has no call for this endpoint: a plain HEAD
    target = f"{WORKSPACE}/{path}".rstrip("/")
    response = client.head(
        client._url("/containers/{0}/archive", container), params={"path": target}
    )
    if response.status_code == 404:
        return None
    client._raise_for_status(response)
    header = response.headers.get("X-Docker-Container-Path-Stat", "")
    found: dict[str, Any] = json.loads(base64.b64decode(header)) if header else {}
    return found


def read_file(api: docker.APIClient, container: str, path: str, max_bytes: int) -> bytes:
    """The content of a regular file; :class:`FileProblem` if missing, a directory, a
    symlink (never followed) or larger than ``max_bytes``."""
    target = f"{WORKSPACE}/{path}"
    try:
        stream, found = api.get_archive(container, target)
    except docker.errors.NotFound as exc:
        raise FileProblem(f"no such file or directory: {path}") from exc
    mode = int(found.get("mode", 0))
    if mode & _MODE_DIR:
        raise FileProblem(f"{path!r} is a directory", code="sandbox_path_invalid")
    if mode & _MODE_SYMLINK:
        raise FileProblem(
            f"{path!r} is a symlink; the files API does not follow symlinks",
            code="sandbox_path_invalid",
        )
    if int(found.get("size", 0)) > max_bytes:
        raise FileProblem(
            f"{path!r} is {found['size']} bytes, more than the {max_bytes} the files API returns",
            code="sandbox_file_too_large",
        )
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream)), mode="r|") as archive:
        for member in archive:
            handle = archive.extractfile(member)
            return handle.read(max_bytes) if handle else b""
    return b""


def write_file(api: docker.APIClient, container: str, path: str, data: bytes) -> None:
    """Write ``data`` at ``path``, making missing parent directories (all owned by the
    sandbox user, 1000:1000, as if the sandbox had written them)."""
    buffer = io.BytesIO()
    parts = path.split("/")
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for depth in range(1, len(parts)):
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type, info.mode, info.uid, info.gid, info.mtime = (
                tarfile.DIRTYPE,
                0o755,
                1000,
                1000,
                now,
            )
            archive.addfile(info)
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.uid, info.gid, info.mtime = (len(data), 0o644, 1000, 1000, now)
        archive.addfile(info, io.BytesIO(data))
    if not api.put_archive(container, WORKSPACE, buffer.getvalue()):
        raise ProviderError(f"could not write {path!r} into the sandbox")


def list_dir(api: docker.APIClient, container: str, path: str) -> list[FileEntry] | None:
    """Entries of a directory sorted by name; None if ``path`` is not a directory;
    :class:`FileProblem` if it does not exist."""
    found = stat(api, container, path)
    if found is None:
        raise FileProblem(f"no such file or directory: {path or '/'}")
    if not int(found.get("mode", 0)) & _MODE_DIR:
        return None
    stream, _ = api.get_archive(container, f"{WORKSPACE}/{path}".rstrip("/") + "/.")
    entries: list[FileEntry] = []
    # read as it arrives: the archive holds the whole tree under the directory
    with tarfile.open(fileobj=_Chunks(stream), mode="r|") as archive:
        members = list(archive)
    for member in members:
        name = member.name.removeprefix("./")
        if not name or name == "." or "/" in name.rstrip("/"):  # only direct children
            continue
        kind = (
            "dir"
            if member.isdir()
            else "symlink"
            if member.issym()
            else "file"
            if member.isfile()
            else "other"
        )
        rel = f"{path}/{name}" if path else name
        entries.append(
            FileEntry(name, rel.rstrip("/"), kind, member.size, member.mtime)  # type: ignore[arg-type]
        )
    return sorted(entries, key=lambda e: e.name)


class _Chunks(io.RawIOBase):
    """A file over an iterator of byte chunks (the engine's archive stream)."""

    def __init__(self, chunks: Any) -> None:
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n
