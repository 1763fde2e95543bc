"""The policy part of the gateway's settings (mixed into :class:`gateway.config.Settings`):
how policy versions propagate and where limits are counted."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PolicySettings(BaseModel):
    """Settings of policies, rate limits, quotas and budgets (gateway/policy/)."""

    policy_refresh_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often a replica checks for a policy version applied through another "
        "(one indexed read); a version applied here is in force here at once.",
    )
    rate_limit_failure_mode: Literal["open", "closed"] = Field(
        "open",
        description="When the limit storage (Redis) is unreachable: `open` allows calls and "
        "logs it; `closed` refuses them (503).",
    )
    rate_limit_key_prefix: str = Field(
        "mcpgw",
        min_length=1,
        max_length=64,
        description="Prefix of the limit counters' Redis keys (gateways sharing a count share it).",
    )
