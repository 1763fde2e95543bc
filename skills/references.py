"""Which tools of linked servers a skill names, and where.

A skill teaches an agent to use tools; once linked to servers, every gateway
tool name it mentions (``{server}__{tool}``, or Claude Code's
``mcp__{server}__{tool}``) in ``allowed-tools`` or in the body should exist in
those servers' catalogs. Names of other tools (``Read``, ``Bash(git:*)``) are the
agent's own and are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from skills.validation import Problem


@dataclass(frozen=True)
class ToolReference:
    server: str
    tool: str
    field: str  # "allowed-tools" or "body"
    line: int | None


def _pattern(servers: Iterable[str]) -> re.Pattern[str] | None:
    names = sorted({s for s in servers if s}, key=len, reverse=True)
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(
        rf"(?<![A-Za-z0-9-])(?:mcp__)?({alternatives})__([A-Za-z0-9_][A-Za-z0-9_.-]*)"
    )


def tool_references(
    *,
    allowed_tools: Iterable[str],
    allowed_tools_line: int | None,
    body: str,
    body_line: int,
    servers: Iterable[str],
) -> list[ToolReference]:
    """Every distinct (server, tool, field) mention, first occurrence with its line."""
    pattern = _pattern(servers)
    if pattern is None:
        return []
    found: dict[tuple[str, str, str], ToolReference] = {}

    def scan(text: str, field: str, line: int | None) -> None:
        for match in pattern.finditer(text):
            tool = match.group(2).rstrip(".-")
            key = (match.group(1), tool, field)
            if tool and key not in found:
                found[key] = ToolReference(match.group(1), tool, field, line)

    for entry in allowed_tools:
        scan(entry, "allowed-tools", allowed_tools_line)
    for offset, text in enumerate(body.splitlines()):
        scan(text, "body", body_line + offset)
    return list(found.values())


def missing_message(ref: ToolReference) -> str:
    return f"tool {ref.tool!r} is not in the catalog of linked server {ref.server!r}"


def tool_problem(ref: ToolReference) -> Problem:
    """A missing tool as a validation warning (field, line, message)."""
    return Problem(ref.field, missing_message(ref), ref.line, "warning")
