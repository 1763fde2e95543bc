"""The one builder of a tool-error result, for every path that answers `tools/call`.

A failure the agent should read (bad arguments, a refused permission, a backend that
is down) is a result with ``isError: true`` and the reason as text, not a JSON-RPC
error: the spec keeps protocol errors for requests that are themselves wrong.
"""

from __future__ import annotations

from typing import Any

from mcp import types


def tool_error(message: str) -> types.CallToolResult:
    """A `tools/call` result saying ``message``, flagged ``isError``."""
    content: list[types.ContentBlock] = [types.TextContent(type="text", text=message)]
    return types.CallToolResult(content=content, is_error=True)


def tool_error_body(message: str) -> dict[str, Any]:
    """:func:`tool_error` as its JSON object (REST, and the fast path's raw replies),
    without the 2026-07-28 ``resultType``: whoever answers in that era adds it."""
    body: dict[str, Any] = tool_error(message).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    body.pop("resultType", None)
    return body
