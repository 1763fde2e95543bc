"""Private modes for the data directory and what the gateway keeps in it.

``MCPGW_DATA_DIR`` holds the SQLite database (key digests, encrypted backend
secrets, audit rows), ``secret.key`` (which decrypts those secrets) and backend
logs. Nobody but the gateway's own user may read them, whatever the process
umask: directories are 0700 and files 0600, set with an explicit ``chmod`` after
creation because a umask only ever removes bits. A data directory created by an
older version with looser modes is tightened at start, and the log says so.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TextIO

log = logging.getLogger("gateway.datadir")

DIR_MODE = 0o700
FILE_MODE = 0o600
# SQLite's companions of a database file; they hold pages of the same data.
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
# Files and folders the gateway itself keeps directly under the data directory.
_KNOWN_FILES = ("secret.key", *(f"mcpgw.db{s}" for s in SQLITE_SUFFIXES))
_KNOWN_DIRS = ("logs", "logs/servers")


def _tighten(path: Path, mode: int) -> bool:
    """Set ``path`` to ``mode`` if group or others have any access; True if changed."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode) or not stat.S_IMODE(info.st_mode) & 0o077:
        return False  # never follow a link; already private
    try:
        os.chmod(path, mode)
    except OSError as exc:
        # Owned by another user (a mounted volume, say): say so instead of failing start.
        log.warning(
            "cannot make a data directory path private",
            extra={"path": str(path), "error": exc.strerror},
        )
        return False
    return True


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents, all 0700) if needed, else tighten it to 0700."""
    if not path.is_dir():
        if not path.parent.exists():
            private_dir(path.parent)
        try:
            path.mkdir(DIR_MODE)
        except FileExistsError:
            pass  # created concurrently (another worker starting)
        else:
            os.chmod(path, DIR_MODE)  # umask-independent
            return path
    _tighten(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty (0600) if missing, else tighten it to 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        _tighten(path, FILE_MODE)
        return path
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def open_private_log(path: Path) -> TextIO:
    """Open ``path`` for appending text, creating it 0600 (its folder 0700)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")


def secure_sqlite_file(path: Path) -> None:
    """Make a SQLite database private before SQLite opens it.

    SQLite creates its -wal and -shm files with the database file's mode, so a
    database created 0600 here keeps its journals 0600 as well.
    """
    if not path.parent.exists():
        private_dir(path.parent)  # an existing folder is the operator's choice
    private_file(path)
    for suffix in SQLITE_SUFFIXES[1:]:
        _tighten(path.with_name(path.name + suffix), FILE_MODE)


def secure_data_dir(data_dir: Path) -> list[Path]:
    """Create the data directory 0700, or tighten it and what the gateway keeps in it.

    Returns the paths whose modes were loosened before (and logs them once).
    """
    tightened: list[Path] = []
    if data_dir.is_dir():
        if _tighten(data_dir, DIR_MODE):
            tightened.append(data_dir)
    else:
        private_dir(data_dir)
    for name in _KNOWN_DIRS:
        if _tighten(data_dir / name, DIR_MODE):
            tightened.append(data_dir / name)
        # Made here, 0700, so code that later writes into them with a plain mkdir and
        # open (backend stderr logs) cannot leave them readable by others.
        private_dir(data_dir / name)
    for name in _KNOWN_FILES:
        if _tighten(data_dir / name, FILE_MODE):
            tightened.append(data_dir / name)
    logs = data_dir / "logs" / "servers"
    if logs.is_dir():
        tightened += [p for p in sorted(logs.iterdir()) if p.is_file() and _tighten(p, FILE_MODE)]
    if tightened:
        log.warning(
            "made the data directory private: removed group/other access",
            extra={"paths": [str(p) for p in tightened]},
        )
    return tightened
