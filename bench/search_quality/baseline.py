"""The gateway's tool search before hybrid retrieval (kept verbatim as the benchmark's
reference: "today's SEARCH_TOOLS"): BM25 over names, descriptions and
parameter names. Built once per tool view (the catalog changes rarely) and queried
in microseconds; a later pass can add embeddings on top of the same interface."""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from mcp import types

_TOKEN = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
K1, B = 1.2, 0.75
# Name tokens say more about a tool than prose does.
NAME_WEIGHT, PARAM_WEIGHT = 3, 2


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(_CAMEL.sub(" ", text).lower())


def _document(tool: types.Tool) -> list[str]:
    params = list((tool.input_schema or {}).get("properties", {}) or {})
    return (
        tokenize(tool.name.replace("__", " ").replace("_", " ")) * NAME_WEIGHT
        + tokenize(" ".join(params)) * PARAM_WEIGHT
        + tokenize(tool.description or "")
    )


@dataclass
class ToolIndex:
    """BM25 over an inverted index of precomputed weights: a query only sums the
    weights of the tools that share one of its terms."""

    tools: list[types.Tool]
    # term → {tool position: that term's BM25 weight in that tool}
    _weights: dict[str, dict[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts: list[Counter[str]] = []
        lengths: list[int] = []
        for tool in self.tools:
            words = _document(tool)
            counts.append(Counter(words))
            lengths.append(len(words))
        n = max(len(self.tools), 1)
        average = (sum(lengths) / n) or 1.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for position, terms in enumerate(counts):
            for term, tf in terms.items():
                postings.setdefault(term, []).append((position, tf))
        for term, docs in postings.items():
            idf = math.log(1 + (n - len(docs) + 0.5) / (len(docs) + 0.5))
            self._weights[term] = {
                position: idf
                * tf
                * (K1 + 1)
                / (tf + K1 * (1 - B + B * lengths[position] / average))
                for position, tf in docs
            }

    def search(self, query: str, limit: int = 10) -> list[tuple[types.Tool, float]]:
        terms = Counter(t for t in tokenize(query) if t in self._weights)
        if not terms:
            return []
        # Start from a copy of the longest postings (a C-speed copy), add the others.
        ordered = sorted(terms, key=lambda t: len(self._weights[t]), reverse=True)
        first = ordered[0]
        scores = dict(self._weights[first])
        if terms[first] > 1:
            scores = {position: w * terms[first] for position, w in scores.items()}
        for term in ordered[1:]:
            times = terms[term]
            get = scores.get
            for position, weight in self._weights[term].items():
                scores[position] = get(position, 0.0) + weight * times
        tools = self.tools
        best = heapq.nsmallest(
            limit, scores.items(), key=lambda pair: (-pair[1], tools[pair[0]].name)
        )
        return [(tools[position], round(score, 4)) for position, score in best]
