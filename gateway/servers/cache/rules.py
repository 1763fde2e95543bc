"""A server's response cache settings: the ``cache`` object of its config.

::

    "config": {"url": "...", "cache": {"ttl_seconds": 300, "shared": false,
               "resources": true, "tools": {"search": {"ttl_seconds": 30},
                                            "now": {"enabled": false}}}}

A server is cached only when its config has this object (``{}`` is enough): an
answer may be stale for up to its TTL, which the server's admin accepts by saying so.
Then tools annotated ``readOnlyHint`` and resource reads are cached; a tool named
under ``tools`` is cached whatever its annotations, unless ``enabled`` is false.
Validated on registration and update (422 naming ``config.cache.<field>``); stored in
the server's config, so no table changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, model_validator

from gateway.errors import InvalidInput
from gateway.schemas import Strict, validated

MAX_TTL = 7 * 86400.0


class ToolCacheIn(Strict):
    """One tool's cache setting."""

    enabled: bool = Field(
        True, description="false: never cache this tool (even if annotated readOnlyHint)."
    )
    ttl_seconds: float | None = Field(
        None, gt=0, le=MAX_TTL, description="This tool's TTL; unset: the server's."
    )


class CacheIn(Strict):
    """A server's ``cache`` object (see the module docstring)."""

    enabled: bool = Field(True, description="false: keep the settings, cache nothing.")
    ttl_seconds: float | None = Field(
        None,
        gt=0,
        le=MAX_TTL,
        description="How long an answer is served from the cache; unset: "
        "MCPGW_CACHE_DEFAULT_TTL_SECONDS.",
    )
    shared: bool = Field(
        False,
        description="true: one entry serves every caller (public data); false: each user "
        "has their own entries.",
    )
    resources: bool = Field(True, description="Cache resource reads too.")
    tools: dict[str, ToolCacheIn] = Field(
        default_factory=dict,
        max_length=1000,
        description="Per tool (its name on this server): cached whatever its annotations, "
        "with its own TTL, or `enabled: false` to never cache it.",
    )

    @model_validator(mode="after")
    def _names(self) -> CacheIn:
        for name in self.tools:
            if not name or len(name) > 256:
                raise ValueError("tool names are 1-256 characters")
        return self


def split_cache(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``config`` without its ``cache`` object, and that object validated (None when
    absent); a 422 names the field (``config.cache.ttl_seconds``)."""
    if "cache" not in config:
        return config, None
    rest = {k: v for k, v in config.items() if k != "cache"}
    raw = config["cache"]
    parsed = validated(CacheIn, raw if raw is not None else {}, "config.cache", "cache settings")
    if parsed.shared and rest.get("credentials") is not None:
        field = "config.cache.shared"
        message = "a server whose users bring their own credentials cannot share answers"
        raise InvalidInput(f"{field}: {message}", errors=[{"field": field, "message": message}])
    return rest, parsed.model_dump(exclude_none=True)


@dataclass(frozen=True, slots=True)
class CacheRules:
    """A server's cache settings, compiled once per config."""

    ttl: float
    shared: bool
    resources: bool
    # tool → its TTL (None: never cached)
    tools: dict[str, float | None]

    @classmethod
    def of(cls, config: dict[str, Any], default_ttl: float) -> CacheRules | None:
        """The rules of a server's (validated) config; None: nothing of it is cached."""
        raw = config.get("cache")
        if not isinstance(raw, dict) or raw.get("enabled") is False:
            return None
        ttl = float(raw.get("ttl_seconds") or default_ttl)
        tools: dict[str, float | None] = {}
        for name, setting in (raw.get("tools") or {}).items():
            enabled = setting.get("enabled", True) if isinstance(setting, dict) else True
            tool_ttl = setting.get("ttl_seconds") if isinstance(setting, dict) else None
            tools[name] = float(tool_ttl or ttl) if enabled else None
        per_user = config.get("credentials") is not None
        return cls(ttl, bool(raw.get("shared")) and not per_user, raw.get("resources", True), tools)

    def tool_ttl(self, tool: str, read_only: bool) -> float | None:
        """How long ``tool``'s answers are cached (None: not cached)."""
        if tool in self.tools:
            return self.tools[tool]
        return self.ttl if read_only else None
