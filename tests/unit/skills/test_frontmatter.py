"""The frontmatter loader refuses hostile YAML cheaply and reports lines."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from skills.frontmatter import FrontmatterError, load, split
from tests.support_skills import BILLION_LAUGHS


def test_billion_laughs_is_refused_before_any_expansion() -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(FrontmatterError, match="anchors and aliases") as caught:
            load(BILLION_LAUGHS)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.line == 5  # the first anchor (&a), as a SKILL.md line
    assert elapsed < 0.5
    assert peak < 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("yaml_text", "message", "line"),
    [
        ("a: &x 1\nb: *x\n", "anchors and aliases", 2),
        ("a: !!python/object:os.system x\n", "explicit YAML tags", 2),
        ("a: !custom x\n", "explicit YAML tags", 2),
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a'", 4),
        ("m:\n  k: 1\n  k: 2\n", "duplicate key 'm.k'", 4),
        ("? [a, b]\n: c\n", "mapping keys must be plain strings", 2),
        ("a: 1\n---\nb: 2\n", "one YAML document", 3),
        ("a: [1, 2\n", "invalid YAML", None),
        ("[1, 2]\n", "must be a YAML mapping", 2),
    ],
)
def test_refused_yaml(yaml_text: str, message: str, line: int | None) -> None:
    with pytest.raises(FrontmatterError, match=message) as caught:
        load(yaml_text)
    if line is not None:
        assert caught.value.line == line


def test_deep_nesting_and_many_nodes_are_refused() -> None:
    with pytest.raises(FrontmatterError, match="nests deeper"):
        load("a: " + "[" * 50 + "]" * 50 + "\n")
    with pytest.raises(FrontmatterError, match="more than 5000 YAML nodes"):
        load("a: [" + ", ".join(["x"] * 6000) + "]\n")
    with pytest.raises(FrontmatterError, match="larger than 64 KiB"):
        load("a: " + "x" * 70_000 + "\n")


def test_values_are_strings_and_lines_are_recorded() -> None:
    loaded = load("name: 123\nflag: yes\nempty:\nmeta:\n  v: 1.0\nlist: [a, b]\n")
    assert loaded.data == {
        "name": "123",
        "flag": "yes",
        "empty": "",
        "meta": {"v": "1.0"},
        "list": ["a", "b"],
    }
    assert loaded.lines == {"name": 2, "flag": 3, "empty": 4, "meta": 5, "meta.v": 6, "list": 7}
    assert load("").data == {}


def test_split_finds_the_frontmatter_and_body() -> None:
    text = "---\r\nname: x\r\n---\r\nbody\r\n"
    parts = split(text)
    assert parts.raw == "name: x\r\n" and parts.body == "body\r\n" and parts.body_line == 4
    with pytest.raises(FrontmatterError, match="must start with"):
        split("name: x\n---\n")
    with pytest.raises(FrontmatterError, match="not closed"):
        split("---\nname: x\n")
    # '---' inside a value does not end the frontmatter (skills-ref's str.split would)
    assert split("---\ndescription: a---b\n---\n").raw == "description: a---b\n"
