"""Fusing the lexical and dense rankings into one, and the signals on top.

A tuned linear blend is the default: BM25F scaled by the query's best BM25F (so
the top lexical match weighs 1) plus cosine similarity. Reciprocal rank fusion is
the alternative that needs no scaling. A tool is a candidate when a query word
matched it or its cosine clears a floor; a query naming a server lifts that
server's tools a little.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.mcp.search.lexical import Scores
from gateway.mcp.search.tuning import Tuning

Positions = npt.NDArray[np.int32]
NOT_A_HIT = np.float32(-np.inf)


def blend(
    lexical: Scores | None,
    dense: Scores | None,
    tuning: Tuning,
    ideal: float = 0.0,
    floor: float | None = None,
) -> Scores:
    """One score a tool (``-inf``: not a hit) from either ranking or both. BM25F is
    scaled by ``ideal`` (the score of a tool having every query word) when given,
    else by the query's best: a query whose words few tools have then leans on
    meaning, not on whichever tool happened to share one word. ``floor``: the
    cosine a tool no word matched needs (default: the tuning's)."""
    if dense is None:
        if lexical is None:
            raise ValueError("nothing to fuse")
        return np.where(lexical > 0, lexical, NOT_A_HIT).astype(np.float32)
    candidate = dense >= (tuning.dense_floor if floor is None else floor)
    if lexical is not None:
        candidate |= lexical > 0
    if tuning.fusion == "rrf":
        fused = _rrf(dense, tuning.rrf_k)
        if lexical is not None:
            fused += _rrf(np.where(lexical > 0, lexical, NOT_A_HIT), tuning.rrf_k)
    else:
        weight = np.float32(tuning.lexical_weight)
        fused = (np.float32(1) - weight) * dense
        if lexical is not None:
            best = ideal if ideal > 0 else float(lexical.max())
            if best > 0:
                fused = fused + weight * lexical / np.float32(best)
    return np.where(candidate, fused, NOT_A_HIT).astype(np.float32)


def _rrf(scores: Scores, k: int) -> Scores:
    """1/(k + rank) for tools with a finite score, 0 for the rest."""
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float32)
    ranks[order] = np.arange(1, len(scores) + 1, dtype=np.float32)
    return np.where(np.isfinite(scores), 1 / (k + ranks), 0).astype(np.float32)


def boost_servers(fused: Scores, named: list[tuple[float, Positions]], tuning: Tuning) -> Scores:
    """Lift the tools of servers the query names (``named``: the share of the
    server's name words the query has, and its tools' positions)."""
    for share, positions in named:
        block = fused[positions]
        fused[positions] = np.where(
            np.isfinite(block), block + np.float32(tuning.server_boost * share), block
        )
    return fused


def top(fused: Scores, count: int) -> list[int]:
    """Positions of the ``count`` best finite scores, best first (ties: position)."""
    count = min(count, len(fused))
    if count <= 0:
        return []
    part = np.argpartition(-fused, count - 1)[:count] if count < len(fused) else np.arange(count)
    part = part[np.isfinite(fused[part])]
    ordered: list[int] = part[np.lexsort((part, -fused[part]))].tolist()
    return ordered
