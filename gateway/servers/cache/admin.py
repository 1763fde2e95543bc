"""Admin use cases of the response cache: a server's figures, and clearing its answers
(`GET`/`DELETE /api/v1/servers/{name}/cache`, `mcpgw servers cache NAME [--clear]`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.auth.principal import Principal
from gateway.servers.cache import cache_of
from gateway.servers.cache.rules import CacheRules
from gateway.servers.models import McpServer
from gateway.servers.service import ServerService


class CacheStatsOut(BaseModel):
    """A server's response cache, as this gateway process sees it."""

    enabled: bool = Field(description="Whether the server's answers are cached at all.")
    storage: Literal["memory", "redis"] | None = Field(
        None, description="Where answers live (null: MCPGW_CACHE_ENABLED is off)."
    )
    hits: int = Field(0, description="Answers served from the cache by this process.")
    misses: int = Field(0, description="Cacheable requests the backend answered instead.")
    hit_rate: float | None = Field(None, description="hits / (hits + misses); null: none yet.")
    entries: int | None = Field(
        None, description="Answers held (in memory; null on Redis, not counted)."
    )


class CacheCleared(BaseModel):
    server: str
    dropped: int = Field(description="Answers forgotten.")


def stats_of(servers: ServerService, row: McpServer) -> CacheStatsOut | None:
    """The figures of a server that is cached (None: it is not)."""
    cache = cache_of(servers.pipeline)
    if cache is None or CacheRules.of(row.config, cache.default_ttl) is None:
        return None
    return CacheStatsOut(enabled=True, **cache.stats(row.name))


async def cache_stats(servers: ServerService, principal: Principal, name: str) -> CacheStatsOut:
    """A server's cache figures (``servers:read``; 404 for a server the caller may not see)."""
    row, _ = await servers.get(principal, name)
    found = stats_of(servers, row)
    if found is not None:
        return found
    cache = cache_of(servers.pipeline)
    return CacheStatsOut(enabled=False, storage=cache.storage if cache else None)


async def clear_cache(servers: ServerService, principal: Principal, name: str) -> CacheCleared:
    """Forget every cached answer of a server (``servers:write``), audited as
    ``server.cache.clear``. In memory, this process's only; on Redis, every replica's."""
    principal.require("servers:write")
    await servers.get(principal, name)
    cache = cache_of(servers.pipeline)
    dropped = await cache.invalidate(name) if cache is not None else 0
    servers.audit.change("server.cache.clear", principal, name, new={"dropped": dropped})
    return CacheCleared(server=name, dropped=dropped)
