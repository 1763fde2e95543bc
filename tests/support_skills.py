"""Helpers for skills tests: the fixture corpus, and zip archives built in the test (hostile
ones included) with :mod:`zipfile`."""

from __future__ import annotations

import hashlib
import io
import stat
import zipfile
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "skills"
VALID = sorted(p for p in (FIXTURES / "valid").iterdir() if p.is_dir())
INVALID = sorted(p for p in (FIXTURES / "invalid").iterdir() if p.is_dir())
# Where this project's validator deliberately differs from skills-ref (docs/skills.md).
DIFFERENCES = sorted(p for p in (FIXTURES / "differences").iterdir() if p.is_dir())


def tree(root: Path) -> dict[str, tuple[str, bool]]:
    """{relative path: (sha256, executable)} of every file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            mode = path.stat().st_mode
            out[path.relative_to(root).as_posix()] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                bool(mode & 0o111),
            )
    return out


def skill_md(name: str, description: str = "A test skill.", body: str = "Do it.\n") -> bytes:
    return f"---\nname: {name}\ndescription: {description}\n---\n\n{body}".encode()


def make_zip(
    entries: list[tuple[str, bytes]] | dict[str, bytes],
    *,
    modes: dict[str, int] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """A zip with exactly these entry names (no sanitising: tests build hostile ones).
    ``modes`` sets the Unix mode (type and permission bits) of some entries."""
    items = list(entries.items()) if isinstance(entries, dict) else list(entries)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in items:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            mode = (modes or {}).get(name, stat.S_IFREG | 0o644)
            info.external_attr = mode << 16
            info.create_system = 3
            archive.writestr(info, data)
    return buffer.getvalue()


def skill_zip(name: str = "demo-skill", extra: dict[str, bytes] | None = None) -> bytes:
    """A valid one-skill archive with ``extra`` files inside the folder."""
    files = {
        f"{name}/SKILL.md": skill_md(name),
        **{f"{name}/{k}": v for k, v in (extra or {}).items()},
    }
    return make_zip(files)


def zip_folder(root: Path) -> bytes:
    """``root`` as a zip with ``root.name/`` on top, modes kept (like `zip -r`)."""
    entries, modes = {}, {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            name = f"{root.name}/{path.relative_to(root).as_posix()}"
            entries[name] = path.read_bytes()
            modes[name] = path.stat().st_mode
    return make_zip(entries, modes=modes)


BILLION_LAUGHS = (
    "name: lol\n"
    "description: billion laughs\n"
    "metadata:\n"
    '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    "  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "  i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)
