"""The resilience part of the gateway's settings (mixed into :class:`gateway.config.Settings`):
circuit breakers and safe retries of backend calls, the defaults every server starts
from (a server's own `config.resilience` overrides them; docs/resilience.md)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ResilienceSettings(BaseModel):
    """Defaults of the circuit breakers and retries (gateway/servers/resilience/)."""

    breaker_enabled: bool = Field(
        True,
        description="Circuit breakers per server and per tool: a backend that keeps failing "
        "is answered at once with a tool error (`unavailable`) until it is tried again.",
    )
    breaker_failures: int = Field(
        5, ge=1, le=10_000, description="Consecutive failed calls that open a breaker."
    )
    breaker_error_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of failed calls over `MCPGW_BREAKER_WINDOW_SECONDS` that opens a "
        "breaker too (once `MCPGW_BREAKER_MIN_CALLS` calls were seen; 0: rate rule off).",
    )
    breaker_window_seconds: float = Field(
        60.0, gt=0, le=86_400, description="The window the error rate is measured over."
    )
    breaker_min_calls: int = Field(
        20, ge=1, le=1_000_000, description="Calls in the window before the rate rule applies."
    )
    breaker_open_seconds: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="How long an open breaker answers at once before letting probes through "
        "(half-open).",
    )
    breaker_half_open_probes: int = Field(
        1, ge=1, le=1000, description="Calls let through at a time while half-open."
    )
    retries_enabled: bool = Field(
        True,
        description="Retry failed calls where repeating is safe: tools annotated "
        "`readOnlyHint` or `idempotentHint` (or marked idempotent by an admin). A call "
        "that may have reached the backend is never repeated otherwise.",
    )
    retry_attempts: int = Field(
        3, ge=1, le=10, description="Attempts at most per call, the first included."
    )
    retry_backoff_seconds: float = Field(
        0.1,
        ge=0,
        le=60,
        description="First retry's delay; doubled each retry, with full jitter.",
    )
    retry_backoff_max_seconds: float = Field(
        2.0, ge=0, le=600, description="Longest delay between two attempts."
    )
    retry_deadline_seconds: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="No retry starts later than this after the call began (unset: the "
        "call's timeout, which always bounds the whole call).",
    )
