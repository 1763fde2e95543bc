"""A view's search index is built once, off the event loop, even when searches race."""

from __future__ import annotations

import asyncio

from mcp import types

from gateway.servers.mcp.view import ToolView


async def test_racing_first_searches_share_one_build() -> None:
    tools = [
        types.Tool(name=f"srv__tool_{i}", description=f"Tool number {i}", input_schema={})
        for i in range(50)
    ]
    view = ToolView(tools, {})
    first, second = await asyncio.gather(view.search_index(), view.search_index())
    assert first is second is view.index
    assert first.search("tool number", 1)
