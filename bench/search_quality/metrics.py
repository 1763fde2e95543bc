"""Retrieval metrics over ranked result lists.

A query's relevant tools are alternatives (the same job on equivalent servers, or
tools that each do the whole task), so a rank position counts as relevant when
any tool shown there (a hit and the duplicates folded into it) is relevant:
R@k is the share of queries with a relevant tool in the first k positions, MRR
the mean of 1/rank of the first one, nDCG@10 binary-gain DCG over the ideal
ranking of the query's relevant tools.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Ranking = Sequence[Sequence[str]]  # per rank position: the tool names shown there


def first_relevant(ranking: Ranking, relevant: set[str]) -> int | None:
    """1-based rank of the first position showing a relevant tool."""
    for rank, names in enumerate(ranking, start=1):
        if relevant.intersection(names):
            return rank
    return None


def ndcg_at(ranking: Ranking, relevant: set[str], k: int = 10) -> float:
    """Binary nDCG@k; each relevant tool earns once, at its first position."""
    seen: set[str] = set()
    dcg = 0.0
    for rank, names in enumerate(ranking[:k], start=1):
        fresh = relevant.intersection(names) - seen
        if fresh:
            seen |= fresh
            dcg += 1 / math.log2(rank + 1)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def summarize(rankings: list[Ranking], relevants: list[set[str]]) -> dict[str, float]:
    """R@1, R@5, R@10, MRR and nDCG@10 over queries."""
    n = len(rankings) or 1
    firsts = [first_relevant(r, rel) for r, rel in zip(rankings, relevants, strict=True)]
    return {
        "R@1": sum(1 for f in firsts if f is not None and f <= 1) / n,
        "R@5": sum(1 for f in firsts if f is not None and f <= 5) / n,
        "R@10": sum(1 for f in firsts if f is not None and f <= 10) / n,
        "MRR": sum(1 / f for f in firsts if f is not None) / n,
        "nDCG@10": sum(ndcg_at(r, rel) for r, rel in zip(rankings, relevants, strict=True)) / n,
    }
