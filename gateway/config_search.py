"""The tool-search part of the gateway's settings (mixed into :class:`gateway.config.Settings`).

How SEARCH_TOOLS and REST ``tools/search`` rank tools. Defaults were tuned on the
tuning split of ``bench/search_quality`` (``python -m bench.search_quality``), never
on its held-out split; change them only with that benchmark's figures.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class SearchSettings(BaseModel):
    """Tool search knobs. Field ``search_foo`` is ``MCPGW_SEARCH_FOO``."""

    search_dense_model: Literal["wordllama", "off"] = Field(
        "wordllama",
        description="Static-embedding model shipped in a wheel (loaded in the background on "
        "first use), or `off` for lexical search only.",
    )
    search_preload: bool = Field(
        True, description="Start loading the model in the background when the gateway starts."
    )
    search_fusion: Literal["blend", "rrf"] = Field(
        "blend", description="`blend`: weighted sum of scaled BM25F and cosine; `rrf`: rank fusion."
    )
    search_dense_text_chars: int = Field(
        200,
        ge=20,
        le=5000,
        description="Characters of a tool's server, name and description the model embeds "
        "(its opening says what it is for; the rest dilutes an averaged embedding).",
    )
    search_lexical_weight: float = Field(
        0.4, ge=0, le=1, description="Share of scaled BM25F in the blend (the rest: cosine)."
    )
    search_rrf_k: int = Field(60, ge=1, description="The k of reciprocal rank fusion.")
    search_dense_floor: float = Field(
        0.35,
        ge=-1,
        le=1,
        description="Cosine a tool needs to be a hit when no query word matches it.",
    )
    search_server_boost: float = Field(
        0.2,
        ge=0,
        description="Added to a tool's score when the query names its server (less for a "
        "server name that is a common word).",
    )
    search_synonym_weight: float = Field(
        0.3, ge=0, le=1, description="Weight of a synonym relative to the query's own word."
    )
    search_dedupe_similarity: float = Field(
        0.8,
        ge=0,
        le=1.01,
        description="Same tool name on two servers whose description and parameter words are "
        "this alike (Jaccard) or more: one hit, the other listed as an alternative (above 1: "
        "never).",
    )
    search_action_weight: float = Field(
        0.1, ge=0, description="Added when a tool's action (its name's verb) is the query's."
    )
    search_coverage_weight: float = Field(
        0.1, ge=0, description="Times the share of a tool's own name words the query has."
    )
    search_rerank_depth: int = Field(
        50, ge=0, le=1000, description="How many fused candidates the second stage re-scores."
    )
    search_usage_boost: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Added times a tool's share of the tool calls (log-scaled; from the audit "
        "trail, read every `search_signals_seconds`); 0: off.",
    )
    search_usage_days: float = Field(
        30, gt=0, description="Days of tool calls the usage boost counts."
    )
    search_skill_boost: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Added times the share of the query's words a skill linked to the tool's "
        "server has (at least half of them); 0: off.",
    )
    search_signals_seconds: float = Field(
        300, ge=5, description="How often the usage counts and skill links are re-read."
    )
    search_bm25_k1: float = Field(1.2, ge=0, description="BM25 term-frequency saturation.")
    search_bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")
    search_weight_name: float = Field(3.0, ge=0, description="BM25F weight of the tool name.")
    search_weight_server: float = Field(2.0, ge=0, description="BM25F weight of the server name.")
    search_weight_description: float = Field(
        1.5, ge=0, description="BM25F weight of the description."
    )
    search_weight_params: float = Field(1.0, ge=0, description="BM25F weight of parameter names.")
    search_weight_param_descriptions: float = Field(
        0.3, ge=0, description="BM25F weight of parameter descriptions."
    )
    search_weight_keywords: float = Field(
        3.0,
        ge=0,
        description="BM25F weight of the search keywords an admin added to a tool "
        "(`PUT /api/v1/servers/{name}/tools/{tool}/keywords`).",
    )
    search_synonyms_file: str | None = Field(
        None,
        description="A JSON file of extra synonym groups (a list of lists of words), added to "
        "the shipped ones.",
    )
