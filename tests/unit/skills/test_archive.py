"""Safe unpacking and deterministic packaging, on archives built here with zipfile."""

from __future__ import annotations

import os
import stat
import time
import zipfile
from pathlib import Path

import pytest

from gateway.errors import AppError, PayloadTooLarge
from skills.archive import Limits, UnsafeArchive, build_archive, read_directory, read_upload
from tests.support_skills import VALID, make_zip, skill_md, skill_zip, tree, zip_folder

LIMITS = Limits()


def _refused(data: bytes, match: str, kind: type[AppError] = UnsafeArchive) -> AppError:
    with pytest.raises(kind, match=match) as caught:
        read_upload(data, "evil.skill", LIMITS)
    return caught.value


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        ("demo/../../etc/passwd", r"outside the skill \('\.\.'\)"),
        ("../demo/SKILL.md", r"outside the skill"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows/evil.dll", "absolute path"),
        ("demo\\..\\evil", "backslashes"),
        ("demo//x", "empty or '.' path segments"),
        ("demo/./x", "empty or '.' path segments"),
        ("demo/a\x01b", "control characters"),
        ("demo/" + "d" * 1200, "longer than 1000 characters"),
    ],
)
def test_bad_paths_refuse_the_whole_archive(entry: str, match: str) -> None:
    data = make_zip([("demo/SKILL.md", skill_md("demo")), (entry, b"x")])
    error = _refused(data, match)
    assert error.code == "unsafe_archive"
    assert error.details["errors"][0]["field"] == entry


def test_symlinks_and_device_files_are_refused() -> None:
    link = make_zip(
        {"demo/SKILL.md": skill_md("demo"), "demo/passwd": b"/etc/passwd"},
        modes={"demo/passwd": stat.S_IFLNK | 0o777},
    )
    _refused(link, "symbolic link")
    for kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
        device = make_zip(
            {"demo/SKILL.md": skill_md("demo"), "demo/dev": b""}, modes={"demo/dev": kind | 0o600}
        )
        _refused(device, "device, pipe or socket")


def test_zip_bomb_is_refused_while_inflating() -> None:
    bomb = make_zip(
        {"demo/SKILL.md": skill_md("demo"), "demo/zeros.bin": b"\0" * (50 * 1024 * 1024)}
    )
    assert len(bomb) < 100 * 1024
    started = time.perf_counter()
    # Declared sizes already exceed the limit: refused before inflating anything.
    _refused(bomb, "larger than the limit", PayloadTooLarge)
    # A member that lies about its size is still stopped at the ratio while inflating.
    small = make_zip(
        {"demo/SKILL.md": skill_md("demo"), "demo/zeros.bin": b"\0" * (8 * 1024 * 1024)}
    )
    error = _refused(small, "inflates more than 100x")
    assert error.details["errors"][0]["field"] == "demo/zeros.bin"
    assert time.perf_counter() - started < 2


def test_byte_limit_is_enforced_on_actual_bytes() -> None:
    random_bytes = os.urandom(300 * 1024)  # incompressible: no ratio trip
    data = make_zip({"demo/SKILL.md": skill_md("demo"), "demo/a.bin": random_bytes})
    with pytest.raises(PayloadTooLarge, match="larger than the limit of 204800 bytes"):
        read_upload(data, "x.zip", Limits(max_bytes=200 * 1024))


def test_ten_thousand_tiny_files_are_refused_from_the_directory() -> None:
    entries = {"demo/SKILL.md": skill_md("demo")}
    entries.update({f"demo/f{i}.txt": b"x" for i in range(10_000)})
    data = make_zip(entries)
    started = time.perf_counter()
    error = _refused(data, "has 10001 files; the limit is 100")
    assert error.code == "unsafe_archive"
    assert time.perf_counter() - started < 2
    _refused(skill_zip(extra={f"f{i}": b"x" for i in range(100)}), "has 101 files")


def test_layout_rules() -> None:
    _refused(make_zip({"SKILL.md": skill_md("demo")}), "exactly one top-level folder")
    _refused(
        make_zip({"a/SKILL.md": skill_md("a"), "b/SKILL.md": skill_md("b")}),
        "exactly one top-level folder",
    )
    _refused(make_zip({"demo/": b""}), "empty")
    _refused(
        make_zip([("demo/SKILL.md", skill_md("demo")), ("demo/skill.MD", b"x")]), "appears twice"
    )
    _refused(b"PK\x03\x04 not really a zip", "not a readable zip")
    with pytest.raises(UnsafeArchive, match="not a zip archive"):
        read_upload(b"plain text", "x.skill", LIMITS)


def test_encrypted_members_are_refused() -> None:
    data = bytearray(skill_zip())
    # Set the "encrypted" flag bit in the central directory entry of the first member.
    at = data.find(b"PK\x01\x02")
    data[at + 8] |= 0x1
    _refused(bytes(data), "encrypted")


def test_junk_from_archivers_is_skipped() -> None:
    data = make_zip(
        {
            "demo/SKILL.md": skill_md("demo"),
            "demo/.DS_Store": b"junk",
            "demo/scripts/__pycache__/x.cpython-311.pyc": b"junk",
            "__MACOSX/demo/._SKILL.md": b"junk",
        }
    )
    assert set(read_upload(data, "demo.zip", LIMITS).files) == {"SKILL.md"}


def test_bare_skill_md_upload() -> None:
    package = read_upload(skill_md("solo"), "SKILL.md", LIMITS)
    assert package.folder is None and list(package.files) == ["SKILL.md"]


@pytest.mark.parametrize("folder", VALID, ids=lambda p: p.name)
def test_package_round_trip_keeps_bytes_and_modes(folder: Path, tmp_path: Path) -> None:
    package = read_directory(folder, LIMITS)
    data = build_archive(folder.name, package.files, package.executable)
    assert data == build_archive(folder.name, dict(package.files), set(package.executable))
    (tmp_path / "x.skill").write_bytes(data)
    with zipfile.ZipFile(tmp_path / "x.skill") as archive:
        archive.extractall(tmp_path / "out")
        for info in archive.infolist():
            os.chmod(tmp_path / "out" / info.filename, (info.external_attr >> 16) & 0o777)
    assert tree(tmp_path / "out" / folder.name) == tree(folder)
    again = read_upload(data, "x.skill", LIMITS)
    assert again.folder == folder.name
    assert again.files == package.files and again.executable == package.executable
    # the same files zipped by another tool read back the same
    assert read_upload(zip_folder(folder), "x.zip", LIMITS).files == package.files


def test_directory_reading_refuses_symlinks_and_limits(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    root.mkdir()
    (root / "SKILL.md").write_bytes(skill_md("demo"))
    (root / "link").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        read_directory(root, LIMITS)
    (root / "link").unlink()
    os.mkfifo(root / "pipe")
    with pytest.raises(UnsafeArchive, match="device, pipe or socket"):
        read_directory(root, LIMITS)
    (root / "pipe").unlink()
    for i in range(5):
        (root / f"f{i}").write_text("x")
    with pytest.raises(UnsafeArchive, match="limit is 3"):
        read_directory(root, Limits(max_files=3))
    (root / "big").write_bytes(b"x" * 2048)
    with pytest.raises(PayloadTooLarge):
        read_directory(root, Limits(max_bytes=1024))
