"""MCP request handlers of the gateway's front, for `/mcp` and `/mcp/servers/{name}`.

Lists come from the in-memory catalog; calls, reads, prompts and completions go
to the backend through the session pool with a :class:`FrontRelay` set, so what
the backend sends back mid-request (progress, log messages, sampling,
elicitation, roots) reaches the agent that asked. A 2026-07-28 agent cannot be asked
mid-call: its backend's questions become `input_required` results (sdk_input.py).
"""

from __future__ import annotations

import logging
import math
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp_types.jsonrpc import INVALID_PARAMS, INVALID_REQUEST
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from gateway.auth.principal import Principal
from gateway.mcp import pages, uris
from gateway.mcp.meta import (
    EXECUTE_TOOL,
    META_TOOLS,
    SEARCH_TOOLS,
    execute_target,
    resolve_mode,
    search_result,
)
from gateway.mcp.results import tool_error
from gateway.mcp.sdk_compat import agent_connection
from gateway.mcp.sdk_input import REQUESTS, SdkCall, SdkInputs
from gateway.mcp.search import ToolIndex
from gateway.mcp.surface import ToolSurface
from gateway.mcp.view import CatalogView
from gateway.servers.calls import CallTarget, find_target, split_qualified
from gateway.servers.pipeline import CallContext, CallDenied
from gateway.servers.runtimes.base import BackendError, BackendRequestError, ServerRuntime
from gateway.servers.runtimes.relay import CURRENT_RELAY
from gateway.servers.service import ServerService

if TYPE_CHECKING:
    from skills.mcp import SkillsMcp

log = logging.getLogger("gateway.mcp")

PRINCIPAL_KEY = "mcpgw.principal"
TARGET_KEY = "mcpgw.target"
RESOURCE_NOT_FOUND = -32002
Ctx = ServerRequestContext[Any, Any]
T = TypeVar("T")
CallResult = types.CallToolResult | types.InputRequiredResult


def _connection(ctx: Ctx) -> Any:
    """The agent's long-lived connection behind a per-request session (SDK-internal:
    the request context exposes only the per-request `ServerSession`)."""
    return agent_connection(ctx.session)


def passthrough(exc: BackendError, code: int) -> MCPError:
    """The backend's own JSON-RPC error when it sent one (code and data intact), else ``code``."""
    if isinstance(exc, BackendRequestError):
        return MCPError(exc.error.code, exc.error.message, exc.error.data)
    return MCPError(code, str(exc))


class FrontRelay:
    """Forwards a backend's mid-request messages to the agent's request."""

    def __init__(self, ctx: Ctx, params: Any = None) -> None:
        self.ctx = ctx
        meta = ctx.meta or {}
        self.wants_progress = bool(meta.get("progress_token") or meta.get("progressToken"))
        self.modern = ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS
        # 2026-07-28 multi-round requests: what the agent answered, forwarded as is.
        self.input_round = _InputRound(params, meta) if self.modern and params is not None else None
        # A 2026 agent's tools/call on the SDK path: asked and told through the input
        # bridge (sdk_input.py), as its round's stream may be gone by then.
        self.call: SdkCall | None = None

    @property
    def askable(self) -> bool:
        """Not parked waiting for its agent's retry (relay.py's rule for questions asked
        outside any call)."""
        return self.call is None or not self.call.awaiting_agent

    async def request(self, method: str, params: Any) -> Any:
        if self.call is not None:
            return await self.call.ask(method, params)
        request_type, result_type = REQUESTS[method]
        request = request_type(params=params) if params is not None else request_type()
        return await self.ctx.session.send_request(
            request,
            result_type,
            metadata=ServerMessageMetadata(related_request_id=self.ctx.request_id),
        )

    async def log(self, params: types.LoggingMessageNotificationParams) -> None:
        if self.call is not None:
            self.call.note(lambda relay: relay.log(params))
            return
        await self.ctx.session.send_notification(
            types.LoggingMessageNotification(params=params), self.ctx.request_id
        )

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.call is not None:
            self.call.note(lambda relay: relay.progress(progress, total, message))
            return
        await self.ctx.session.report_progress(progress, total, message)


class _InputRound:
    def __init__(self, params: Any, meta: Any) -> None:
        self.input_responses = getattr(params, "input_responses", None)
        self.request_state = getattr(params, "request_state", None)
        # The agent's own per-request envelope (its capabilities), minus what our
        # session stamps itself.
        self.meta = {
            k: v for k, v in dict(meta).items() if k not in ("progress_token", "progressToken")
        } or None


class GatewayHandlers:
    """The on_* handlers shared by the aggregated and the per-server endpoint."""

    def __init__(
        self,
        servers: ServerService,
        view: CatalogView,
        *,
        mode: str,
        threshold: int,
        page_size: int = pages.PAGE_SIZE,
        skills: SkillsMcp | None = None,
        surfaces: Sequence[ToolSurface] = (),
    ) -> None:
        # The skills pillar's MCP surface (skill tools, skill:// resources), on /mcp only.
        self.skills = skills
        # Every pillar's tools on /mcp (skills, sandboxes), next to the servers' tools.
        self.surfaces: list[ToolSurface] = ([skills] if skills else []) + list(surfaces)
        self._unlisted: dict[tuple[int, ...], tuple[list[list[types.Tool]], ToolIndex | None]] = {}
        self.page_size = page_size
        self.servers = servers
        self.view = view
        self.mode = mode
        self.threshold = threshold
        # 2026-07-28 clients hear of list changes on `subscriptions/listen` streams fed by
        # this bus; 2025-11-25 sessions get notifications pushed on their GET stream.
        self.bus = InMemorySubscriptionBus()
        # Agent connections (one per 2025-11-25 session), weakly: they go when it ends.
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        # (server, backend uri) → agent sessions subscribed to it
        self._subscribers: dict[tuple[str, str], dict[int, tuple[Any, str]]] = defaultdict(dict)
        # 2026-07-28 agents' calls waiting for their answers to a backend's questions.
        self.inputs = SdkInputs()

    # --- context ------------------------------------------------------------------------
    def context(self, ctx: Ctx) -> tuple[Principal, str | None]:
        scope = getattr(ctx.request, "scope", None) or {}
        principal = scope.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):
            raise MCPError(INVALID_REQUEST, "unauthenticated")
        self.remember_connection(ctx)
        return principal, scope.get(TARGET_KEY)

    def remember_connection(self, ctx: Ctx) -> None:
        """Keep a 2025-11-25 agent connection for list_changed notifications. Called
        from `initialize` on, since later requests may all take the fast path."""
        if ctx.method == "initialize" or ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS:
            connection = _connection(ctx)
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

    def _runtime(self, principal: Principal, server: str, what: str) -> ServerRuntime:
        runtime = self.servers.visible_runtime(principal, server)
        if runtime is None:
            raise MCPError(INVALID_PARAMS, f"unknown {what}")
        return runtime

    @property
    def timeout(self) -> float:
        return self.servers.call_timeout

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
            catalog = self.servers.catalogs.get(target)
            chunk, following = self._page(list(catalog.tools) if catalog else [], params)
            return types.ListToolsResult(tools=chunk, next_cursor=following), (catalog,)
        view = self.view.tools_for(principal)
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
        self, items: list[T], params: types.PaginatedRequestParams | None, with_skills: bool = False
    ) -> tuple[list[T], str | None]:
        cursor = params.cursor if params else None
        version = self.servers.catalog_version
        if with_skills and self.skills is not None:  # lists that merge both catalogs
            version = (version << 32) | self.skills.generation
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

    def surface_for(self, name: str) -> ToolSurface | None:
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
        owner = (principal.user_id, principal.key_id)
        arguments = dict(params.arguments or {})
        state = params.request_state
        if SdkInputs.is_retry(state) and ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS:
            parked = self.inputs.take(state, owner)
            relay = FrontRelay(ctx)

            def resume() -> Awaitable[CallResult]:
                return self.inputs.resume(parked, ctx.params, relay, self.timeout)

            ctx_call = CallContext("sdk", timeout=self.timeout, exchange=resume)
            return await self._call(principal, parked.target, arguments, ctx_call)
        surface = self.surface_for(params.name) if target is None else None
        if surface is not None:
            return await surface.call_tool(principal, params.name, arguments, self.session_key(ctx))
        if target is None and params.name == SEARCH_TOOLS:  # reading, not calling
            index = self.view.tools_for(principal).index
            return search_result(index, arguments, await self._unlisted_index(principal))
        via = None
        if target is None and params.name == EXECUTE_TOOL:
            unpacked = execute_target(arguments)
            if isinstance(unpacked, types.CallToolResult):
                return unpacked
            surface = self.surface_for(unpacked[0])
            if surface is not None:
                return await surface.call_tool(
                    principal, unpacked[0], unpacked[1], self.session_key(ctx)
                )
            params = params.model_copy(update={"name": unpacked[0]})
            arguments, via = unpacked[1], EXECUTE_TOOL
        found = find_target(self.servers, principal, params.name, target)
        if found is None:
            raise MCPError(INVALID_PARAMS, f"unknown tool {params.name!r}")
        relay = FrontRelay(ctx, params)
        exchange = None
        if relay.modern:
            relay.call = SdkCall(owner, found.server, target=found)
            exchange = partial(self._first_round, relay, relay.call, found, arguments, ctx)
        call_ctx = CallContext("sdk", via, self.timeout, relay, exchange)
        return await self._call(principal, found, arguments, call_ctx)

    async def _first_round(
        self,
        relay: FrontRelay,
        call: SdkCall,
        found: CallTarget,
        arguments: dict[str, Any],
        ctx: Ctx,
    ) -> CallResult:
        """A 2026-07-28 agent's call: the backend call runs on while the agent answers
        what it asks, so its own clock is off: each round, and each wait for the agent,
        has the call timeout."""
        token = CURRENT_RELAY.set(relay)
        try:
            runtime, tool = found.runtime, found.tool
            self.inputs.start(call, lambda: runtime.call_tool(tool, arguments, math.inf))
        finally:
            CURRENT_RELAY.reset(token)
        return cast(CallResult, await self.inputs.follow(call, FrontRelay(ctx), self.timeout))

    async def _call(
        self, principal: Principal, found: CallTarget, arguments: dict[str, Any], ctx: CallContext
    ) -> CallResult:
        """The pillar's one call use case, its refusals and backend errors in MCP terms."""
        try:
            return await self.servers.call(principal, found, arguments, ctx)
        except CallDenied as exc:
            return tool_error(exc.message)
        except BackendRequestError as exc:
            # The backend refused the request itself (unknown tool, bad params, bad
            # requestState): a protocol error, passed on as one.
            raise passthrough(exc, INVALID_PARAMS) from None

    # --- resources ----------------------------------------------------------------------
    def _servers_for(self, principal: Principal, target: str | None) -> list[str]:
        return [target] if target is not None else self.view.visible_servers(principal)

    async def list_resources(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        principal, target = self.context(ctx)
        skills = self._skills_for(target)
        skill_items = await skills.resources(principal) if skills else []
        if not skill_items:
            self._need(principal, "tools:read")
        items: list[types.Resource] = []
        for server in self._servers_for(principal, target) if principal.can("tools:read") else []:
            catalog = self.servers.catalogs.get(server)
            for resource in catalog.resources if catalog else []:
                if target is None:
                    resource = resource.model_copy(
                        update={"uri": uris.wrap(server, str(resource.uri))}
                    )
                items.append(resource)
        chunk, following = self._page(items + skill_items, params, with_skills=target is None)
        return types.ListResourcesResult(resources=chunk, next_cursor=following)

    def _skills_for(self, target: str | None) -> SkillsMcp | None:
        """Skills are served on /mcp, not on one server's endpoint."""
        return self.skills if target is None else None

    async def list_resource_templates(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        principal, target = self.context(ctx)
        skills = self._skills_for(target)
        skill_items = await skills.templates(principal) if skills else []
        if not skill_items:
            self._need(principal, "tools:read")
        items: list[types.ResourceTemplate] = []
        for server in self._servers_for(principal, target) if principal.can("tools:read") else []:
            catalog = self.servers.catalogs.get(server)
            for template in catalog.resource_templates if catalog else []:
                if target is None:
                    template = template.model_copy(
                        update={"uri_template": uris.wrap(server, template.uri_template)}
                    )
                items.append(template)
        chunk, following = self._page(items + skill_items, params, with_skills=target is None)
        return types.ListResourceTemplatesResult(resource_templates=chunk, next_cursor=following)

    def _resolve_uri(self, principal: Principal, target: str | None, uri: str) -> tuple[str, str]:
        if target is not None:
            return target, uri
        found = uris.unwrap(uri)
        if found is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"resource not found: {uri}")
        return found

    async def read_resource(
        self, ctx: Ctx, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        principal, target = self.context(ctx)
        skills = self._skills_for(target)
        if skills is not None and skills.owns_uri(str(params.uri)):
            return await skills.read_resource(principal, str(params.uri))
        self._need(principal, "tools:read")
        server, uri = self._resolve_uri(principal, target, str(params.uri))
        runtime = self._runtime(principal, server, "resource")
        token = CURRENT_RELAY.set(FrontRelay(ctx, params))
        try:
            result = await runtime.read_resource(uri, self.timeout)
        except BackendError as exc:
            raise passthrough(exc, RESOURCE_NOT_FOUND) from None
        finally:
            CURRENT_RELAY.reset(token)
        if target is None:
            contents = [
                c.model_copy(update={"uri": uris.wrap(server, str(c.uri))}) for c in result.contents
            ]
            result = result.model_copy(update={"contents": contents})
        return result

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        await self._subscription(ctx, str(params.uri), True)
        return types.EmptyResult()

    async def unsubscribe(
        self, ctx: Ctx, params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        await self._subscription(ctx, str(params.uri), False)
        return types.EmptyResult()

    async def _subscription(
        self, ctx: Ctx, front_uri: str, subscribe: bool, stream: object = None
    ) -> None:
        """Count a subscriber of ``front_uri``: the agent's session, or (``stream``) a
        2026-07-28 listen stream, whose updates go out on :attr:`bus` (listen.py)."""
        principal, target = self.context(ctx)
        self._need(principal, "tools:read")
        server, uri = self._resolve_uri(principal, target, front_uri)
        runtime = self._runtime(principal, server, "resource")
        listeners = self._subscribers[(server, uri)]
        connection = None if stream is not None else (_connection(ctx) or ctx.session)
        first, key = not listeners, id(stream if stream is not None else connection)
        if subscribe:
            listeners[key] = (connection, front_uri)
            if first:
                await self._backend_subscription(runtime, uri, True)
        elif listeners.pop(key, None) is not None and not listeners:
            await self._backend_subscription(runtime, uri, False)

    async def _backend_subscription(self, runtime: ServerRuntime, uri: str, on: bool) -> None:
        # One backend subscription serves agents of both eras: the runtime picks the
        # session (resources/subscribe in 2025-11-25, the listen filter in 2026-07-28).
        try:
            await runtime.subscribe(uri, on, self.timeout)
        except BackendError as exc:
            raise passthrough(exc, INVALID_PARAMS) from None

    async def resource_updated(self, server: str, uri: str) -> None:
        """A backend announced a change: tell every agent session subscribed to it."""
        published: set[str] = set()
        for key, (session, front_uri) in list(self._subscribers.get((server, uri), {}).items()):
            if session is None:  # listen streams: the bus delivers by URI, once per URI
                if front_uri not in published:
                    published.add(front_uri)
                    await self.bus.publish(ResourceUpdated(front_uri))
                continue
            try:
                await session.send_resource_updated(front_uri)
            except Exception:
                self._subscribers[(server, uri)].pop(key, None)  # that session is gone

    # --- prompts and completion -----------------------------------------------------------
    async def list_prompts(
        self, ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        principal, target = self.context(ctx)
        self._need(principal, "tools:read")
        items: list[types.Prompt] = []
        for server in self._servers_for(principal, target):
            catalog = self.servers.catalogs.get(server)
            for prompt in catalog.prompts if catalog else []:
                if target is None:
                    prompt = prompt.model_copy(update={"name": f"{server}__{prompt.name}"})
                items.append(prompt)
        chunk, following = self._page(items, params)
        return types.ListPromptsResult(prompts=chunk, next_cursor=following)

    def _prompt_target(self, target: str | None, name: str) -> tuple[str, str]:
        if target is not None:
            return target, name
        try:
            return split_qualified(name)
        except Exception:
            raise MCPError(INVALID_PARAMS, f"unknown prompt {name!r}") from None

    async def get_prompt(
        self, ctx: Ctx, params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        principal, target = self.context(ctx)
        self._need(principal, "tools:read")
        server, name = self._prompt_target(target, params.name)
        runtime = self._runtime(principal, server, f"prompt {params.name!r}")
        token = CURRENT_RELAY.set(FrontRelay(ctx, params))
        try:
            result = await runtime.get_prompt(name, params.arguments, self.timeout)
        except BackendError as exc:
            raise passthrough(exc, INVALID_PARAMS) from None
        finally:
            CURRENT_RELAY.reset(token)
        return result

    async def complete(self, ctx: Ctx, params: types.CompleteRequestParams) -> types.CompleteResult:
        principal, target = self.context(ctx)
        self._need(principal, "tools:read")
        ref = params.ref
        if isinstance(ref, types.PromptReference):
            server, name = self._prompt_target(target, ref.name)
            ref = ref.model_copy(update={"name": name})
        else:
            server, uri = self._resolve_uri(principal, target, ref.uri)
            ref = ref.model_copy(update={"uri": uri})
        runtime = self._runtime(principal, server, "completion target")
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = dict(params.context.arguments or {}) if params.context else None
        token = CURRENT_RELAY.set(FrontRelay(ctx))
        try:
            result = await runtime.complete(ref, argument, context, self.timeout)
        except BackendError as exc:
            raise passthrough(exc, INVALID_PARAMS) from None
        finally:
            CURRENT_RELAY.reset(token)
        return result

    async def set_logging_level(
        self, ctx: Ctx, params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        # Backend sessions are shared; their log messages are relayed per request.
        self.context(ctx)
        return types.EmptyResult()


def _tool_name(tool: types.Tool) -> str:
    return tool.name
