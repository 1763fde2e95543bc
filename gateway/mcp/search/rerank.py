"""Second-stage signals over the fused top candidates: action and name coverage.

Within one server, tools often share their object and differ by their verb
(``get_pull_request``, ``create_pull_request``, ``merge_pull_request``), which
neither BM25 nor a static embedding separates well. So:

- *action*: the query's leading action ("how many" → count, "which … do we
  have" → list, "open a …" → create) against the first action word of the tool's
  name, both looked up in the ``actions`` lexicon of ``vocabulary.json``;
- *coverage*: the share of the tool's own name words (server words aside) the
  query has, directly, by synonym or as its action, so ``get_current_time``
  beats ``convert_time`` for "what time is it now".

Only the few dozen best fused candidates are re-scored, so it costs microseconds.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from gateway.mcp.search.fields import Fields
from gateway.mcp.search.text import stem, tokenize

_DATA = json.loads((Path(__file__).parent / "vocabulary.json").read_text(encoding="utf-8"))


def _phrases() -> dict[tuple[str, ...], frozenset[str]]:
    table: dict[tuple[str, ...], set[str]] = {}
    for action, words in _DATA["actions"].items():
        for phrase in words:
            key = tuple(stem(w) for w in tokenize(phrase))
            table.setdefault(key, set()).add(action)
    return {key: frozenset(actions) for key, actions in table.items()}


@cache
def _actions() -> tuple[dict[tuple[str, ...], frozenset[str]], int, dict[str, str]]:
    """(action phrases → actions, longest phrase, action → its stemmed name), built
    on first use (stemming at import would slow gateway start-up)."""
    phrases = _phrases()
    names = {action: stem(action) for action in _DATA["actions"]}
    return phrases, max(len(key) for key in phrases), names


# Every stemmed word an action is spelt with, by action (for coverage).


# A question asks to read, whatever verb follows ("who changed the flag" wants the
# audit log, not an update); "how many" and "which" narrow it down.
_QUESTION_WORDS = "who what whats which when where why how is are did does do was were has have can"


@cache
def _questions() -> frozenset[str]:
    return frozenset(stem(w) for w in _QUESTION_WORDS.split())


READ = frozenset({"get", "list", "search", "count"})


def query_action(query: str) -> frozenset[str]:
    """The query's leading action: a question reads (see ``_QUESTION_WORDS``); otherwise
    its longest action phrase, the earliest first."""
    words = [stem(w) for w in tokenize(query)]
    found = _leading(words)
    if words and words[0] in _questions():
        return found & READ or READ
    return found


def _leading(words: list[str]) -> frozenset[str]:
    phrases, longest, _ = _actions()
    for size in range(longest, 0, -1):
        for start in range(len(words) - size + 1):
            found = phrases.get(tuple(words[start : start + size]))
            if found:
                return found
    return frozenset()


def tool_action(doc: Fields) -> frozenset[str]:
    """The action of the first action word in the tool's name (none: no verb)."""
    for term in doc.name:
        found = _actions()[0].get((term,))
        if found:
            return found
    return frozenset()


def own_name_terms(doc: Fields) -> frozenset[str]:
    """Name words that are not the server's (``slack_post_message`` → post, messag)."""
    return frozenset(doc.name) - frozenset(doc.server) or frozenset(doc.name)


def coverage(name_terms: frozenset[str], matched: set[str], action: frozenset[str]) -> float:
    """Share of ``name_terms`` the query has (``matched``: its terms and synonyms),
    counting the name of its action ("get", "list") as had."""
    if not name_terms:
        return 0.0
    # An action's own name stands for it in a tool name: "get" in
    # ``get_current_time`` is had by "what time is it", "read" is not.
    spelt = {_actions()[2][a] for a in action}
    return sum(1 for term in name_terms if term in matched or term in spelt) / len(name_terms)
