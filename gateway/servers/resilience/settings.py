"""A server's own resilience settings (`config.resilience`), checked on registration, and
the policies they resolve to over the global defaults (``MCPGW_BREAKER_*``,
``MCPGW_RETR*``): one :class:`BreakerPolicy` per breaker, one :class:`RetryPolicy` (or
none) per tool.

Shape (every field optional; unset: the server's, else the global value)::

    resilience:
      breaker: {enabled, failures, error_rate, window_seconds, min_calls,
                open_seconds, half_open_probes}
      retries: {enabled, attempts, backoff_seconds, backoff_max_seconds, deadline_seconds}
      tools:
        <tool name>: {breaker: {...}, retries: {...}, idempotent: true|false}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from pydantic import Field

from gateway.config_resilience import ResilienceSettings
from gateway.schemas import Strict, validated

# Where a server keeps its resilience settings: a sub-object of its config (no column of
# its own; the runtimes never read it).
CONFIG_KEY = "resilience"


class BreakerIn(Strict):
    """A breaker's settings; unset fields inherit."""

    enabled: bool | None = None
    failures: int | None = Field(None, ge=1, le=10_000)
    error_rate: float | None = Field(None, ge=0, le=1)
    window_seconds: float | None = Field(None, gt=0, le=86_400)
    min_calls: int | None = Field(None, ge=1, le=1_000_000)
    open_seconds: float | None = Field(None, gt=0, le=86_400)
    half_open_probes: int | None = Field(None, ge=1, le=1000)


class RetriesIn(Strict):
    """Retry settings; unset fields inherit."""

    enabled: bool | None = None
    attempts: int | None = Field(None, ge=1, le=10)
    backoff_seconds: float | None = Field(None, ge=0, le=60)
    backoff_max_seconds: float | None = Field(None, ge=0, le=600)
    deadline_seconds: float | None = Field(None, gt=0, le=3600)


class ToolResilienceIn(Strict):
    """One tool's overrides. ``idempotent``: the admin says repeating a call of it is
    safe (true) or not (false, whatever its annotations say)."""

    breaker: BreakerIn | None = None
    retries: RetriesIn | None = None
    idempotent: bool | None = None


class ResilienceIn(Strict):
    """A server's `config.resilience`."""

    breaker: BreakerIn | None = None
    retries: RetriesIn | None = None
    tools: dict[str, ToolResilienceIn] = Field(default_factory=dict, max_length=1000)


def parse_resilience(value: Any, field: str = f"config.{CONFIG_KEY}") -> dict[str, Any]:
    """``value`` checked (422 naming the field, ``config.resilience.breaker.failures``),
    as stored: unset fields left out."""
    parsed = validated(ResilienceIn, value, field, "resilience settings")
    return parsed.model_dump(exclude_none=True, exclude_defaults=True)


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """(the config without its resilience settings, those settings or None)."""
    if CONFIG_KEY not in config:
        return config, None
    rest = {k: v for k, v in config.items() if k != CONFIG_KEY}
    return rest, config[CONFIG_KEY]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and for how long (see breaker.py)."""

    enabled: bool = True
    failures: int = 5
    error_rate: float = 0.5
    window_seconds: float = 60.0
    min_calls: int = 20
    open_seconds: float = 30.0
    half_open_probes: int = 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a retry-safe call is repeated (see retry.py); ``deadline_seconds`` None: the
    call's timeout."""

    enabled: bool = True
    attempts: int = 3
    backoff_seconds: float = 0.1
    backoff_max_seconds: float = 2.0
    deadline_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Defaults:
    """The global policies (from the settings)."""

    breaker: BreakerPolicy = BreakerPolicy()
    retries: RetryPolicy = RetryPolicy()

    @classmethod
    def of(cls, settings: ResilienceSettings) -> Defaults:
        return cls(
            BreakerPolicy(
                settings.breaker_enabled,
                settings.breaker_failures,
                settings.breaker_error_rate,
                settings.breaker_window_seconds,
                settings.breaker_min_calls,
                settings.breaker_open_seconds,
                settings.breaker_half_open_probes,
            ),
            RetryPolicy(
                settings.retries_enabled,
                settings.retry_attempts,
                settings.retry_backoff_seconds,
                settings.retry_backoff_max_seconds,
                settings.retry_deadline_seconds,
            ),
        )

    @property
    def active(self) -> bool:
        """Whether anything is on by default (else only servers that turn it on)."""
        return self.breaker.enabled or self.retries.enabled


@dataclass(frozen=True, slots=True)
class ServerPolicy:
    """One server's resolved settings; :meth:`tool` resolves a tool's."""

    breaker: BreakerPolicy
    retries: RetryPolicy
    tools: dict[str, ToolResilienceIn]

    @classmethod
    def of(cls, config: dict[str, Any], defaults: Defaults) -> ServerPolicy:
        raw = config.get(CONFIG_KEY)
        parsed = ResilienceIn.model_validate(raw) if isinstance(raw, dict) else ResilienceIn()
        return cls(
            _merged(defaults.breaker, parsed.breaker),
            _merged(defaults.retries, parsed.retries),
            parsed.tools,
        )

    @property
    def active(self) -> bool:
        """Whether this server turns anything on (itself or one of its tools)."""
        return (
            self.breaker.enabled
            or self.retries.enabled
            or any(
                (t.breaker is not None and t.breaker.enabled)
                or (t.retries is not None and t.retries.enabled)
                for t in self.tools.values()
            )
        )

    def tool(self, name: str) -> tuple[BreakerPolicy, RetryPolicy, bool | None]:
        """A tool's breaker and retry policies, and whether an admin marked it idempotent."""
        own = self.tools.get(name)
        if own is None:
            return self.breaker, self.retries, None
        breaker = _merged(self.breaker, own.breaker)
        return breaker, _merged(self.retries, own.retries), own.idempotent


def _merged(base: Any, override: BreakerIn | RetriesIn | None) -> Any:
    if override is None:
        return base
    return replace(base, **override.model_dump(exclude_none=True))


def retry_safe(annotations: dict[str, Any] | None, idempotent: bool | None) -> bool:
    """Whether repeating a call of a tool is safe: an admin's word first, else its
    annotations (`readOnlyHint` or `idempotentHint`)."""
    if idempotent is not None:
        return idempotent
    hints = annotations or {}
    return bool(hints.get("readOnlyHint") or hints.get("idempotentHint"))
