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
