"""Skill packages in and out: safe reading of uploads and folders, deterministic packaging.

A package is read entirely into memory, member by member, with every limit
enforced while reading (never trusting sizes an archive declares), so a hostile
upload is refused before it costs more than the limits allow and nothing is ever
written to disk. Refused: absolute paths, ``..``, backslashes, symlinks, device
files, encrypted members, duplicate names, more files or bytes than allowed, and
members that inflate more than the allowed compression ratio (zip bombs).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from gateway.errors import InvalidInput, PayloadTooLarge
from skills.validation import SKILL_MD

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# Entries archivers add that are not part of anyone's skill (macOS Finder, Python).
_JUNK_DIRS = frozenset({"__MACOSX", "__pycache__", ".git"})
_JUNK_FILES = frozenset({".DS_Store", "Thumbs.db"})
# Ratio checks start above this size: tiny files of repeated bytes compress absurdly
# well and are harmless; what matters is large inflation.
_RATIO_FLOOR = 64 * 1024
_CHUNK = 64 * 1024
MAX_PATH = 1000  # characters; the database column holds 1024
# Fixed timestamp for packages, so the same files always give the same bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)
# Central directory bytes allowed per permitted entry: the 46-byte fixed header plus
# room for a long name and extra fields on average. Bounds what zipfile parses even
# when the end record lies about the entry count.
_CD_BYTES_PER_ENTRY = 46 + MAX_PATH // 2 + 64


@dataclass(frozen=True)
class Limits:
    """What one skill package may hold (settings ``MCPGW_SKILLS_MAX_*``)."""

    max_bytes: int = 10 * 1024 * 1024
    max_files: int = 100
    max_ratio: float = 100.0

    @property
    def max_entries(self) -> int:
        """Most archive entries of any kind (files, folders, archiver junk).

        Folder entries cost parsing time like files do; derived from ``max_files`` with
        room for nested folders and the ``__MACOSX`` twins macOS adds to every file.
        """
        return self.max_files * 4 + 64


@dataclass
class SkillPackage:
    """A skill's files in memory: {posix path relative to the skill root: bytes}."""

    folder: str | None
    files: dict[str, bytes] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)


class UnsafeArchive(InvalidInput):
    """The upload is refused whole; ``errors`` names the offending entry."""

    code = "unsafe_archive"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(
            message, errors=[{"field": path or "archive", "line": None, "message": message}]
        )


def _too_large(what: str, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the skill is larger than the limit of {limit} bytes ({what})",
        code="skill_too_large",
        errors=[{"field": "archive", "line": None, "message": f"more than {limit} bytes"}],
    )


def _too_many(count: int, limit: int, what: str = "files") -> UnsafeArchive:
    return UnsafeArchive(f"the skill has {count} {what}; the limit is {limit}")


def _declared_directory(data: bytes) -> tuple[int, int]:
    """(entry count, central directory size) as ``zipfile.ZipFile`` will read them.

    Checked before ``zipfile.ZipFile`` parses the whole central directory (about 1 s
    for 100,000 entries). The values must be the ones zipfile itself uses, not a
    reading of the format: Python 3.11 takes the zip64 end record from just before
    the locator and ignores the offset the locator names, so a decoy locator could
    show a hand-written parser a different record. ``zipfile._EndRecData`` is private
    but is exactly what ``ZipFile`` calls; if it is gone in some future Python, or
    finds no end record, or fails, the upload is refused rather than parsed.
    """
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:
        raise UnsafeArchive("cannot check the archive's end record on this Python version")
    try:
        record = end_record(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, struct.error) as exc:
        raise UnsafeArchive(f"not a readable zip archive: {exc}") from None
    if record is None:
        raise UnsafeArchive("not a readable zip archive: no end of central directory")
    # Fields 4 and 5 (``_ECD_ENTRIES_TOTAL``, ``_ECD_SIZE``): zipfile's parse loop
    # runs over the directory SIZE; the count is only what the archive claims.
    entries, cd_size = record[4], record[5]
    if not isinstance(entries, int) or not isinstance(cd_size, int):
        raise UnsafeArchive("not a readable zip archive: malformed end record")
    return entries, cd_size


def _check_entry_count(data: bytes, limits: Limits) -> None:
    """Refuse an archive with too many entries from its end record, before parsing it."""
    entries, cd_size = _declared_directory(data)
    if entries > limits.max_entries:
        raise _too_many(entries, limits.max_entries, "entries (files and folders)")
    if cd_size > limits.max_entries * _CD_BYTES_PER_ENTRY:
        raise UnsafeArchive(
            f"the archive's directory is {cd_size} bytes, too large for "
            f"{limits.max_entries} entries (files and folders)"
        )


def check_path(path: str) -> str:
    """The path if it is a safe relative POSIX path, else raise :class:`UnsafeArchive`."""
    if not path or "\x00" in path or any(ord(c) < 32 for c in path):
        raise UnsafeArchive(f"entry {path!r} has an empty name or control characters", path)
    if len(path) > MAX_PATH:
        raise UnsafeArchive(f"entry {path[:80]!r}… is longer than {MAX_PATH} characters", path)
    if "\\" in path:
        raise UnsafeArchive(f"entry {path!r} uses backslashes; zip paths use '/'", path)
    if path.startswith("/") or (len(path) > 1 and path[1] == ":"):
        raise UnsafeArchive(f"entry {path!r} is an absolute path", path)
    parts = PurePosixPath(path).parts
    if ".." in parts:
        raise UnsafeArchive(f"entry {path!r} points outside the skill ('..')", path)
    if any(p in ("", ".") for p in path.rstrip("/").split("/")):
        raise UnsafeArchive(f"entry {path!r} has empty or '.' path segments", path)
    return path


def _is_junk(parts: tuple[str, ...]) -> bool:
    return (
        bool(set(parts[:-1]) & _JUNK_DIRS)
        or parts[-1] in _JUNK_FILES
        or (parts[-1].endswith(".pyc"))
    )


def read_upload(data: bytes, filename: str | None, limits: Limits) -> SkillPackage:
    """A ``.skill``/``.zip`` (one top-level ``<name>/`` folder) or a bare SKILL.md."""
    if data.startswith(ZIP_MAGIC):
        return read_zip(data, limits)
    if filename and filename.lower().endswith((".zip", ".skill")):
        raise UnsafeArchive(f"{filename} is not a zip archive")
    if len(data) > limits.max_bytes:
        raise _too_large("SKILL.md", limits.max_bytes)
    return SkillPackage(folder=None, files={SKILL_MD: data})


def read_zip(data: bytes, limits: Limits) -> SkillPackage:
    """Read a zip whose files all sit under one top-level folder."""
    _check_entry_count(data, limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UnsafeArchive(f"not a readable zip archive: {exc}") from None
    with archive:
        # Refuse on the central directory alone before any per-member work. Folder
        # entries count too: 100,000 of them cost seconds of CPU below.
        if len(archive.infolist()) > limits.max_entries:
            raise _too_many(len(archive.infolist()), limits.max_entries, "entries")
        infos = [i for i in archive.infolist() if not i.is_dir()]
        if len(infos) > limits.max_files * 2 + 16:
            raise _too_many(len(infos), limits.max_files)
        members: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        seen: set[str] = set()
        for info in archive.infolist():
            path = check_path(info.filename)
            mode = info.external_attr >> 16
            kind = stat.S_IFMT(mode)
            if kind == stat.S_IFLNK:
                raise UnsafeArchive(f"entry {path!r} is a symbolic link", path)
            if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
                raise UnsafeArchive(f"entry {path!r} is a device, pipe or socket", path)
            if info.flag_bits & 0x1:
                raise UnsafeArchive(f"entry {path!r} is encrypted", path)
            folded = path.rstrip("/").lower()
            if folded in seen:
                raise UnsafeArchive(f"entry {path!r} appears twice (names differ only in case?)")
            seen.add(folded)
            parts = PurePosixPath(path).parts
            if info.is_dir() or _is_junk(parts):
                continue
            members.append((info, parts))
        if not members:
            raise UnsafeArchive("the archive is empty")
        tops = {parts[0] for _, parts in members}
        if len(tops) != 1 or any(len(parts) < 2 for _, parts in members):
            raise UnsafeArchive(
                "the archive must hold exactly one top-level folder <skill-name>/ with SKILL.md "
                f"inside (found top-level entries: {', '.join(sorted(tops)[:5])})"
            )
        if len(members) > limits.max_files:
            raise _too_many(len(members), limits.max_files)
        if sum(i.file_size for i, _ in members) > limits.max_bytes:
            raise _too_large("declared sizes", limits.max_bytes)
        package = SkillPackage(folder=tops.pop())
        total = 0
        for info, parts in members:
            rel = "/".join(parts[1:])
            content = _read_member(archive, info, limits, limits.max_bytes - total)
            total += len(content)
            package.files[rel] = content
            if (info.external_attr >> 16) & 0o111:
                package.executable.add(rel)
        return package


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits, budget: int
) -> bytes:
    """Inflate one member in chunks, stopping at the byte budget or a bomb-like ratio."""
    out = bytearray()
    compressed = max(info.compress_size, 1)
    try:
        with archive.open(info) as member:
            while chunk := member.read(_CHUNK):
                out += chunk
                if len(out) > budget:
                    raise _too_large(f"while inflating {info.filename}", limits.max_bytes)
                if len(out) > _RATIO_FLOOR and len(out) / compressed > limits.max_ratio:
                    raise UnsafeArchive(
                        f"entry {info.filename!r} inflates more than {limits.max_ratio:g}x "
                        "(a zip bomb?)",
                        info.filename,
                    )
    except (zipfile.BadZipFile, NotImplementedError, EOFError, ValueError, OSError) as exc:
        raise UnsafeArchive(f"cannot read entry {info.filename!r}: {exc}", info.filename) from None
    return bytes(out)


def read_directory(root: Path, limits: Limits, folder: str | None = None) -> SkillPackage:
    """Read a skill folder from disk under the same rules as an upload."""
    root = Path(root)
    if not root.is_dir():
        raise UnsafeArchive(f"{root} is not a directory")
    package = SkillPackage(folder=folder or root.resolve().name)
    total = entries = 0
    # os.walk without following links; each entry is lstat-ed so nothing is dereferenced.
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _JUNK_DIRS)
        base = Path(dirpath)
        # Folders count like they do in an archive: a tree of empty folders costs too.
        entries += len(dirnames) + len(filenames)
        if entries > limits.max_entries:
            raise _too_many(entries, limits.max_entries, "entries (files and folders)")
        for name in [*dirnames, *sorted(filenames)]:
            full = base / name
            rel = full.relative_to(root).as_posix()
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                raise UnsafeArchive(f"{rel!r} is a symbolic link", rel)
            if stat.S_ISDIR(info.st_mode):
                continue
            if not stat.S_ISREG(info.st_mode):
                raise UnsafeArchive(f"{rel!r} is a device, pipe or socket", rel)
            check_path(rel)
            if _is_junk(PurePosixPath(rel).parts):
                continue
            if len(package.files) >= limits.max_files:
                raise _too_many(len(package.files) + 1, limits.max_files)
            total += info.st_size
            if total > limits.max_bytes:
                raise _too_large(rel, limits.max_bytes)
            package.files[rel] = full.read_bytes()
            if info.st_mode & 0o111:
                package.executable.add(rel)
    return package


def build_archive(folder: str, files: dict[str, bytes], executable: set[str]) -> bytes:
    """A ``.skill`` (zip) with ``folder/`` on top: sorted entries, fixed timestamps, so
    the same files always give the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(f"{folder}/{path}", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if path in executable else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.create_system = 3  # Unix, so unzip honours the mode bits
            archive.writestr(info, files[path])
    return buffer.getvalue()
