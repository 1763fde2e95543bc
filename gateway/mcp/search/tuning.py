"""The knobs of tool search, one frozen value the gateway sets once at start.

Defaults are the values tuned on the tuning split of ``bench/search_quality``
(never on its held-out split); ``gateway.config_search`` exposes each as an
``MCPGW_SEARCH_*`` setting and :func:`configure` installs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from gateway.config_search import SearchSettings
from gateway.mcp.search.fields import DENSE_TEXT_LIMIT
from gateway.mcp.search.vocabulary import Phrase, default_groups, load_groups, synonym_table


@dataclass(frozen=True)
class Tuning:
    """How tools are indexed and ranked."""

    # BM25F: each field's term counts are weighted before the usual saturation.
    k1: float = 1.2
    b: float = 0.75
    weight_name: float = 3.0
    weight_server: float = 2.0
    weight_description: float = 1.5
    weight_params: float = 1.0
    weight_param_descriptions: float = 0.3
    # An admin's search keywords for a tool weigh like its name (the benchmark has none).
    weight_keywords: float = 3.0
    # A synonym counts this much of the word the query used.
    synonym_weight: float = 0.3
    # Dense (static embeddings from a model shipped in a wheel): "wordllama" or "off".
    dense_model: str = "wordllama"
    # Characters of "server name title description" the model reads (see fields.py).
    dense_text_chars: int = DENSE_TEXT_LIMIT
    # Fusion: "blend" (lexical_weight·bm25/max + (1-lexical_weight)·cosine) or "rrf".
    fusion: str = "blend"
    lexical_weight: float = 0.4
    # BM25F is scaled by "max" (the query's best tool) or "ideal" (a tool having
    # every query word) before the blend.
    lexical_scale: str = "max"
    rrf_k: int = 60
    # Below this cosine, a tool no query word matched is no hit at all.
    dense_floor: float = 0.35
    # Added to a tool's fused score when the query names its server (times the
    # name words' specificity: a common word such as "word" or "time" counts less).
    server_boost: float = 0.2
    # Second stage over the best ``rerank_depth`` candidates: a tool whose action
    # (verb) is the query's gains ``action_weight``; ``coverage_weight`` times the
    # share of its own name words the query has.
    action_weight: float = 0.1
    coverage_weight: float = 0.1
    rerank_depth: int = 50
    # Optional boosts (signals.py): times a tool's share of the calls (log-scaled, from
    # the audit trail), and times the share of the query's words a skill linked to the
    # tool's server has. Small: they break near-ties, they do not outvote the text.
    usage_boost: float = 0.05
    skill_boost: float = 0.1
    # Same tool name on two servers, description and parameter words this alike
    # (Jaccard): one hit, the others as its alternatives.
    dedupe_similarity: float = 0.8
    synonym_groups: tuple[tuple[str, ...], ...] = field(
        default_factory=lambda: tuple(map(tuple, default_groups())), repr=False
    )

    @cached_property
    def synonyms(self) -> dict[Phrase, tuple[Phrase, ...]]:
        """Stemmed member → the other members of its groups (built on first search)."""
        return synonym_table([list(group) for group in self.synonym_groups])


# Built on first use: the default synonym table stems words, which start-up skips.
_current: list[Tuning | None] = [None]


def configure(tuning: Tuning) -> None:
    """Use ``tuning`` for every index built from now on (set at start-up)."""
    _current[0] = tuning


def current() -> Tuning:
    """The tuning indexes are built with."""
    tuning = _current[0]
    if tuning is None:
        tuning = _current[0] = Tuning()
    return tuning


def from_settings(settings: SearchSettings) -> Tuning:
    """The tuning the ``MCPGW_SEARCH_*`` settings describe."""
    return Tuning(
        k1=settings.search_bm25_k1,
        b=settings.search_bm25_b,
        weight_name=settings.search_weight_name,
        weight_server=settings.search_weight_server,
        weight_description=settings.search_weight_description,
        weight_params=settings.search_weight_params,
        weight_param_descriptions=settings.search_weight_param_descriptions,
        weight_keywords=settings.search_weight_keywords,
        synonym_weight=settings.search_synonym_weight,
        dense_model=settings.search_dense_model,
        dense_text_chars=settings.search_dense_text_chars,
        fusion=settings.search_fusion,
        lexical_weight=settings.search_lexical_weight,
        rrf_k=settings.search_rrf_k,
        dense_floor=settings.search_dense_floor,
        server_boost=settings.search_server_boost,
        dedupe_similarity=settings.search_dedupe_similarity,
        action_weight=settings.search_action_weight,
        coverage_weight=settings.search_coverage_weight,
        rerank_depth=settings.search_rerank_depth,
        usage_boost=settings.search_usage_boost,
        skill_boost=settings.search_skill_boost,
        synonym_groups=tuple(map(tuple, load_groups(settings.search_synonyms_file))),
    )
