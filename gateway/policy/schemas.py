"""Request and response shapes of `/api/v1/policies` and `/api/v1/usage/limits`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.auth.rbac import Role
from gateway.policy.plan import Plan
from gateway.schemas import Strict

EvaluableAction = Literal[
    "tools/call", "resources/read", "prompts/get", "skills/load", "sandboxes/exec", "list"
]


class SubjectIn(Strict):
    """Who to decide for. ``user`` and ``key`` are looked up (their role and teams fill
    what is not given); every other field is taken as said."""

    role: Role | None = None
    user: str | None = Field(None, description="A user's email or id.")
    key: str | None = Field(None, description="An API key's prefix or id.")
    team: str | None = Field(None, description="A team's name or id.")
    teams: list[str] = Field(default_factory=list)
    key_tags: list[str] = Field(default_factory=list)
    auth_method: str = "api_key"


class EvaluateIn(Strict):
    subject: SubjectIn
    action: EvaluableAction
    target: str = Field(min_length=1, max_length=512)
    arguments: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = Field(
        None, description="The tool's hints, as conditions see them (default: the catalog's)."
    )
    time: datetime | None = Field(None, description="Decide as if at this time (default: now).")


class FailedCondition(BaseModel):
    rule: str
    message: str


class EvaluateOut(BaseModel):
    decision: Literal["allow", "deny", "require_approval"]
    rule: str | None = Field(description="The rule that decided (null: the baseline or default).")
    matched: list[str] = Field(description="Every rule that matched, in document order.")
    errors: list[FailedCondition] = Field(default_factory=list)
    reason: str
    baseline: bool = Field(description="Whether roles ∩ key scopes allow the action at all.")
    version: int


class PolicyOut(BaseModel):
    version: int = Field(description="0: nothing applied yet (everything the baseline allows).")
    document: dict[str, Any]
    created_at: datetime | None = None
    created_by: str | None = None


class ApplyOut(BaseModel):
    version: int = Field(description="The version in force after this request.")
    changed: bool
    dry_run: bool
    plan: Plan
    lines: list[str] = Field(description="The plan as text (+ added, - removed, ~ changed).")


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    created_by: str | None
    summary: str


class LimitUsage(BaseModel):
    limit: str = Field(description="The limit's id.")
    kind: Literal["rate", "concurrency", "quota", "budget"]
    scope: dict[str, str] = Field(description="The counted combination (key, user, team, ...).")
    allowed: float = Field(description="Calls (or cost units) the period allows.")
    used: float
    remaining: float
    resets_at: datetime | None = None


class UsageOut(BaseModel):
    limits: list[LimitUsage]
    storage: Literal["memory", "redis"]
