"""Tokenization and analysis: identifiers split into words, stop words out, stems in."""

from __future__ import annotations

import pytest

from gateway.mcp.search import analyze, tokenize


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("github__create_issue", ["github", "create", "issue"]),
        ("getForecastNow", ["get", "forecast", "now"]),
        ("HTMLParser", ["html", "parser"]),
        ("listPRsForRepo", ["list", "prs", "for", "repo"]),
        ("getURLs", ["get", "urls"]),
        ("s3_list-buckets", ["s", "3", "list", "buckets"]),
        ("v2.get", ["v", "2", "get"]),
        ("ec2 instance", ["ec", "2", "instance"]),
        ("browser_take_screenshot", ["browser", "take", "screenshot"]),
        ("Kebab-case/and.dots", ["kebab", "case", "and", "dots"]),
    ],
)
def test_names_split_on_case_separators_and_digits(text: str, words: list[str]) -> None:
    assert tokenize(text) == words


def test_analysis_drops_stop_words_and_stems() -> None:
    assert analyze("Listing the open pull requests waiting for my review") == [
        "list",
        "open",
        "pull",
        "request",
        "wait",
        "review",
    ]
    # Inflections meet: a query and a tool name need not use the same form.
    assert analyze("lists")[0] == analyze("listing")[0] == analyze("list")[0]
    assert analyze("what is the") == []


def test_dense_text_is_the_opening_of_server_name_and_description() -> None:
    from mcp import types

    from gateway.mcp.search.fields import DENSE_TEXT_LIMIT, dense_text

    tool = types.Tool(
        name="github__create_issue",
        description="Create a new issue in a repository. " + "Long notes on every field. " * 40,
        input_schema={"type": "object"},
    )
    assert dense_text(tool).startswith("github create issue create new issue repository")
    # The model reads only the opening (the rest dilutes an averaged embedding)...
    assert len(dense_text(tool)) <= DENSE_TEXT_LIMIT
    # ...as long as MCPGW_SEARCH_DENSE_TEXT_CHARS says.
    assert len(dense_text(tool, 1000)) > 2 * len(dense_text(tool, 200))


def test_pasted_values_become_their_kinds() -> None:
    from gateway.mcp.search.text import literals_as_kinds

    said = literals_as_kinds(
        "mail bob@example.com the draft.md, chart.png and https://blog.example.com/post"
    )
    assert tokenize(said) == ["mail", "email", "the", "file", "image", "file", "and", "url"]
    assert tokenize(literals_as_kinds("print document.title")) == ["print", "code"]
    # A hash is no word: its digits would match "1, 2, 3" in some description.
    assert tokenize(literals_as_kinds("what's in commit a1b2c3d")) == ["what", "s", "in", "commit"]
    assert tokenize(literals_as_kinds("restart ec2 i-0abc123 and s3")) == [
        "restart",
        "ec",
        "2",
        "i",
        "0",
        "abc",
        "123",
        "and",
        "s",
        "3",
    ]


def test_indefinite_pronouns_are_stop_words() -> None:
    # "everything" is no product here, though a test server is called that.
    assert analyze("unstage everything I added") == ["unstag", "add"]
    assert analyze("is anything or something running") == ["run"]
