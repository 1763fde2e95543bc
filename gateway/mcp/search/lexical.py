"""BM25F over an inverted index held in numpy arrays.

Each field's term counts are weighted (name over description, say) and summed
before BM25's saturation and length normalisation. Postings are two arrays per
term (tool positions, precomputed weights), so a query adds a few arrays into a
score vector, and 10,000 tools cost a few MB rather than a dict entry per posting.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import numpy.typing as npt

from gateway.mcp.search.fields import Fields
from gateway.mcp.search.tuning import Tuning

Scores = npt.NDArray[np.float32]


def _weighted_counts(doc: Fields, tuning: Tuning) -> dict[str, float]:
    counts: dict[str, float] = defaultdict(float)
    for terms, weight in (
        (doc.name, tuning.weight_name),
        (doc.server, tuning.weight_server),
        (doc.description, tuning.weight_description),
        (doc.params, tuning.weight_params),
        (doc.param_descriptions, tuning.weight_param_descriptions),
        (doc.keywords, tuning.weight_keywords),
    ):
        for term in terms:
            counts[term] += weight
    return counts


class LexicalIndex:
    """BM25F scores of every tool for a bag of weighted query terms."""

    def __init__(self, docs: list[Fields], tuning: Tuning) -> None:
        self.size = len(docs)
        counts = [_weighted_counts(doc, tuning) for doc in docs]
        lengths = [sum(c.values()) for c in counts]
        average = (sum(lengths) / max(self.size, 1)) or 1.0
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for position, terms in enumerate(counts):
            norm = tuning.k1 * (1 - tuning.b + tuning.b * lengths[position] / average)
            for term, tf in terms.items():
                entry = postings.get(term)
                if entry is None:
                    entry = postings[term] = ([], [])
                entry[0].append(position)
                entry[1].append(tf * (tuning.k1 + 1) / (tf + norm))
        self._postings: dict[str, tuple[npt.NDArray[np.int32], Scores]] = {}
        self._idf: dict[str, float] = {}
        self._saturation = tuning.k1 + 1
        self._unknown_idf = math.log(1 + (self.size + 0.5) / 0.5)
        for term, (positions, weights) in postings.items():
            idf = math.log(1 + (self.size - len(positions) + 0.5) / (len(positions) + 0.5))
            self._idf[term] = idf
            self._postings[term] = (
                np.asarray(positions, dtype=np.int32),
                np.asarray(weights, dtype=np.float32) * np.float32(idf),
            )

    def known(self, term: str) -> bool:
        """Whether any tool has ``term``."""
        return term in self._postings

    def ideal(self, terms: dict[str, float]) -> float:
        """The score of a tool that had every query term as often as can count (BM25
        saturates at idf·(k1+1)); terms no tool has count at the highest idf."""
        return self._saturation * sum(
            weight * self._idf.get(term, self._unknown_idf) for term, weight in terms.items()
        )

    def scores(self, terms: dict[str, float]) -> Scores | None:
        """Every tool's BM25F score for ``terms`` (term → query weight); None: no
        term is in the index."""
        hit = [(self._postings[t], w) for t, w in terms.items() if t in self._postings]
        if not hit:
            return None
        scores = np.zeros(self.size, dtype=np.float32)
        for (positions, weights), times in hit:
            # A term's positions are distinct, so fancy-index addition is exact.
            scores[positions] += weights * np.float32(times)
        return scores
