"""The `search_execute` interface: two meta-tools instead of every definition.

With hundreds of tools, listing them all costs an agent tens of thousands of
tokens before it does anything. SEARCH_TOOLS returns only the few that match a
query (name, description, input schema); EXECUTE_TOOL calls one by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from mcp import types

from gateway.mcp.results import tool_error
from gateway.mcp.search import Allow, Hit, ToolIndex

SEARCH_TOOLS = "SEARCH_TOOLS"
EXECUTE_TOOL = "EXECUTE_TOOL"
META_NAMES = frozenset({SEARCH_TOOLS, EXECUTE_TOOL})
Mode = Literal["list", "search_execute"]

META_TOOLS = [
    types.Tool(
        name=SEARCH_TOOLS,
        description=(
            "Find tools for a task. Returns the best matches with their names, descriptions "
            "and input schemas; call one with EXECUTE_TOOL."
        ),
        input_schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What you want to do, in words."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
            },
            "required": ["query"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True, open_world_hint=False),
    ),
    types.Tool(
        name=EXECUTE_TOOL,
        description="Call a tool found with SEARCH_TOOLS: give its exact name and arguments.",
        input_schema={
            "type": "object",
            "properties": {
                "tool": {"type": "string", "description": "Tool name from SEARCH_TOOLS."},
                "arguments": {"type": "object", "description": "Arguments for that tool."},
            },
            "required": ["tool"],
        },
    ),
]


def resolve_mode(configured: str, tool_count: int, threshold: int) -> Mode:
    if configured == "auto":
        return "search_execute" if tool_count > threshold else "list"
    return "search_execute" if configured == "search_execute" else "list"


def search_result(
    index: ToolIndex,
    arguments: dict[str, Any],
    more: ToolIndex | None = None,
    allow: Allow | None = None,
    unavailable: Mapping[str, Any] | None = None,
) -> types.CallToolResult:
    """SEARCH_TOOLS over the caller's tools (``index``) and, merged by score, the
    pillar tools its listing leaves out (``more``). ``allow``: the hook a policy
    uses to hide more tools from this caller; a tool it refuses is never a hit.
    ``unavailable``: tool name → why it is unavailable now (still found: a hit says
    so rather than vanishing while its server is down)."""
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        return tool_error("SEARCH_TOOLS needs a non-empty 'query' string")
    limit = arguments.get("limit", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 50:
        return tool_error("'limit' must be an integer from 1 to 50")
    matches = [_match(hit, unavailable) for hit in _merged(index, more, query, limit, allow)]
    payload = {"tools": matches, "hint": "call one with EXECUTE_TOOL {tool, arguments}"}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=json.dumps(payload))],
        structured_content=payload,
    )


def _match(hit: Hit, unavailable: Mapping[str, Any] | None = None) -> dict[str, Any]:
    match = {
        "name": hit.tool.name,
        "description": hit.tool.description or "",
        "inputSchema": hit.tool.input_schema,
        "score": hit.score,
        "reason": hit.reason,
    }
    if hit.alternatives:  # the same tool on other servers, folded into this hit
        match["alternatives"] = list(hit.alternatives)
    mark = unavailable.get(hit.tool.name) if unavailable else None
    if mark is not None:
        match["unavailable"] = mark
    return match


def _merged(
    index: ToolIndex, more: ToolIndex | None, query: str, limit: int, allow: Allow | None
) -> list[Hit]:
    hits = index.search(query, limit, allow)
    if more is None:
        return hits
    hits += more.search(query, limit, allow)
    hits.sort(key=lambda hit: (-hit.score, hit.tool.name))
    return hits[:limit]


def execute_target(arguments: dict[str, Any]) -> tuple[str, dict[str, Any]] | types.CallToolResult:
    tool = arguments.get("tool")
    if not isinstance(tool, str) or not tool:
        return tool_error("EXECUTE_TOOL needs the 'tool' name (find it with SEARCH_TOOLS)")
    inner = arguments.get("arguments", {})
    if not isinstance(inner, dict):
        return tool_error("'arguments' must be an object")
    if tool in META_NAMES:
        return tool_error(f"{tool} cannot be called through EXECUTE_TOOL")
    return tool, inner
