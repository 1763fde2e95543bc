"""`mcpgw skills validate` and `mcpgw skills package` as a user runs them (real processes)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from tests.support import run
from tests.support_skills import FIXTURES, make_zip, skill_md, tree

PDF = FIXTURES / "valid" / "pdf-processing"


def test_validate_a_valid_folder_file_and_skill_md(tmp_path: Path) -> None:
    for target in (PDF, PDF / "SKILL.md"):
        r = run(tmp_path, "skills", "validate", str(target))
        assert r.returncode == 0, r.stderr
        assert "valid skill 'pdf-processing' (6 files" in r.stdout


def test_validate_reports_every_problem_with_field_and_line(tmp_path: Path) -> None:
    skill = tmp_path / "wrong-folder"
    skill.mkdir()
    (skill / "SKILL.md").write_text(
        "---\nname: Bad--Name\ndescription: ok\nhomepage: https://x\n---\n\nSee references/x.md\n"
    )
    r = run(tmp_path, "skills", "validate", str(skill))
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert "error    homepage (line 4): unknown frontmatter field 'homepage'" in r.stderr
    assert "error    name (line 2): name 'Bad--Name' must be lowercase" in lines
    assert "error    name (line 2): name 'Bad--Name' must not contain consecutive hyphens" in lines
    assert any(
        line.startswith("error    name (line 2): name 'Bad--Name' must equal") for line in lines
    )
    assert any(
        line.startswith("warning  body (line 7): references 'references/x.md'") for line in lines
    )
    assert lines[-1].endswith("not a valid skill (4 error(s))")
    r = run(tmp_path, "skills", "validate", str(skill), "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 1 and report["valid"] is False and len(report["errors"]) == 4


def test_validate_strict_and_lenient(tmp_path: Path) -> None:
    folder = FIXTURES / "invalid" / "unknown-field"
    r = run(tmp_path, "skills", "validate", str(folder), "--strict")
    assert r.returncode == 1 and "error    version (line 4)" in r.stderr
    r = run(tmp_path, "skills", "validate", str(folder), "--lenient")
    assert r.returncode == 0, r.stderr
    assert "warning  version (line 4)" in r.stderr and "valid skill 'unknown-field'" in r.stdout


def test_validate_refuses_hostile_archives_and_bad_paths(tmp_path: Path) -> None:
    slip = tmp_path / "slip.skill"
    slip.write_bytes(make_zip({"x/SKILL.md": skill_md("x"), "x/../../evil": b"!"}))
    r = run(tmp_path, "skills", "validate", str(slip))
    assert r.returncode == 1 and "points outside the skill" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(tmp_path, "skills", "validate", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no such file or folder" in r.stderr
    r = run(tmp_path, "skills", "validate", str(slip), MCPGW_SKILLS_MAX_FILES="zero")
    assert r.returncode == 2 and "MCPGW_SKILLS_MAX_FILES" in r.stderr


def test_limits_come_from_settings(tmp_path: Path) -> None:
    r = run(tmp_path, "skills", "validate", str(PDF), MCPGW_SKILLS_MAX_FILES="3")
    assert r.returncode == 1 and "the skill has 4 files; the limit is 3" in r.stderr


def test_package_builds_a_reproducible_skill_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    r = run(tmp_path, "skills", "package", str(PDF), "-o", str(out))
    assert r.returncode == 0, r.stderr
    built = out / "pdf-processing.skill"
    assert f"wrote {built}" in r.stdout
    first = built.read_bytes()
    r = run(tmp_path, "skills", "package", str(PDF))  # default: ./<name>.skill
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "pdf-processing.skill").read_bytes() == first
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
        assert all(n.startswith("pdf-processing/") for n in names)
        archive.extractall(tmp_path / "unpacked")
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in archive.infolist()}
    assert modes["pdf-processing/scripts/extract_text.py"] == 0o755
    assert modes["pdf-processing/SKILL.md"] == 0o644
    for name, mode in modes.items():
        (tmp_path / "unpacked" / name).chmod(mode)
    assert tree(tmp_path / "unpacked" / "pdf-processing") == tree(PDF)
    r = run(tmp_path, "skills", "validate", str(built))
    assert r.returncode == 0 and "valid skill 'pdf-processing'" in r.stdout


def test_package_refuses_an_invalid_skill(tmp_path: Path) -> None:
    folder = tmp_path / "name-mismatch"
    shutil.copytree(FIXTURES / "invalid" / "name-mismatch", folder)
    r = run(tmp_path, "skills", "package", str(folder), "-o", str(tmp_path / "x.skill"))
    assert r.returncode == 1
    assert "must equal the skill's folder name" in r.stderr and "not packaged" in r.stderr
    assert not (tmp_path / "x.skill").exists()
    r = run(tmp_path, "skills", "package", str(FIXTURES / "invalid" / "unknown-field"), "--lenient")
    assert r.returncode == 0 and (tmp_path / "unknown-field.skill").is_file()


def test_skills_help_lists_the_commands(tmp_path: Path) -> None:
    r = run(tmp_path, "skills", "--help")
    assert r.returncode == 0
    for command in ("validate", "package", "import", "upload", "download", "list"):
        assert command in r.stdout
