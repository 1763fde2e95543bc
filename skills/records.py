"""What the skills service hands out, and the rules every caller is judged by.

Kept apart from :mod:`skills.service` so the MCP side (``skills.mcp``) and the
REST side share them without the use cases.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from gateway.auth.principal import Principal
from gateway.errors import Conflict, Forbidden, InvalidInput
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


VISIBILITIES = ("private", "team", "public")


def apply_visibility(
    principal: Principal, row: Skill, visibility: str | None, team_id: str | None
) -> None:
    if team_id is not None:
        if not (principal.is_admin or team_id in principal.team_ids):
            raise Forbidden("you can only give skills to teams you belong to")
        row.team_id = team_id
    if visibility is not None:
        if visibility not in VISIBILITIES:
            raise InvalidInput(
                f"visibility must be one of {', '.join(VISIBILITIES)}",
                errors=[{"field": "visibility", "line": None, "message": "unknown value"}],
            )
        if visibility == "team" and row.team_id is None:
            raise InvalidInput(
                "visibility 'team' needs a team_id",
                errors=[{"field": "team_id", "line": None, "message": "required for team"}],
            )
        row.visibility = visibility


def check_writable(principal: Principal, row: Skill) -> None:
    if not can_see(principal, row):
        # Another user's private skill: say the name is taken, nothing more.
        raise Conflict(f"a skill named {row.name!r} already exists", code="name_taken")
    if not can_modify(principal, row):
        raise Forbidden(f"only the owner, its team or an admin may change {row.name!r}")
