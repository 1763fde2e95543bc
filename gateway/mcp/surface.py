"""Tools a pillar adds to ``/mcp`` next to the aggregated servers' tools.

The skills pillar (``LOAD_SKILL`` …) and the sandboxes pillar (``SANDBOX_EXEC`` …)
each hand the protocol front one object of this shape; the front lists their tools
on the first page of ``tools/list`` (in ``search_execute`` mode only those that ask
to be; the others are found by ``SEARCH_TOOLS``) and routes calls of those names
(directly or through ``EXECUTE_TOOL``) to them. They are served on the
aggregated endpoint only, never on one server's.
"""

from __future__ import annotations

from typing import Any, Protocol

from mcp import types

from gateway.auth.principal import Principal


class ToolSurface(Protocol):
    """A pillar's agent tools: listed per caller, called by name."""

    @property
    def generation(self) -> int:
        """Changes whenever the tools this surface lists may have changed."""

    @property
    def listed_in_search_mode(self) -> bool:
        """Listed in `search_execute` mode too (skills: their catalog is the point);
        otherwise found with SEARCH_TOOLS and run through EXECUTE_TOOL there."""

    def handles_tool(self, name: str) -> bool:
        """Whether ``name`` is one of this surface's tools (cheap: checked per call)."""

    async def tools(self, principal: Principal) -> list[types.Tool]:
        """The tools ``principal`` may see (empty when none)."""

    async def call_tool(
        self,
        principal: Principal,
        name: str,
        arguments: dict[str, Any],
        session_key: str | None = None,
    ) -> types.CallToolResult:
        """Run the tool; bad input or a refusal is a tool error (``is_error``), not a
        protocol error. ``session_key`` names the agent's session, for affinity."""
