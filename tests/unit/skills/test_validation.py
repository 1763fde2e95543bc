"""The Agent Skills rules: every fixture's verdict, field and line; agreement with skills-ref."""

from __future__ import annotations

from pathlib import Path

import pytest
import skills_ref

from skills.archive import Limits, read_directory
from skills.validation import Report, name_problems, validate
from tests.support_skills import DIFFERENCES, INVALID, VALID, skill_md


def _report(folder: Path, *, strict: bool = True) -> Report:
    package = read_directory(folder, Limits())
    return validate(package.files, folder=package.folder, strict=strict)


# Each invalid fixture breaks one rule: the (field, SKILL.md line) of its first error.
EXPECTED: dict[str, tuple[str, int | None]] = {
    "Upper-Case": ("name", 2),
    "a-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd-abcd": ("name", 2),
    "bad-yaml": ("frontmatter", 4),
    "compatibility-too-long": ("compatibility", 4),
    "description-empty": ("description", 3),
    "description-missing": ("description", 1),
    "description-too-long": ("description", 3),
    "double--hyphen": ("name", 2),
    "duplicate-key": ("description", 4),
    "leading-hyphen": ("name", 2),
    "missing-skill-md": ("SKILL.md", None),
    "name-empty": ("name", 2),
    "name-mismatch": ("name", 2),
    "name-missing": ("name", 1),
    "no-frontmatter": ("frontmatter", 1),
    "not-a-mapping": ("frontmatter", 2),
    "trailing-hyphen-": ("name", 2),
    "unclosed-frontmatter": ("frontmatter", 1),
    "under_score": ("name", 2),
    "unknown-field": ("version", 4),
    "yaml-anchors": ("frontmatter", 3),
    "yaml-tag": ("frontmatter", 3),
    "café-notes": ("name", 2),
    "compatibility-empty": ("compatibility", 4),
    "metadata-nested": ("metadata.tags", 5),
}


def test_every_invalid_fixture_has_an_expectation() -> None:
    assert {p.name for p in INVALID + DIFFERENCES} == set(EXPECTED)
    assert len(VALID) >= 5


@pytest.mark.parametrize("folder", VALID, ids=lambda p: p.name)
def test_valid_fixtures_pass_strict(folder: Path) -> None:
    report = _report(folder)
    assert report.valid, report.as_dict()
    assert report.skill is not None and report.skill.name == folder.name
    assert report.warnings == [], report.as_dict()


@pytest.mark.parametrize("folder", INVALID + DIFFERENCES, ids=lambda p: p.name)
def test_invalid_fixtures_name_field_and_line(folder: Path) -> None:
    report = _report(folder)
    assert not report.valid
    assert report.skill is None
    first = report.errors[0]
    assert (first.field, first.line) == EXPECTED[folder.name], report.as_dict()
    assert first.message


@pytest.mark.parametrize("folder", VALID + INVALID, ids=lambda p: p.name)
def test_strict_verdict_agrees_with_skills_ref(folder: Path) -> None:
    reference = skills_ref.validate(folder)
    ours = _report(folder, strict=True)
    assert ours.valid == (reference == []), (reference, ours.as_dict())


@pytest.mark.parametrize("folder", DIFFERENCES, ids=lambda p: p.name)
def test_deliberate_differences_from_skills_ref(folder: Path) -> None:
    """skills-ref accepts these; the spec (or our URL-safe names) says no. docs/skills.md."""
    assert skills_ref.validate(folder) == []
    assert not _report(folder).valid


def test_every_problem_is_reported_at_once() -> None:
    text = (
        "---\n"
        "name: Bad--Name-\n"
        "description: ''\n"
        "compatibility: " + "c" * 600 + "\n"
        "metadata:\n"
        "  ok: yes\n"
        "  nested:\n"
        "    a: b\n"
        "homepage: https://example.com\n"
        "---\n"
        "body\n"
    ).encode()
    report = validate({"SKILL.md": text}, folder="elsewhere")
    got = {(p.field, p.line) for p in report.errors}
    assert {
        ("name", 2),
        ("description", 3),
        ("compatibility", 4),
        ("metadata.nested", 7),
        ("homepage", 9),
    } <= got
    messages = " ".join(p.message for p in report.errors)
    for phrase in ("lowercase", "end with a hyphen", "consecutive", "folder name", "1-500"):
        assert phrase in messages


def test_lenient_keeps_unknown_fields_with_a_warning() -> None:
    text = b"---\nname: x\ndescription: d\nversion: 1.0\nauthor: me\n---\nbody\n"
    strict = validate({"SKILL.md": text}, folder="x", strict=True)
    assert [(p.field, p.line) for p in strict.errors] == [("version", 4), ("author", 5)]
    lenient = validate({"SKILL.md": text}, folder="x", strict=False)
    assert lenient.valid and lenient.skill is not None
    assert lenient.skill.frontmatter == {
        "name": "x",
        "description": "d",
        "version": "1.0",
        "author": "me",
    }
    assert [(p.field, p.severity) for p in lenient.warnings] == [
        ("version", "warning"),
        ("author", "warning"),
    ]


def test_parsed_fields_and_verbatim_frontmatter() -> None:
    raw = (
        "name: pdf\n"
        "description: >\n"
        "  Folded text\n"
        "  over lines.\n"
        "license: MIT\n"
        "metadata:\n"
        "  version: 1.0\n"
        "allowed-tools: Bash(git:*)  Read\n"
    )
    report = validate({"SKILL.md": f"---\n{raw}---\n# Body\n".encode()}, folder="pdf")
    skill = report.skill
    assert skill is not None
    assert skill.frontmatter_raw == raw
    assert skill.description == "Folded text over lines.\n"
    assert skill.metadata == {"version": "1.0"}  # every scalar is a string, as in strictyaml
    assert skill.allowed_tools == ["Bash(git:*)", "Read"]
    assert skill.allowed_tools_line == 9
    assert skill.body == "# Body\n" and skill.body_line == 11


def test_allowed_tools_as_a_list_is_accepted_with_a_warning() -> None:
    text = b"---\nname: x\ndescription: d\nallowed-tools:\n  - Read\n  - Grep\n---\nbody\n"
    report = validate({"SKILL.md": text}, folder="x")
    assert report.valid and report.skill is not None
    assert report.skill.allowed_tools == ["Read", "Grep"]
    assert [(p.field, p.line) for p in report.warnings] == [("allowed-tools", 4)]
    bad = validate(
        {"SKILL.md": b"---\nname: x\ndescription: d\nallowed-tools:\n  a: b\n---\n"}, folder="x"
    )
    assert [(p.field, p.line) for p in bad.errors] == [("allowed-tools", 4)]


def test_body_guidance_warns_but_never_fails() -> None:
    long_body = "".join(f"line {i}\n" for i in range(600))
    report = validate({"SKILL.md": skill_md("x", body=long_body)}, folder="x")
    assert report.valid
    lines_warning = next(p for p in report.warnings if "lines" in p.message)
    assert lines_warning.field == "body" and lines_warning.line == 5 + 500
    wordy = "word " * 5000 + "\n"
    report = validate({"SKILL.md": skill_md("x", body=wordy)}, folder="x")
    assert report.valid and any("tokens" in p.message for p in report.warnings)
    empty = validate({"SKILL.md": skill_md("x", body="")}, folder="x")
    assert empty.valid and [p.field for p in empty.warnings] == ["body"]


def test_references_to_missing_files_are_warnings_with_lines() -> None:
    body = (
        "See [the guide](references/GUIDE.md) and [web](https://example.com).\n"
        "Run `scripts/run.py`, then `scripts/missing.sh`.\n"
        "![logo](assets/logo.png) [top](#top)\n"
    )
    files = {"SKILL.md": skill_md("x", body=body), "scripts/run.py": b"", "assets/logo.png": b""}
    report = validate(files, folder="x")
    assert report.valid
    assert [(p.line, p.message) for p in report.warnings] == [
        (6, "references 'references/GUIDE.md', which is not a file of the skill"),
        (7, "references 'scripts/missing.sh', which is not a file of the skill"),
    ]


def test_skill_md_name_case_and_bom() -> None:
    lower = {"skill.md": skill_md("x")}
    assert [p.field for p in validate(lower, folder="x").errors] == ["SKILL.md"]
    lenient = validate(lower, folder="x", strict=False)
    assert lenient.valid and "SKILL.md" in lenient.warnings[0].message
    bom = validate({"SKILL.md": b"\xef\xbb\xbf" + skill_md("x")}, folder="x")
    assert bom.valid and bom.warnings[0].message == "starts with a byte-order mark"


def test_invalid_utf8_names_the_line() -> None:
    data = b"---\nname: x\ndescription: caf\xe9\n---\nbody\n"
    report = validate({"SKILL.md": data}, folder="x")
    assert [(p.field, p.line) for p in report.errors] == [("SKILL.md", 3)]
    assert "not valid UTF-8" in report.errors[0].message


def test_nul_characters_are_refused() -> None:
    report = validate({"SKILL.md": skill_md("x", body="a\x00b")}, folder="x")
    assert [(p.field, p.line) for p in report.errors] == [("SKILL.md", 6)]


def test_a_bare_skill_md_takes_its_name_as_folder() -> None:
    assert validate({"SKILL.md": skill_md("any-name")}, folder=None).valid


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a", True),
        ("pdf-processing", True),
        ("v2-api", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        ("-a", False),
        ("a-", False),
        ("a--b", False),
        ("A", False),
        ("a_b", False),
        ("a.b", False),
        ("a b", False),
        ("\uff46\uff55\uff4c\uff4c", False),  # fullwidth "full"
        ("é", False),
    ],
)
def test_name_rules(name: str, ok: bool) -> None:
    assert (name_problems(name) == []) is ok
