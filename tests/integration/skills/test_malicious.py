"""Hostile uploads are refused whole, with a clear error, leaving nothing on disk or in the
database (SQLite and PostgreSQL). The archives are built here with zipfile."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from skills.models import Skill, SkillBlob, SkillFile, SkillVersion
from tests.conftest import AppHarness
from tests.support_skills import BILLION_LAUGHS, make_zip, skill_md

GOOD = ("evil/SKILL.md", skill_md("evil"))

CASES: dict[str, tuple[bytes, int, str, str]] = {
    # name: (archive, status, code, phrase in the message)
    "zip slip": (
        make_zip([GOOD, ("evil/../../../../tmp/pwned.sh", b"#!/bin/sh\nrm -rf ~\n")]),
        422,
        "unsafe_archive",
        "points outside the skill",
    ),
    "absolute path": (
        make_zip([GOOD, ("/etc/cron.d/evil", b"* * * * * root sh")]),
        422,
        "unsafe_archive",
        "absolute path",
    ),
    "symlink": (
        make_zip(
            [GOOD, ("evil/secrets", b"/etc/shadow")],
            modes={"evil/secrets": stat.S_IFLNK | 0o777},
        ),
        422,
        "unsafe_archive",
        "symbolic link",
    ),
    "device file": (
        make_zip([GOOD, ("evil/null", b"")], modes={"evil/null": stat.S_IFCHR | 0o666}),
        422,
        "unsafe_archive",
        "device",
    ),
    "zip bomb": (
        make_zip([GOOD, ("evil/zeros.bin", b"\0" * (9 * 1024 * 1024))]),
        422,
        "unsafe_archive",
        "inflates more than 100x",
    ),
    "declared bomb": (
        make_zip([GOOD, ("evil/zeros.bin", b"\0" * (64 * 1024 * 1024))]),
        413,
        "skill_too_large",
        "larger than the limit",
    ),
    "10,000 tiny files": (
        make_zip([GOOD, *((f"evil/f{i:05}.txt", b"x") for i in range(10_000))]),
        422,
        "unsafe_archive",
        "has 10001 entries (files and folders); the limit is 464",
    ),
    "30,000 folder entries": (
        make_zip([GOOD, *((f"evil/d{i:06}/", b"") for i in range(30_000))]),
        422,
        "unsafe_archive",
        "has 30001 entries (files and folders); the limit is 464",
    ),
    "invalid UTF-8 frontmatter": (
        make_zip([("evil/SKILL.md", b"---\nname: evil\ndescription: \xff\xfe bad\n---\n")]),
        422,
        "invalid_skill",
        "not valid UTF-8",
    ),
    "YAML bomb": (
        make_zip([("evil/SKILL.md", f"---\n{BILLION_LAUGHS}---\nbody\n".encode())]),
        422,
        "invalid_skill",
        "anchors and aliases",
    ),
}


@pytest.fixture
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where temporary files of this process go (multipart spooling included)."""
    folder = tmp_path / "spool"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_hostile_upload_is_refused_and_leaves_nothing(
    harness: AppHarness, spool_dir: Path, tmp_path: Path, case: str
) -> None:
    data, status, code, phrase = CASES[case]
    data_dir = tmp_path / "data"
    before = {p for p in data_dir.rglob("*")}
    r = await harness.client.post(
        "/api/v1/skills/upload",
        files={"file": ("evil.skill", data)},
        headers=harness.auth(),
        timeout=60,
    )
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and phrase in body["message"], body
    assert body["errors"] and all({"field", "line", "message"} <= set(e) for e in body["errors"])
    # nothing in the database ...
    async with harness.app.state.gw.db.session() as session:  # type: ignore[attr-defined]
        for model in (Skill, SkillVersion, SkillFile, SkillBlob):
            assert await session.scalar(select(func.count()).select_from(model)) == 0
    # ... and nothing on disk: no spooled upload left, no extracted file anywhere
    assert list(spool_dir.iterdir()) == []
    assert not Path("/tmp/pwned.sh").exists()
    new = {p for p in data_dir.rglob("*")} - before
    assert not [p for p in new if "evil" in p.name or p.suffix in {".sh", ".bin", ".txt"}]
    # the validate endpoint refuses the same way and stores nothing either
    r = await harness.client.post(
        "/api/v1/skills/validate", files={"file": ("evil.skill", data)}, headers=harness.auth()
    )
    if code == "invalid_skill":
        assert r.status_code == 200 and r.json()["valid"] is False
        assert phrase in r.json()["errors"][0]["message"]
    else:
        assert r.status_code == status and r.json()["code"] == code
