"""The response cache (issue #21): read-only tools' answers and resource reads of the
servers that opt in, served again until their TTL runs out (docs/resilience.md)."""

from __future__ import annotations

from gateway.servers.cache.stage import META_KEY, ResponseCache
from gateway.servers.pipeline import Pipeline

__all__ = ["META_KEY", "ResponseCache", "cache_of"]


def cache_of(pipeline: Pipeline) -> ResponseCache | None:
    """The response cache installed in ``pipeline`` (None: caching is off)."""
    stage = pipeline.stage("cache")
    return stage if isinstance(stage, ResponseCache) else None
