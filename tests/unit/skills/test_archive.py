"""Safe unpacking and deterministic packaging, on archives built here with zipfile."""

from __future__ import annotations

import io
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
    # Refused from the end record, counting every entry, before zipfile parses them.
    error = _refused(data, r"has 10001 entries \(files and folders\); the limit is 464")
    assert error.code == "unsafe_archive"
    assert time.perf_counter() - started < 2
    _refused(skill_zip(extra={f"f{i}": b"x" for i in range(100)}), "has 101 files")


def _folders_zip(count: int) -> bytes:
    """A valid skill plus ``count`` empty folder entries (no files in them)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("demo/SKILL.md", skill_md("demo"))
        for i in range(count):
            info = zipfile.ZipInfo(f"demo/d{i}/", date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = (stat.S_IFDIR | 0o755) << 16
            archive.writestr(info, b"")
    return buffer.getvalue()


def test_many_folder_entries_are_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folder entries pass a files-only count yet cost seconds of CPU at 100,000."""
    data = _folders_zip(20_000)

    def no_parsing(*_: object, **__: object) -> None:
        raise AssertionError("the central directory was parsed before refusing")

    with monkeypatch.context() as patch:
        patch.setattr("skills.archive.zipfile.ZipFile", no_parsing)
        error = _refused(data, r"has 20001 entries \(files and folders\); the limit is 464")
    assert error.code == "unsafe_archive" and error.status_code == 422
    # Nested folders in a normal skill stay well within the limit.
    nested = {f"demo/a{i}/b/c/f.txt": b"x" for i in range(90)}
    folders = [(f"demo/a{i}/{sub}", b"") for i in range(90) for sub in ("", "b/", "b/c/")]
    entries = [("demo/SKILL.md", skill_md("demo")), *folders, *nested.items()]
    modes = {name: stat.S_IFDIR | 0o755 for name, _ in folders}
    package = read_upload(make_zip(entries, modes=modes), "ok.skill", LIMITS)
    assert len(package.files) == 91


def test_a_folder_tree_of_empty_folders_is_refused(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "SKILL.md").write_bytes(skill_md("demo"))
    for i in range(500):
        (tmp_path / "demo" / f"d{i}").mkdir()
    with pytest.raises(UnsafeArchive, match="entries \\(files and folders\\); the limit is 464"):
        read_directory(tmp_path / "demo", LIMITS)


def test_an_end_record_that_understates_the_entries_is_still_refused() -> None:
    data = bytearray(_folders_zip(20_000))
    at = data.rfind(b"PK\x05\x06")
    data[at + 8 : at + 12] = (1).to_bytes(2, "little") * 2  # "1 entry" (zipfile ignores it)
    error = _refused(bytes(data), r"directory is \d+ bytes, too large for 464 entries")
    assert error.code == "unsafe_archive"
    # Fewer than the limit but with a padded directory: the zipfile count catches it.
    small = bytearray(_folders_zip(500))
    at = small.rfind(b"PK\x05\x06")
    small[at + 8 : at + 12] = (1).to_bytes(2, "little") * 2
    _refused(bytes(small), "has 501 entries; the limit is 464")


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


def _zip64_locator_decoy(entries: int) -> bytes:
    """Central directory entries (no members), then a zip64 end record, a locator naming offset 0
    (a decoy: Python 3.11 reads the record just before the locator instead) and a classic
    end record claiming 1 entry in 100 bytes."""
    directory = b"".join(
        b"PK\x01\x02"
        + (20).to_bytes(2, "little") * 2
        + bytes(20)
        + (len(name := f"demo/d{i}/".encode())).to_bytes(2, "little")
        + bytes(16)
        + name
        for i in range(entries)
    )
    zip64 = b"PK\x06\x06" + (44).to_bytes(8, "little") + (45).to_bytes(2, "little") * 2
    zip64 += bytes(8) + entries.to_bytes(8, "little") * 2
    zip64 += len(directory).to_bytes(8, "little") + bytes(8)
    locator = b"PK\x06\x07" + bytes(4) + bytes(8) + (1).to_bytes(4, "little")
    end = b"PK\x05\x06" + bytes(4) + (1).to_bytes(2, "little") * 2
    end += (100).to_bytes(4, "little") + bytes(4) + bytes(2)
    # One empty local header up front, for the upload's zip magic (zipfile skips it).
    return b"PK\x03\x04" + bytes(26) + directory + zip64 + locator + end


def test_a_zip64_locator_decoy_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check must read the end record zipfile reads, not the one the locator names."""
    data = _zip64_locator_decoy(20_000)
    # The archive really does make zipfile parse 20,000 entries.
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == 20_000

    def no_parsing(*_: object, **__: object) -> None:
        raise AssertionError("the central directory was parsed before refusing")

    started = time.perf_counter()
    with monkeypatch.context() as patch:
        patch.setattr("skills.archive.zipfile.ZipFile", no_parsing)
        error = _refused(data, r"has 20000 entries \(files and folders\); the limit is 464")
    assert error.code == "unsafe_archive" and error.status_code == 422
    assert time.perf_counter() - started < 0.5
