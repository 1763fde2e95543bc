"""Ranking end to end on a small committed fixture: expected top-1 per query, reasons,
near-duplicate folding, the lexical fallback, and visibility (the ``allow`` hook)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from mcp import types

from gateway.mcp.search import ToolIndex, Tuning

FIXTURE = json.loads((Path(__file__).parent / "fixture.json").read_text())


def _tool(name: str, description: str, params: list[str]) -> types.Tool:
    return types.Tool(
        name=name,
        description=description,
        input_schema={"type": "object", "properties": {p: {"type": "string"} for p in params}},
    )


TOOLS = [_tool(*row) for row in FIXTURE["tools"]]


@pytest.fixture(scope="module")
def index() -> ToolIndex:
    built = ToolIndex(TOOLS)
    assert built.wait_dense(60), "the model shipped in the wordllama wheel must load offline"
    return built


@pytest.mark.parametrize(("query", "expected"), FIXTURE["queries"])
def test_expected_tool_first(index: ToolIndex, query: str, expected: str) -> None:
    hits = index.search(query, 5)
    assert hits and hits[0].tool.name == expected, [h.tool.name for h in hits]


@pytest.mark.parametrize(("query", "expected"), FIXTURE["near"])
def test_known_misses_stay_in_the_top_five(index: ToolIndex, query: str, expected: str) -> None:
    assert expected in [h.tool.name for h in index.search(query, 5)]


def test_results_say_why_they_matched(index: ToolIndex) -> None:
    hit = index.search("open a ticket on github", 1)[0]
    assert hit.tool.name == "github__create_issue"
    assert "server: github" in hit.reason
    assert "synonym: issu" in hit.reason  # "ticket" found "issue"
    assert "meaning" in hit.reason


def test_nonsense_finds_nothing(index: ToolIndex) -> None:
    assert index.search("zzzz qqqq") == []
    assert index.search("") == []
    assert index.search("the of and") == []  # stop words only


def test_lexical_only_when_dense_is_off() -> None:
    lexical = ToolIndex(TOOLS, Tuning(dense_model="off"))
    assert not lexical.wait_dense(1)
    hits = lexical.search("take a screenshot", 3)
    assert hits[0].tool.name == "playwright__browser_take_screenshot"
    assert "meaning" not in hits[0].reason


def test_same_tool_on_two_servers_is_one_hit_with_an_alternative() -> None:
    twin = _tool("github-mirror__create_issue", *FIXTURE["tools"][0][1:])
    index = ToolIndex([*TOOLS, twin], Tuning())
    index.wait_dense(60)
    hits = index.search("create an issue in a github repository", 3)
    names = [h.tool.name for h in hits]
    assert names.count("github__create_issue") + names.count(twin.name) == 1
    assert {hits[0].tool.name, *hits[0].alternatives} == {"github__create_issue", twin.name}
    # folding off (a cosine above 1 never holds): both come back on their own
    apart = ToolIndex([*TOOLS, twin], replace(Tuning(), dedupe_similarity=1.01))
    apart.wait_dense(60)
    names = [h.tool.name for h in apart.search("create an issue in a github repository", 3)]
    assert {"github__create_issue", twin.name} <= set(names)


def test_a_hidden_tool_never_appears(index: ToolIndex) -> None:
    hidden = "stripe__create_refund"

    def allow(tool: types.Tool) -> bool:
        return tool.name != hidden

    for query in ["refund the customer's payment", "stripe create refund", "refund"]:
        for limit in (1, 5, 50):
            hits = index.search(query, limit, allow)
            shown = {h.tool.name for h in hits} | {a for h in hits for a in h.alternatives}
            assert hidden not in shown
    # ... while without the filter it is the best match for those queries.
    assert index.search("refund the customer's payment", 1)[0].tool.name == hidden


def test_a_hidden_duplicate_is_no_alternative() -> None:
    twin = _tool("secret-mirror__create_issue", *FIXTURE["tools"][0][1:])
    index = ToolIndex([*TOOLS, twin])
    index.wait_dense(60)
    hits = index.search("create an issue", 5, lambda t: not t.name.startswith("secret-"))
    assert all(twin.name not in (h.tool.name, *h.alternatives) for h in hits)


def test_limit_is_honoured_even_when_many_are_filtered(index: ToolIndex) -> None:
    hits = index.search("github", 3, lambda t: not t.name.startswith("github__create"))
    assert len(hits) == 3
    assert all(not h.tool.name.startswith("github__create") for h in hits)


def test_a_named_server_wins_over_the_same_tool_elsewhere() -> None:
    gitlab = _tool("gitlab__create_issue", "Create a new issue in a project", ["project", "title"])
    index = ToolIndex([*TOOLS, gitlab])
    index.wait_dense(60)
    assert index.search("open an issue on gitlab", 1)[0].tool.name == "gitlab__create_issue"
    assert index.search("open an issue on github", 1)[0].tool.name == "github__create_issue"
