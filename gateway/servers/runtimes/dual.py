"""A ``generated`` server reached on both protocol eras at once (config ``protocol: "dual"``).

In-process, the 2025-11-25 handshake keeps a back-channel (the server's sampling,
elicitation and log requests reach the agent's session) while 2026-07-28 has none
but offers `input_required` results and `subscriptions/listen`. Serving each agent
request on the connection of its own era gives both behaviours.
"""

from __future__ import annotations

from typing import Any

from mcp import types

from gateway.servers.runtimes.base import Catalog, Health, ServerSpec, monotonic
from gateway.servers.runtimes.connection import McpConnection
from gateway.servers.runtimes.relay import CURRENT_RELAY


class DualEraRuntime:
    def __init__(self, spec: ServerSpec, legacy: McpConnection, modern: McpConnection) -> None:
        self.spec = spec
        self.legacy = legacy
        self.modern = modern
        self.health = modern.health
        self.last_used = monotonic()

    def _pick(self) -> McpConnection:
        relay = CURRENT_RELAY.get()
        return (
            self.legacy if relay is not None and not getattr(relay, "modern", True) else self.modern
        )

    @property
    def running(self) -> bool:
        return self.legacy.running or self.modern.running

    async def start(self) -> None:
        await self.modern.start()

    async def stop(self, *, final: bool = False) -> None:
        await self.legacy.stop(final=final)
        await self.modern.stop(final=final)

    async def catalog(self) -> Catalog:
        return await self.modern.catalog()

    async def ping(self) -> float:
        return await self.modern.ping()

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        self.last_used = monotonic()
        return await self._pick().call_tool(name, arguments, timeout)

    async def read_resource(self, uri: str, timeout: float) -> types.ReadResourceResult:
        return await self._pick().read_resource(uri, timeout)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout: float
    ) -> types.GetPromptResult:
        return await self._pick().get_prompt(name, arguments, timeout)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
        timeout: float,
    ) -> types.CompleteResult:
        return await self._pick().complete(ref, argument, context, timeout)

    async def subscribe(self, uri: str, subscribe: bool, timeout: float) -> None:
        await self._pick().subscribe(uri, subscribe, timeout)


__all__ = ["DualEraRuntime", "Health"]
