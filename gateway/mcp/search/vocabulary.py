"""Stop words and synonym groups for tool search, read from ``vocabulary.json``.

Kept as data so the vocabulary can be reviewed and grown without touching the
ranking code. Synonyms are stored stemmed, as tuples (a member can be a phrase:
"pull request"), each mapped to the other members of its groups.
"""

from __future__ import annotations

import json
from pathlib import Path

_DATA = json.loads((Path(__file__).parent / "vocabulary.json").read_text(encoding="utf-8"))
STOPWORDS: frozenset[str] = frozenset(_DATA["stopwords"])

Phrase = tuple[str, ...]


def synonym_table(groups: list[list[str]]) -> dict[Phrase, tuple[Phrase, ...]]:
    """Each stemmed member → the other members of every group it is in."""
    from gateway.mcp.search.text import analyze  # text imports this module's stop words

    table: dict[Phrase, list[Phrase]] = {}
    for group in groups:
        members = [tuple(analyze(member)) for member in group]
        members = [m for m in members if m]
        for member in members:
            others = table.setdefault(member, [])
            others += [m for m in members if m != member and m not in others]
    return {member: tuple(others) for member, others in table.items()}


def default_groups() -> list[list[str]]:
    """The shipped synonym groups."""
    return [list(group) for group in _DATA["synonyms"]]


def load_groups(path: str | None) -> list[list[str]]:
    """The shipped groups plus an operator's own (a JSON list of lists of words)."""
    groups = default_groups()
    if path:
        extra = json.loads(Path(path).read_text(encoding="utf-8"))
        groups += [[str(word) for word in group] for group in extra]
    return groups


_PHRASE_MAX = 3


def expand(terms: list[str], table: dict[Phrase, tuple[Phrase, ...]]) -> list[tuple[str, str]]:
    """Synonym terms for a query's terms: (added term, the query word that brought it).

    Phrases count: "pull request" brings "pr", and "pr" brings "pull" and "request".
    """
    present = set(terms)
    added: dict[str, str] = {}
    for size in range(_PHRASE_MAX, 0, -1):
        for start in range(len(terms) - size + 1):
            phrase = tuple(terms[start : start + size])
            for other in table.get(phrase, ()):
                for term in other:
                    if term not in present and term not in added:
                        added[term] = " ".join(phrase)
    return list(added.items())


__all__ = ["STOPWORDS", "Phrase", "default_groups", "expand", "load_groups", "synonym_table"]
