"""The checks every draft passes before review, whoever wrote it: the existing strict
validation, and every tool it names (``server__tool``) must be in the linked servers'
catalogs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from skills.references import missing_message, tool_references
from skills.validation import SKILL_MD, Problem, Report, validate

# A gateway tool name in code spans (`server__tool`): the form agents see.
_SPAN = re.compile(r"`(?:mcp__)?([a-z0-9]+(?:-[a-z0-9]+)*)__([A-Za-z0-9_][A-Za-z0-9_.-]*)`")


@dataclass
class Verdict:
    """What the checks found: problems that block the draft, advice, tools named."""

    problems: list[str] = field(default_factory=list)
    warnings: list[dict[str, object]] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    report: Report | None = None

    @property
    def ok(self) -> bool:
        """No blocking problem."""
        return not self.problems


def _line(problem: Problem) -> str:
    where = f" (line {problem.line})" if problem.line else ""
    return f"{problem.field}{where}: {problem.message}"


def check_package(files: dict[str, bytes], name: str, catalogs: dict[str, set[str]]) -> Verdict:
    """Validate ``files`` strictly as the skill ``name`` and check the tools it names
    against ``catalogs`` (``{server: {tool, …}}``: the linked servers)."""
    report = validate(files, folder=name, strict=True)
    verdict = Verdict(report=report)
    verdict.problems = [_line(p) for p in report.errors]
    verdict.warnings = [p.as_dict() for p in report.warnings]
    if report.skill is None:
        if not verdict.problems and SKILL_MD not in files:
            verdict.problems.append(f"{SKILL_MD}: missing")
        return verdict
    parsed = report.skill
    refs = tool_references(
        allowed_tools=parsed.allowed_tools,
        allowed_tools_line=parsed.allowed_tools_line,
        body=parsed.body,
        body_line=parsed.body_line,
        servers=catalogs,
    )
    for ref in refs:
        if ref.tool not in catalogs.get(ref.server, set()):
            where = f" (line {ref.line})" if ref.line else ""
            verdict.problems.append(f"{ref.field}{where}: {missing_message(ref)}")
    unlinked = sorted({m.group(1) for m in _SPAN.finditer(parsed.body)} - set(catalogs))
    for server in unlinked:
        verdict.problems.append(
            f"body: names tools of server {server!r}, which is not linked (linked: "
            f"{', '.join(sorted(catalogs)) or 'none'})"
        )
    verdict.tools = sorted({f"{r.server}__{r.tool}" for r in refs})
    return verdict
