"""MCP request handlers of the gateway's front, for `/mcp` and `/mcp/servers/{name}`.

The front's part of every request: who is calling (the principal the ASGI front put in
the scope) and at which endpoint, paging, the interface mode and its meta-tools
(SEARCH_TOOLS, EXECUTE_TOOL), and the merge of every surface: the registered servers
(:class:`~gateway.mcp.surface.ServersSurface`, pillar 1) and the other pillars'
(:class:`~gateway.mcp.surface.Surface`: skills, sandboxes). What a name or URI means
is the surface's to say; list-change notifications go out from here, in both eras.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp_types.jsonrpc import INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from opentelemetry.trace import SpanKind

from gateway.auth.principal import Principal
from gateway.mcp import pages
from gateway.mcp.meta import (
    EXECUTE_TOOL,
    META_TOOLS,
    SEARCH_TOOLS,
    execute_target,
    resolve_mode,
    search_result,
)
from gateway.mcp.sdk_compat import agent_connection
from gateway.mcp.search import ToolIndex
from gateway.mcp.surface import ServersSurface, Surface
from gateway.observability.tracing import TRACE_STATE_KEY, operation

log = logging.getLogger("gateway.mcp")

PRINCIPAL_KEY = "mcpgw.principal"
TARGET_KEY = "mcpgw.target"
Ctx = ServerRequestContext[Any, Any]
T = TypeVar("T")
CallResult = types.CallToolResult | types.InputRequiredResult


class GatewayHandlers:
    """The on_* handlers shared by the aggregated and the per-server endpoint."""

    def __init__(
        self,
        servers: ServersSurface,
        *,
        mode: str,
        threshold: int,
        page_size: int = pages.PAGE_SIZE,
        surfaces: Sequence[Surface] = (),
    ) -> None:
        self.servers = servers
        # Every other pillar's surface on /mcp (skills, sandboxes), next to the servers'.
        self.surfaces: list[Surface] = list(surfaces)
        self._unlisted: dict[tuple[int, ...], tuple[list[list[types.Tool]], ToolIndex | None]] = {}
        self.page_size = page_size
        self.mode = mode
        self.threshold = threshold
        # 2026-07-28 clients hear of list changes on `subscriptions/listen` streams fed by
        # this bus; 2025-11-25 sessions get notifications pushed on their GET stream.
        self.bus = InMemorySubscriptionBus()
        # Agent connections (one per 2025-11-25 session), weakly: they go when it ends.
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        servers.on_change(self.catalog_changed, self._resource_updated)
        for surface in self.surfaces:
            surface.add_change_listener(self.catalog_changed)

    # --- context ------------------------------------------------------------------------
    def context(self, ctx: Ctx) -> tuple[Principal, str | None]:
        scope = getattr(ctx.request, "scope", None) or {}
        principal = scope.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            raise MCPError(INVALID_REQUEST, "unauthenticated")
        self.remember_connection(ctx)
        return principal, scope.get(TARGET_KEY)

    @staticmethod
    def span(
        ctx: Ctx, method: str, target: str, attributes: dict[str, Any]
    ) -> AbstractContextManager[Any]:
        """The span of a request the call pipeline does not trace (tracing.operation),
        named and described as the MCP semantic conventions ask."""
        scope = getattr(ctx.request, "scope", None) or {}
        trace = (scope.get("state") or {}).get(TRACE_STATE_KEY)
        if trace is None:  # tracing is off
            return nullcontext()
        headers = getattr(ctx.request, "headers", None)
        session = headers.get("mcp-session-id") if headers is not None else None
        described = {
            "mcp.method.name": method,
            **attributes,
            **({"mcp.session.id": session} if session else {}),
            **({"jsonrpc.request.id": str(ctx.request_id)} if ctx.request_id is not None else {}),
            **({"mcp.protocol.version": ctx.protocol_version} if ctx.protocol_version else {}),
        }
        return operation(
            f"{method} {target}",
            described,
            request=trace,
            meta=ctx.meta,
            kind=SpanKind.SERVER,
        )

    def remember_connection(self, ctx: Ctx) -> None:
        """Keep a 2025-11-25 agent connection for list_changed notifications. Called
        from `initialize` on, since later requests may all take the fast path."""
        if ctx.method == "initialize" or ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
            connection = agent_connection(ctx.session)
            if connection is not None:
                self._connections.add(connection)

    async def catalog_changed(self) -> None:
        """Fan a catalog change out to every connected agent, in its protocol era."""
        for event in (ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()):
            await self.bus.publish(event)
        for connection in list(self._connections):
            try:
                await connection.send_tool_list_changed()
                await connection.send_prompt_list_changed()
                await connection.send_resource_list_changed()
            except Exception:
                self._connections.discard(connection)  # closed meanwhile

    @staticmethod
    def _need(principal: Principal, permission: str) -> None:
        if not principal.can(permission):
            raise MCPError(INVALID_REQUEST, f"this key lacks the permission '{permission}'")

    async def _resource_updated(self, front_uri: str) -> None:
        await self.bus.publish(ResourceUpdated(front_uri))

    # --- tools --------------------------------------------------------------------------
    async def list_tools(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        principal, target = self.context(ctx)
        return (await self.tools_page(principal, target, params.cursor if params else None))[0]

    async def tools_page(
        self, principal: Principal, target: str | None, cursor: str | None
    ) -> tuple[types.ListToolsResult, tuple[object, ...]]:
        """One page of ``tools/list`` and what it was made of: objects that are replaced,
        never changed, when a catalog, a caller's view or a pillar's tools change, so
        the fast path can cache the serialised page by their identity."""
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        if target is not None:
            catalog, tools = self.servers.server_tools(principal, target)
            chunk, following = self._page(tools, params)
            return types.ListToolsResult(tools=chunk, next_cursor=following), (catalog,)
        view = self.servers.tool_view(principal)
        # Pillar tools are extra to either mode, on the first page (cursors unchanged).
        lists = [await surface.tools(principal) for surface in self.surfaces] if not cursor else []
        extra = [tool for tools in lists for tool in tools]
        if len(lists) > 1:
            extra.sort(key=_tool_name)  # upper-case names: before every server's tools
        mode = self.mode_for(principal, len(view.tools))
        if mode == "search_execute":
            listed = [
                tool
                for surface, tools in zip(self.surfaces, lists, strict=False)
                if surface.listed_in_search_mode
                for tool in tools
            ]
            return types.ListToolsResult(tools=META_TOOLS + listed), (view, mode, *lists)
        chunk, following = self._page(view.tools, params)
        result = types.ListToolsResult(tools=extra + chunk, next_cursor=following)
        return result, (view, mode, *lists)

    def _page(
        self, items: list[T], params: types.PaginatedRequestParams | None, merged: bool = False
    ) -> tuple[list[T], str | None]:
        """A page of ``items``; ``merged``: they include the surfaces' (their changes
        invalidate cursors too). Versions are plain ints, the same in every replica."""
        cursor = params.cursor if params else None
        version = self.servers.catalog_version
        if merged:
            for surface in self.surfaces:
                version = (version * 1_000_003 + surface.generation) % (1 << 61)
        return pages.page(items, cursor, version, self.page_size)

    async def _unlisted_index(self, principal: Principal) -> ToolIndex | None:
        """A search index over the pillar tools `search_execute` mode does not list."""
        lists = [
            await surface.tools(principal)
            for surface in self.surfaces
            if not surface.listed_in_search_mode
        ]
        key = tuple(id(tools) for tools in lists)
        cached = self._unlisted.get(key)
        if cached is None or any(a is not b for a, b in zip(cached[0], lists, strict=True)):
            tools = [tool for listed in lists for tool in listed]
            cached = (lists, ToolIndex(tools) if tools else None)
            if len(self._unlisted) > 64:
                self._unlisted.clear()
            self._unlisted[key] = cached
        return cached[1]

    async def search(self, principal: Principal, arguments: dict[str, Any]) -> types.CallToolResult:
        """SEARCH_TOOLS (and REST ``tools/search``) over what ``principal`` may see: its
        view's index holds only visible servers' tools, so a hidden tool is never a hit."""
        view = self.servers.tool_view(principal)
        index = await view.search_index()
        unlisted = await self._unlisted_index(principal)
        return search_result(index, arguments, unlisted, unavailable=view.unavailable)

    def surface_for(self, name: str) -> Surface | None:
        """The pillar that serves the tool called ``name``, if it is a pillar's."""
        for surface in self.surfaces:
            if surface.handles_tool(name):
                return surface
        return None

    @staticmethod
    def session_key(ctx: Ctx) -> str | None:
        """The agent's MCP session (2025-11-25), for pillars that keep per-session state."""
        headers = getattr(ctx.request, "headers", None)
        session_id = headers.get("mcp-session-id") if headers is not None else None
        return f"mcp:{session_id}" if session_id else None

    def mode_for(self, principal: Principal, tool_count: int) -> str:
        return resolve_mode(principal.interface_mode or self.mode, tool_count, self.threshold)

    async def call_tool(self, ctx: Ctx, params: types.CallToolRequestParams) -> CallResult:
        principal, target = self.context(ctx)
        arguments = dict(params.arguments or {})
        if self.servers.is_retry(ctx, params):
            return await self.servers.call_tool(ctx, principal, target, params, arguments)
        surface = self.surface_for(params.name) if target is None else None
        if surface is not None:
            with self.span(ctx, "tools/call", params.name, {"gen_ai.tool.name": params.name}):
                return await surface.call_tool(
                    principal, params.name, arguments, self.session_key(ctx)
                )
        if target is None and params.name == SEARCH_TOOLS:  # reading, not calling
            return await self.search(principal, arguments)
        via = None
        if target is None and params.name == EXECUTE_TOOL:
            unpacked = execute_target(arguments)
            if isinstance(unpacked, types.CallToolResult):
                return unpacked
            surface = self.surface_for(unpacked[0])
            if surface is not None:
                attributes = {"gen_ai.tool.name": unpacked[0], "mcpgw.via": EXECUTE_TOOL}
                with self.span(ctx, "tools/call", unpacked[0], attributes):
                    return await surface.call_tool(
                        principal, unpacked[0], unpacked[1], self.session_key(ctx)
                    )
            params = params.model_copy(update={"name": unpacked[0]})
            arguments, via = unpacked[1], EXECUTE_TOOL
        return await self.servers.call_tool(ctx, principal, target, params, arguments, via)

    # --- resources ----------------------------------------------------------------------
    def _surfaces_for(self, target: str | None) -> list[Surface]:
        """Pillar surfaces are served on /mcp, not on one server's endpoint."""
        return self.surfaces if target is None else []

    async def list_resources(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        principal, target = self.context(ctx)
        extra = [r for s in self._surfaces_for(target) for r in await s.resources(principal)]
        if not extra:
            self._need(principal, "tools:read")
        items = await self.servers.resources(principal, target)
        chunk, following = self._page(items + extra, params, merged=target is None)
        return types.ListResourcesResult(resources=chunk, next_cursor=following)

    async def list_resource_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        principal, target = self.context(ctx)
        extra = [t for s in self._surfaces_for(target) for t in await s.templates(principal)]
        if not extra:
            self._need(principal, "tools:read")
        items = await self.servers.templates(principal, target)
        chunk, following = self._page(items + extra, params, merged=target is None)
        return types.ListResourceTemplatesResult(resource_templates=chunk, next_cursor=following)

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        principal, target = self.context(ctx)
        uri = str(params.uri)
        with self.span(ctx, "resources/read", uri, {"mcp.resource.uri": uri}):
            for surface in self._surfaces_for(target):
                if surface.owns_uri(uri):
                    return await surface.read_resource(principal, uri)
            self._need(principal, "tools:read")
            return await self.servers.read_resource(ctx, principal, target, params)

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        await self.subscription(ctx, str(params.uri), True)
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: Ctx, params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        await self.subscription(ctx, str(params.uri), False)
        return types.EmptyResult()

    async def subscription(
        self, ctx: Ctx, front_uri: str, subscribe: bool, stream: object = None
    ) -> None:
        """(Un)subscribe the agent's session, or a 2026-07-28 listen ``stream`` (whose
        updates go out on :attr:`bus`, listen.py), to a server's resource."""
        principal, target = self.context(ctx)
        self._need(principal, "tools:read")
        await self.servers.subscription(ctx, principal, target, front_uri, subscribe, stream)

    # --- prompts and completion -----------------------------------------------------------
    async def list_prompts(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        principal, target = self.context(ctx)
        extra = [p for s in self._surfaces_for(target) for p in await s.prompts(principal)]
        if not extra:
            self._need(principal, "tools:read")
        items = await self.servers.prompts(principal, target)
        chunk, following = self._page(items + extra, params, merged=target is None)
        return types.ListPromptsResult(prompts=chunk, next_cursor=following)

    async def get_prompt(
        self, ctx: Ctx, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        principal, target = self.context(ctx)
        with self.span(ctx, "prompts/get", params.name, {"gen_ai.prompt.name": params.name}):
            for surface in self._surfaces_for(target):
                if surface.handles_prompt(params.name):
                    return await surface.get_prompt(principal, params.name, params.arguments)
            self._need(principal, "tools:read")
            return await self.servers.get_prompt(ctx, principal, target, params)

    async def complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        principal, target = self.context(ctx)
        self._need(principal, "tools:read")
        return await self.servers.complete(ctx, principal, target, params)

    async def set_logging_level(
        self, ctx: Ctx, params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        # Backend sessions are shared; their log messages are relayed per request.
        self.context(ctx)
        return types.EmptyResult()


def _tool_name(tool: types.Tool) -> str:
    return tool.name
