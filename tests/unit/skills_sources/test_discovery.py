"""Skill discovery in a folder, following `npx skills` 1.7.4 `discoverSkills`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skills.sources import discover_skills
from tests.support import skill_md, write_files


def found(
    root: Path, subpath: str | None = None, *, full_depth: bool = False
) -> list[tuple[str, str]]:
    return [(s.name, s.subpath) for s in discover_skills(root, subpath, full_depth=full_depth)]


def test_a_root_skill_md_is_the_only_answer(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {"SKILL.md": skill_md("root-skill"), "skills/other/SKILL.md": skill_md("other")},
    )
    assert found(tmp_path) == [("root-skill", "")]
    # --full-depth keeps looking
    assert found(tmp_path, full_depth=True) == [("root-skill", ""), ("other", "skills/other")]


def test_an_invalid_root_skill_md_does_not_stop_the_search(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {"SKILL.md": "---\nname: x\n---\nno description", "skills/a/SKILL.md": skill_md("a")},
    )
    skipped: list[str] = []
    assert [s.name for s in discover_skills(tmp_path, skipped=skipped)] == ["a"]
    assert skipped == ["SKILL.md: front matter lacks description"]


@pytest.mark.parametrize(
    "container",
    [
        "skills",
        "skills/.curated",
        "skills/.experimental",
        "skills/.system",
        ".claude/skills",
        ".agents/skills",
        ".codex/skills",
        ".github/skills",
        ".posit/assistant/skills",
    ],
)
def test_container_folders(tmp_path: Path, container: str) -> None:
    write_files(tmp_path, {f"{container}/my-skill/SKILL.md": skill_md("my-skill")})
    assert found(tmp_path) == [("my-skill", f"{container}/my-skill")]


def test_containers_are_searched_three_levels_deep_and_skill_folders_are_not_entered(
    tmp_path: Path,
) -> None:
    write_files(
        tmp_path,
        {
            "skills/group/sub/deep/SKILL.md": skill_md("three-down"),
            "skills/group/sub/deep/more/x/SKILL.md": skill_md("too-deep"),
            "skills/outer/SKILL.md": skill_md("outer"),
            "skills/outer/inner/SKILL.md": skill_md("inside-a-skill"),
            "top/SKILL.md": skill_md("top-level-child"),
        },
    )
    assert found(tmp_path) == [
        ("top-level-child", "top"),
        ("three-down", "skills/group/sub/deep"),
        ("outer", "skills/outer"),
    ]


def test_the_fallback_searches_five_levels_and_skips_build_folders(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "a/b/c/d/e/SKILL.md": skill_md("five-down"),
            "a/b/c/d/e/f/SKILL.md": skill_md("six-down-inside"),
            "p/q/r/s/t/u/SKILL.md": skill_md("six-down"),
            "node_modules/pkg/SKILL.md": skill_md("vendored"),
            "x/dist/y/SKILL.md": skill_md("built"),
            "x/__pycache__/SKILL.md": skill_md("cache"),
        },
    )
    # the fallback (unlike the walk) does enter skill folders
    assert found(tmp_path) == [("five-down", "a/b/c/d/e")]


def test_the_fallback_only_runs_when_nothing_else_was_found(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {"skills/a/SKILL.md": skill_md("a"), "docs/x/y/SKILL.md": skill_md("buried")},
    )
    assert found(tmp_path) == [("a", "skills/a")]
    assert found(tmp_path, full_depth=True) == [("a", "skills/a"), ("buried", "docs/x/y")]


def test_marketplace_and_plugin_manifests(tmp_path: Path) -> None:
    marketplace = {
        "name": "acme-market",
        "metadata": {"pluginRoot": "./plugins"},
        "plugins": [
            {"name": "docs-kit", "source": "./docs", "skills": ["./tools/writer"]},
            {"name": "no-list", "source": "./bare"},
            {"name": "elsewhere", "source": {"source": "github", "repo": "o/r"}},
            {"name": "escape", "source": "./../../outside", "skills": ["./x"]},
            {"name": "not-relative", "source": "docs2"},
        ],
    }
    plugin = {"name": "root-plugin", "skills": ["./extras/helper", "/etc/abs", "../up"]}
    write_files(
        tmp_path,
        {
            ".claude-plugin/marketplace.json": json.dumps(marketplace),
            ".claude-plugin/plugin.json": json.dumps(plugin),
            "plugins/docs/tools/writer/SKILL.md": skill_md("writer"),
            "plugins/docs/tools/reviewer/SKILL.md": skill_md("reviewer"),
            "plugins/docs/skills/styler/SKILL.md": skill_md("styler"),
            "plugins/bare/skills/plain/SKILL.md": skill_md("plain"),
            "plugins/docs2/skills/hidden/SKILL.md": skill_md("hidden-by-walk"),
            "extras/helper/SKILL.md": skill_md("helper"),
        },
    )
    skills = {s.name: s for s in discover_skills(tmp_path)}
    # walked: the folders holding listed skills and each plugin's skills/ (one level)
    assert set(skills) == {"writer", "reviewer", "styler", "plain", "helper"}
    assert skills["writer"].plugin == "docs-kit"
    assert skills["writer"].subpath == "plugins/docs/tools/writer"
    assert skills["reviewer"].plugin is None  # found in the folder, not listed
    assert skills["helper"].plugin == "root-plugin"
    assert skills["plain"].plugin is None


def test_front_matter_rules(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            # YAML's "\e" is ESC: terminal escapes and line breaks are cleaned away
            "skills/ok/SKILL.md": skill_md("ok", '"Does \\e[31mthings\\e[0m\\nwell."'),
            "skills/zz-dup/SKILL.md": skill_md("ok", "same name, later"),
            "skills/no-fm/SKILL.md": "# just markdown\n",
            "skills/bad-yaml/SKILL.md": "---\nname: [unclosed\n---\n",
            "skills/not-str/SKILL.md": "---\nname: 12\ndescription: x\n---\n",
            "skills/internal/SKILL.md": "---\nname: internal-one\ndescription: d\nmetadata:\n  internal: true\n---\n",
            "skills/bom/SKILL.md": "\ufeff---\r\nname: bom\r\ndescription: crlf\r\n---\r\nbody",
        },
    )
    skipped: list[str] = []
    skills = discover_skills(tmp_path, skipped=skipped)
    assert [(s.name, s.description) for s in skills] == [
        ("bom", "crlf"),
        ("ok", "Does things well."),
    ]
    assert any(s.startswith("skills/bad-yaml/SKILL.md: YAML error") for s in skipped)
    assert "skills/no-fm/SKILL.md: front matter lacks name, description" in skipped
    assert "skills/not-str/SKILL.md: front matter name and description must be strings" in skipped
    named = discover_skills(tmp_path, include_internal=True)
    assert "internal-one" in [s.name for s in named]


def test_installed_copies_listed_in_the_lock_file_are_left_out(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "skills-lock.json": json.dumps({"version": 1, "skills": {"Vendored Skill": {}}}),
            ".claude/skills/vendored-skill/SKILL.md": skill_md("vendored-skill"),
            ".claude/skills/own/SKILL.md": skill_md("own"),
            "skills/vendored-skill/SKILL.md": skill_md("vendored-skill", "the real one"),
        },
    )
    skills = discover_skills(tmp_path)
    assert [(s.name, s.subpath) for s in skills] == [
        ("vendored-skill", "skills/vendored-skill"),
        ("own", ".claude/skills/own"),
    ]


def test_a_subpath_narrows_the_search(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {
            "skills/a/SKILL.md": skill_md("a"),
            "packs/one/skills/b/SKILL.md": skill_md("b"),
            "packs/one/.agents/skills/c/SKILL.md": skill_md("c"),
        },
    )
    assert found(tmp_path, "packs/one") == [
        ("b", "packs/one/skills/b"),
        ("c", "packs/one/.agents/skills/c"),
    ]
    assert found(tmp_path, "skills/a") == [("a", "skills/a")]
    with pytest.raises(ValueError, match="leaves the checkout"):
        discover_skills(tmp_path / "skills", "../packs")


def test_symlinks_are_not_followed_out_of_the_checkout(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_files(outside, {"SKILL.md": skill_md("outside"), "s/SKILL.md": skill_md("s")})
    repo = tmp_path / "repo"
    write_files(repo, {"skills/real/SKILL.md": skill_md("real")})
    os.symlink(outside / "s", repo / "skills" / "linked-dir")
    (repo / "skills" / "linked-file").mkdir()
    os.symlink(outside / "SKILL.md", repo / "skills" / "linked-file" / "SKILL.md")
    assert found(repo) == [("real", "skills/real")]
