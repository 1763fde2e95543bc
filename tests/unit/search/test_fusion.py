"""Fusion of lexical and dense scores, server boosts and the final ordering."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from gateway.mcp.search import Tuning
from gateway.mcp.search.fusion import blend, boost_servers, top

T = Tuning(lexical_weight=0.5, dense_floor=0.3)


def _a(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def test_lexical_only_keeps_matches_and_their_order() -> None:
    fused = blend(_a(0, 2, 5), None, T)
    assert top(fused, 10) == [2, 1]


def test_blend_scales_bm25_by_the_best_and_adds_cosine() -> None:
    fused = blend(_a(4, 2, 0), _a(0.2, 0.9, 0.5), T)
    assert np.allclose(fused, [0.5 * 1 + 0.5 * 0.2, 0.5 * 0.5 + 0.5 * 0.9, 0.5 * 0.5])
    assert top(fused, 10) == [1, 0, 2]


def test_a_tool_no_word_matched_needs_the_cosine_floor() -> None:
    fused = blend(_a(0, 0, 1), _a(0.29, 0.31, 0.0), T)
    assert top(fused, 10) == [2, 1]  # tool 0: neither a word nor enough meaning


def test_rrf_rewards_agreement_between_rankings() -> None:
    rrf = replace(T, fusion="rrf", rrf_k=1)
    fused = blend(_a(3, 2, 1), _a(0.4, 0.9, 0.8), rrf)
    # tool 1 is second lexically and first by meaning: ahead of tool 0 (first, third)
    assert top(fused, 3)[0] == 1


def test_server_boost_lifts_only_hits_of_the_named_server() -> None:
    fused = blend(_a(1, 1, 0, 0), _a(0.5, 0.5, 0.5, 0.0), T)
    boosted = boost_servers(fused.copy(), [(1.0, np.asarray([1, 3], np.int32))], T)
    assert top(boosted, 10)[0] == 1
    assert not np.isfinite(boosted[3])  # a boost makes no hit of a non-match


def test_top_breaks_ties_by_position_and_handles_small_counts() -> None:
    fused = _a(1, 1, 1, -np.inf)
    assert top(fused, 2) == [0, 1]
    assert top(fused, 10) == [0, 1, 2]
    assert top(fused, 0) == []
