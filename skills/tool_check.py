"""Which tools a skill names that its linked servers do not offer (the link check of
``GET /skills/{name}/links``, split from service.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.auth.principal import Principal
from gateway.errors import Forbidden, NotFound
from skills import frontmatter
from skills.records import SkillView, body_line
from skills.references import ToolReference, tool_references

# Pillar 1's catalog query (ServerService.catalog), passed in: pillars stay independent.
Catalog = Callable[..., Awaitable[tuple[list[tuple[Any, Any]], Any]]]


async def missing_tools(
    catalog: Catalog, principal: Principal, view: SkillView
) -> list[ToolReference]:
    """Tools named by the skill that its linked servers' catalogs lack."""
    if not view.links:
        return []
    version = view.version
    try:
        allowed_line = frontmatter.load(version.frontmatter_raw).lines.get("allowed-tools")
    except frontmatter.FrontmatterError:
        allowed_line = None
    refs = tool_references(
        allowed_tools=[str(t) for t in version.allowed_tools],
        allowed_tools_line=allowed_line,
        body=version.body,
        body_line=body_line(version.frontmatter_raw),
        servers=view.links,
    )
    known: dict[str, set[str]] = {}
    for server in {r.server for r in refs}:
        try:
            entries, _ = await catalog(principal, server=server, kind="tool", limit=100_000)
            known[server] = {entry.name for entry, _ in entries}
        except (NotFound, Forbidden):
            known[server] = set()
    return [r for r in refs if r.tool not in known[r.server]]
