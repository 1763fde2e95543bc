"""The response cache part of the gateway's settings (mixed into
:class:`gateway.config.Settings`): whether tool results and resource reads may be
answered from a cache, for how long by default, and how much it may hold. Which
servers and tools are cached is a server's own setting (its config's ``cache``
object, gateway/servers/cache/rules.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class CacheSettings(BaseModel):
    """Settings of the response cache (gateway/servers/cache/, docs/resilience.md)."""

    cache_enabled: bool = Field(
        True,
        description="Answer calls of read-only tools and resource reads of servers whose "
        "config has a `cache` object from the response cache; false: never cache.",
    )
    cache_default_ttl_seconds: float = Field(
        60,
        gt=0,
        le=7 * 86400,
        description="How long a cached answer is served when the server's `cache` object "
        "names no `ttl_seconds`.",
    )
    cache_storage: Literal["auto", "memory", "redis"] = Field(
        "auto",
        description="Where cached answers live: `memory` (this process, bounded), `redis` "
        "(MCPGW_REDIS_URL, shared by replicas), `auto` (Redis when MCPGW_REDIS_URL is set).",
    )
    cache_max_entries: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Most answers the in-memory cache holds (least recently used go first).",
    )
    cache_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=1024,
        description="Most bytes of answers the in-memory cache holds; an answer larger than "
        "a sixteenth of it is not cached.",
    )
    cache_key_prefix: str = Field(
        "mcpgw",
        min_length=1,
        max_length=64,
        description="Prefix of cached answers' Redis keys (gateways sharing it share answers).",
    )
