"""What the skills service hands out, and the rules every caller is judged by.

Kept apart from :mod:`skills.service` so the MCP side (``skills.mcp``) and the
REST side share them without the use cases.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gateway.auth.principal import Principal
from gateway.errors import InvalidInput
from skills.models import Skill, SkillFile, SkillVersion
from skills.references import ToolReference
from skills.validation import Problem, Report


def can_see(principal: Principal, skill: Skill) -> bool:
    """Public skills are for everyone, team skills for their team, private ones for
    their owner; admins see all."""
    return (
        principal.is_admin
        or skill.visibility == "public"
        or skill.owner_id == principal.user_id
        or (skill.visibility == "team" and skill.team_id in principal.team_ids)
    )


def can_modify(principal: Principal, skill: Skill) -> bool:
    """The owner, members of the skill's team and admins may change it."""
    return (
        principal.is_admin
        or skill.owner_id == principal.user_id
        or (skill.team_id is not None and skill.team_id in principal.team_ids)
    )


def content_digest(files: dict[str, str], executable: set[str]) -> str:
    """One digest for a version's content: equal files (and modes), equal digest."""
    lines = "".join(f"{p}\0{files[p]}\0{int(p in executable)}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def body_line(frontmatter_raw: str) -> int:
    """Line of SKILL.md where the body starts (after '---', the YAML and '---')."""
    return frontmatter_raw.count("\n") + 3


@dataclass
class SkillView:
    """A skill at one version with everything the API shows about it."""

    skill: Skill
    version: SkillVersion
    files: list[SkillFile]
    versions: list[tuple[SkillVersion, int, int]]  # (version, file count, bytes)
    links: list[str]


@dataclass
class StoreResult:
    view: SkillView
    created: bool  # a new skill
    changed: bool  # a new version (always true when created)
    warnings: list[Problem] = field(default_factory=list)  # from validation
    missing_tools: list[ToolReference] = field(default_factory=list)  # of linked servers


def invalid_skill(report: Report, label: str) -> InvalidInput:
    """The 422 for a package that fails validation: every problem, field and line."""
    first = report.errors[0]
    where = f"{first.field}" + (f" (line {first.line})" if first.line else "")
    more = f" and {len(report.errors) - 1} more problem(s)" if len(report.errors) > 1 else ""
    return InvalidInput(
        f"{label} is not a valid skill: {where}: {first.message}{more}",
        code="invalid_skill",
        errors=[p.as_dict() for p in report.errors],
        warnings=[p.as_dict() for p in report.warnings],
    )
