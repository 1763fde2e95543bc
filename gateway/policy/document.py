"""The policy document: rules and limits as one versioned YAML (or JSON) document.

This is the contract security teams write and keep under version control::

    rules:
      - id: no-calculator-for-developers
        effect: deny
        subjects: {roles: [developer]}
        actions: [tools/call]
        targets: ["essentials__calculator_*"]
    limits:
      - id: echo-per-key
        scope: [key, tool]
        targets: ["everything__*"]
        rate: 5/minute
        burst: 5

Every field is checked (unknown fields, malformed globs, CEL syntax, negative rates),
and an error names the rule (or limit) and the field (:func:`parse`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.auth.rbac import Role
from gateway.errors import InvalidInput
from gateway.policy import globs
from gateway.policy.conditions import compiled

ACTIONS = ("tools/call", "resources/read", "prompts/get", "skills/load", "sandboxes/exec", "list")
Action = Literal[
    "tools/call", "resources/read", "prompts/get", "skills/load", "sandboxes/exec", "list", "*"
]
Effect = Literal["allow", "deny", "require_approval"]
ScopePart = Literal["key", "user", "team", "server", "tool"]
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(-?\d+)\s*/\s*(second|minute|hour|day)s?\s*$")
_QUOTA = re.compile(r"^\s*(-?\d+)\s*/\s*(day|month)s?\s*$")


def _glob(value: str) -> str:
    return globs.check(value)


def _cel(value: str) -> str:
    compiled(value)  # raises ValueError with the parser's words
    return value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (an IANA name, e.g. Europe/Paris)") from None
    return value


Glob = Annotated[str, AfterValidator(_glob)]
Expression = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_cel)]
Name = Annotated[str, Field(min_length=1, max_length=320)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, frozen=True)


class Subjects(_Strict):
    """Who a rule or limit applies to. Every field given must match (a field lists
    alternatives); none given: everyone."""

    roles: list[Role] = Field(default_factory=list)
    teams: list[Name] = Field(default_factory=list, description="Team names (or ids).")
    users: list[Name] = Field(default_factory=list, description="User emails (or ids).")
    keys: list[Name] = Field(default_factory=list, description="API key prefixes (or ids).")
    key_tags: list[Name] = Field(default_factory=list)
    auth_methods: list[Name] = Field(
        default_factory=list,
        description="api_key, jwt, oauth, session, or oidc (oidc:<provider> for one).",
    )

    @property
    def everyone(self) -> bool:
        return not (
            self.roles
            or self.teams
            or self.users
            or self.keys
            or self.key_tags
            or self.auth_methods
        )


class Rule(_Strict):
    """Allow, deny or ask for approval of an action on some targets."""

    id: str = Field(pattern=_ID)
    description: str = Field("", max_length=1000)
    effect: Effect
    subjects: Subjects = Field(default_factory=Subjects)
    actions: list[Action] = Field(min_length=1)
    targets: list[Glob] = Field(default_factory=lambda: ["*"], min_length=1)
    except_targets: list[Glob] = Field(
        default_factory=list, description="Targets the rule does not cover after all."
    )
    condition: Expression | None = None
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"
    message: str | None = Field(
        None, max_length=500, description="What an agent denied by this rule is told."
    )


class Budget(_Strict):
    """Cost summed per period: log, then warn, then block."""

    limit: float = Field(gt=0, description="Cost units per period.")
    period: Literal["day", "month"] = "day"
    warn_at: float = Field(0.8, gt=0, le=1, description="Fraction of the limit: warn the agent.")
    log_at: float = Field(0.5, gt=0, le=1, description="Fraction of the limit: log it.")


class Limit(_Strict):
    """A rate limit, a concurrency limit, a calendar quota or a budget (exactly one),
    counted separately for each combination of ``scope`` values."""

    id: str = Field(pattern=_ID)
    description: str = Field("", max_length=1000)
    scope: list[ScopePart] = Field(default_factory=list)
    subjects: Subjects = Field(default_factory=Subjects)
    targets: list[Glob] = Field(default_factory=lambda: ["*"], min_length=1)
    rate: str | None = Field(None, description="N/second|minute|hour|day")
    burst: int | None = Field(None, ge=1, le=1_000_000)
    concurrency: int | None = Field(None, ge=1, le=100_000)
    quota: str | None = Field(None, description="N/day|month (calendar periods, UTC)")
    budget: Budget | None = None

    @field_validator("scope")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each scope part may appear once")
        return value

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("quota")
    @classmethod
    def _quota(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quota(value)
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Limit:
        kinds = [k for k in ("rate", "concurrency", "quota", "budget") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError(
                "a limit has exactly one of rate, concurrency, quota or budget"
                + (f" (this one has {', '.join(kinds)})" if kinds else "")
            )
        if self.burst is not None and self.rate is None:
            raise ValueError("burst goes with rate")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("rate", "concurrency", "quota", "budget") if getattr(self, k))


class Cost(_Strict):
    """The estimated cost of one call of the matching tools (budgets sum it)."""

    targets: list[Glob] = Field(min_length=1)
    cost: float = Field(ge=0)


class PolicyDocument(_Strict):
    """The whole policy: what refines the baseline (roles ∩ key scopes, team
    visibility) for every call."""

    default: Literal["allow", "deny"] = Field(
        "allow", description="The decision when no rule matches (within the baseline)."
    )
    rules: list[Rule] = Field(default_factory=list, max_length=100_000)
    limits: list[Limit] = Field(default_factory=list, max_length=10_000)
    costs: list[Cost] = Field(
        default_factory=list,
        description="Cost per call by tool; default: the result's tokens / 1000.",
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicyDocument:
        for kind, items in (("rule", self.rules), ("limit", self.limits)):
            seen: set[str] = set()
            for item in items:
                if item.id in seen:
                    raise ValueError(f"{kind} id {item.id!r} is used twice")
                seen.add(item.id)
        return self

    def canonical(self) -> dict[str, Any]:
        """The document as stored and exported: defaults left out, order kept."""
        return self.model_dump(mode="json", exclude_defaults=True)


def parse_rate(value: str) -> tuple[int, int]:
    """``"5/minute"`` as (5, 60): calls and seconds."""
    match = _RATE.match(value)
    if match is None:
        raise ValueError(f"rate {value!r} must be N/second, N/minute, N/hour or N/day")
    count = int(match.group(1))
    if count <= 0:
        raise ValueError(f"rate {value!r} must allow at least one call")
    return count, _UNITS[match.group(2)]


def parse_quota(value: str) -> tuple[int, str]:
    """``"50000/day"`` as (50000, "day")."""
    match = _QUOTA.match(value)
    if match is None:
        raise ValueError(f"quota {value!r} must be N/day or N/month")
    count = int(match.group(1))
    if count <= 0:
        raise ValueError(f"quota {value!r} must allow at least one call")
    return count, match.group(2)


def parse(data: Any) -> PolicyDocument:
    """A document from parsed YAML/JSON, or InvalidInput whose ``errors`` name each
    rule (or limit) and field that is wrong."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(
            "a policy document is a mapping with 'rules' and 'limits' lists",
            errors=[{"field": "", "message": f"got {type(data).__name__}"}],
        )
    try:
        return PolicyDocument.model_validate(data)
    except ValidationError as exc:
        errors = [_named(data, error) for error in exc.errors()]
        first = errors[0]
        where = f"{first['rule']!r}, " if first.get("rule") else ""
        raise InvalidInput(
            f"the policy is not valid: {where}{first['field']}: {first['message']}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            errors=errors,
        ) from None


def parse_text(text: str) -> PolicyDocument:
    """A document from YAML (JSON is YAML too)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(
            f"the policy is not valid YAML{where}: {problem}",
            code="invalid_yaml",
            errors=[{"field": "", "message": f"not valid YAML{where}: {problem}"}],
        ) from None
    return parse(data)


def to_yaml(document: PolicyDocument) -> str:
    """The document as YAML, in a stable form (export → apply → export is identical)."""
    return yaml.safe_dump(
        document.canonical(),
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=None,  # short lists on one line, as people write them
    )


def _named(data: dict[str, Any], error: Any) -> dict[str, Any]:
    """A pydantic error as ``{field, message, rule?}`` with a dotted path."""
    loc = [part for part in error["loc"] if not str(part).startswith("function-after")]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = str(error["msg"]).removeprefix("Value error, ")
    named: dict[str, Any] = {"field": path, "message": message}
    if len(loc) >= 2 and loc[0] in ("rules", "limits") and isinstance(loc[1], int):
        items = data.get(str(loc[0]))
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            named["rule"] = item["id"]
    return named
