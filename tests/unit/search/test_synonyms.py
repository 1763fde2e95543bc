"""Synonyms: groups kept as data, expanded at query time, phrases included."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.mcp.search import analyze
from gateway.mcp.search.vocabulary import (
    default_groups,
    expand,
    load_groups,
    synonym_table,
)

TABLE = synonym_table(default_groups())


def _added(query: str) -> dict[str, str]:
    return dict(expand(analyze(query), TABLE))


def test_a_word_brings_the_rest_of_its_group() -> None:
    added = _added("remove a file")
    assert {"delet", "destroy", "drop"} <= set(added)
    assert added["delet"] == "remov"  # and which query word brought it


def test_phrases_expand_both_ways() -> None:
    assert {"pr", "mr"} <= set(_added("review a pull request"))
    assert {"pull", "request", "merg"} <= set(_added("show my PRs"))


def test_words_already_in_the_query_are_not_added_again() -> None:
    added = _added("create or add a ticket")
    assert "creat" not in added and "add" not in added
    assert {"issu", "bug"} <= set(added)


def test_unrelated_words_bring_nothing() -> None:
    assert _added("zebra") == {}


def test_an_operator_file_adds_groups(tmp_path: Path) -> None:
    extra = tmp_path / "synonyms.json"
    extra.write_text(json.dumps([["invoice", "bill"]]))
    table = synonym_table(load_groups(str(extra)))
    assert ("bill",) in table[("invoic",)]
    assert ("bill",) not in TABLE.get(("invoic",), ())
