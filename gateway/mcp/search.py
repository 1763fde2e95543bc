"""Tool search for the `search_execute` interface: BM25 over names, descriptions and
parameter names. Built once per tool view (the catalog changes rarely) and queried
in microseconds; a later pass can add embeddings on top of the same interface."""

from __future__ import annotations

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
    tools: list[types.Tool]
    _docs: list[Counter[str]] = field(default_factory=list)
    _lengths: list[int] = field(default_factory=list)
    _idf: dict[str, float] = field(default_factory=dict)
    _average: float = 1.0

    def __post_init__(self) -> None:
        frequencies: Counter[str] = Counter()
        for tool in self.tools:
            words = _document(tool)
            counts = Counter(words)
            self._docs.append(counts)
            self._lengths.append(len(words))
            frequencies.update(counts.keys())
        n = max(len(self.tools), 1)
        self._average = (sum(self._lengths) / n) or 1.0
        self._idf = {
            term: math.log(1 + (n - df + 0.5) / (df + 0.5)) for term, df in frequencies.items()
        }

    def search(self, query: str, limit: int = 10) -> list[tuple[types.Tool, float]]:
        terms = [t for t in tokenize(query) if t in self._idf]
        if not terms:
            return []
        scored = []
        for i, counts in enumerate(self._docs):
            score = 0.0
            length_norm = K1 * (1 - B + B * self._lengths[i] / self._average)
            for term in terms:
                tf = counts.get(term, 0)
                if tf:
                    score += self._idf[term] * tf * (K1 + 1) / (tf + length_norm)
            if score > 0:
                scored.append((score, i))
        scored.sort(key=lambda pair: (-pair[0], self.tools[pair[1]].name))
        return [(self.tools[i], round(score, 4)) for score, i in scored[:limit]]
