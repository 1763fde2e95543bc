"""Pillar 1 on `/mcp`: the registered servers' tools, resources, prompts and completions.

The protocol front (gateway/mcp/handlers.py) authenticates, pages, merges every
surface and answers the meta-tools; what concerns the servers it asks of
:class:`ServersMcp`. Lists come from the in-memory catalog; calls go through the
pillar's one call use case (``ServerService.call``, the call pipeline); reads,
prompts and completions go to the backend through the session pool with a
:class:`FrontRelay` set, so what the backend sends back mid-request (progress, log
messages, sampling, elicitation, roots) reaches the agent that asked. A 2026-07-28
agent cannot be asked mid-call: its backend's questions become `input_required`
results (sdk_input.py). On `/mcp` names are namespaced (`{server}__{tool}`, URIs by
uris.py); on `/mcp/servers/{name}` (``target``) they are the server's own.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar, cast

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from gateway.auth.principal import Principal
from gateway.mcp.errors import to_mcp_error
from gateway.mcp.results import tool_error
from gateway.mcp.sdk_compat import agent_connection
from gateway.mcp.surface import FastLane, FastLaneParts
from gateway.observability.tracing import TRACE_STATE_KEY
from gateway.policy.limits import LimitExceeded
from gateway.policy.service import PolicyDenied
from gateway.servers.availability import with_mark
from gateway.servers.cache import cache_of
from gateway.servers.calls import CallTarget, find_target, qualified, split_qualified
from gateway.servers.controls import ArgumentsTooLarge
from gateway.servers.mcp import uris
from gateway.servers.mcp.approvals import AskFirst, approver, park_for_approval, retry_approver
from gateway.servers.mcp.fastpath import FastPath
from gateway.servers.mcp.sdk_input import REQUESTS, SdkCall, SdkInputs
from gateway.servers.mcp.tasks import McpTasks
from gateway.servers.mcp.view import CatalogView, ToolView
from gateway.servers.pipeline import Approver, CallContext, CallDenied, TraceOrigin
from gateway.servers.resilience import retry
from gateway.servers.runtimes.base import BackendError, BackendRequestError, ServerRuntime
from gateway.servers.runtimes.relay import CURRENT_RELAY
from gateway.servers.service import ServerService
from gateway.servers.tasks import CallTasks

T = TypeVar("T")

RESOURCE_NOT_FOUND = -32002
Ctx = ServerRequestContext[Any, Any]
CallResult = types.CallToolResult | types.InputRequiredResult


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
        self.asked = False  # the backend asked the agent something (not cached then)
        self.long_running = False  # the agent waits on the call: see backend_tasks.py

    @property
    def askable(self) -> bool:
        """Not parked waiting for its agent's retry (relay.py's rule for questions asked
        outside any call)."""
        return self.call is None or not self.call.awaiting_agent

    @property
    def affinity(self) -> str | None:
        """The 2025-11-25 agent's session, whose calls a replicated server keeps on one
        replica (runtimes/replicas.py); None for a stateless 2026-07-28 agent."""
        if self.modern:
            return None
        headers = getattr(self.ctx.request, "headers", None)
        return headers.get("mcp-session-id") if headers is not None else None

    def trace_origin(self) -> TraceOrigin:
        """The request's trace fields, for the call's span (read only when traced)."""
        ctx = self.ctx
        request = ctx.request
        scope = getattr(request, "scope", None) or {}
        headers = getattr(request, "headers", None)
        return TraceOrigin(
            ctx.meta,
            (scope.get("state") or {}).get(TRACE_STATE_KEY),
            headers.get("mcp-session-id") if headers is not None else None,
            ctx.request_id,
            ctx.protocol_version,
        )

    async def request(self, method: str, params: Any) -> Any:
        self.asked = True
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


def _approver(ctx: Ctx, relay: FrontRelay) -> Approver | None:
    """How to ask the agent's user to approve a call (approvals.py): in its 2025-11-25
    session, or in an `input_required` round for a 2026-07-28 request; None when the
    client declared no elicitation."""
    capabilities = getattr(ctx.session, "client_capabilities", None)
    return approver(capabilities, relay, relay.modern)


class _InputRound:
    def __init__(self, params: Any, meta: Any) -> None:
        self.input_responses = getattr(params, "input_responses", None)
        self.request_state = getattr(params, "request_state", None)
        # The agent's own per-request envelope (its capabilities), minus what our
        # session stamps itself.
        self.meta = {
            k: v for k, v in dict(meta).items() if k not in ("progress_token", "progressToken")
        } or None


class ServersMcp:
    """The registered servers' surface on `/mcp` (:class:`gateway.mcp.surface.ServersSurface`)."""

    def __init__(self, servers: ServerService, tasks: CallTasks | None = None) -> None:
        self.servers = servers
        self.view = CatalogView(servers)
        # MCP tasks (both eras) over tool calls run as jobs; None: this front has none.
        self.tasks = McpTasks(tasks, self.view) if tasks is not None else None
        # (server, backend uri) → agent sessions (or listen streams) subscribed to it
        self._subscribers: dict[tuple[str, str], dict[int, tuple[Any, str]]] = defaultdict(dict)
        # 2026-07-28 agents' calls waiting for their answers to a backend's questions.
        self.inputs = SdkInputs()
        # Where a resource update for a 2026-07-28 listen stream goes (the front's bus).
        self._publish: Callable[[str], Awaitable[None]] | None = None
        # One server's tools as a policy shows them: (server, signature) → (catalog, tools).
        self._server_views: dict[tuple[str, Any], tuple[object, list[types.Tool]]] = {}

    # --- what the front asks of every request ------------------------------------------
    @property
    def catalog_version(self) -> int:
        return self.servers.catalog_version

    @property
    def timeout(self) -> float:
        return self.servers.call_timeout

    def visible(self, principal: Principal, target: str) -> bool:
        """Whether `/mcp/servers/{target}` is a server this caller may use."""
        return self.servers.visible_runtime(principal, target) is not None

    def tool_view(self, principal: Principal) -> ToolView:
        """The caller's namespaced tools on `/mcp` (cached per visibility)."""
        return self.view.tools_for(principal)

    def server_tools(self, principal: Principal, target: str) -> tuple[object, list[types.Tool]]:
        """One server's own tools as ``principal`` may see them, and the object they came
        from (replaced on change: a catalog, or the policy's filtered list of it)."""
        catalog = self.servers.catalogs.get(target)
        # The server's tools as agents see them (its transforms applied; without any,
        # the catalog's own list; unavailable ones marked): replaced when the catalog,
        # its transforms or the marks change.
        listed = self.view.listed_tools(target) if catalog is not None else []
        tools = list(listed)
        policy = self.servers.policy_for(principal)
        if policy is None or catalog is None:
            return listed, tools
        key = (target, policy.signature(principal))
        cached = self._server_views.get(key)
        if cached is None or cached[0] is not listed:
            shown = [
                t
                for t in tools
                if policy.listable(principal, "tools/call", qualified(target, t.name))
            ]
            if len(self._server_views) > 256:
                self._server_views.clear()
            cached = self._server_views[key] = (listed, shown)
        return cached[1], list(cached[1])

    def input_schema(
        self, principal: Principal, target: str | None, name: str
    ) -> dict[str, Any] | None:
        """A tool's input schema from memory (the SDK checks `Mcp-Param` headers by it)."""
        if target is not None:
            return self.view.server_schema(target, name)
        return self.view.tools_for(principal).schemas.get(name)

    def on_change(
        self,
        catalog_changed: Callable[[], Awaitable[None]],
        resource_updated: Callable[[str], Awaitable[None]],
    ) -> None:
        """Tell the front when the catalog changes, and publish resource updates to
        2026-07-28 listen streams with ``resource_updated`` (the front's bus)."""
        self.servers.catalog_listeners.append(catalog_changed)
        self.servers.resource_listeners.append(self.resource_updated)
        self._publish = resource_updated

    def fast_lane(self, parts: FastLaneParts) -> FastLane:
        """The fast path for `tools/call` (and `tools/list` through ``parts.lister``)."""
        fast = FastPath(
            self.servers,
            self.view,
            allowed_hosts=parts.allowed_hosts,
            allowed_origins=parts.allowed_origins,
            known_session=parts.known_session,
        )
        fast.lister, fast.server_info = parts.lister, parts.server_info
        return fast

    def _runtime(self, principal: Principal, server: str, what: str) -> ServerRuntime:
        runtime = self.servers.visible_runtime(principal, server)
        if runtime is None:
            raise MCPError(INVALID_PARAMS, f"unknown {what}")
        return runtime

    # --- tasks --------------------------------------------------------------------------
    async def task_call(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> dict[str, Any] | None:
        """A `tools/call` that becomes an MCP task: its wire result; else None."""
        if self.tasks is None:
            return None
        return await self.tasks.call(ctx, principal, target, params)

    async def task_request(
        self, ctx: Ctx, principal: Principal, method: str, params: Any
    ) -> dict[str, Any]:
        """`tasks/get`, `tasks/update`, `tasks/cancel` (and 2025-11-25's `tasks/result`,
        `tasks/list`): the wire result."""
        if self.tasks is None:
            raise MCPError(METHOD_NOT_FOUND, f"{method}: this gateway runs no tasks")
        return await self.tasks.request(ctx, principal, method, params or {})

    # --- tools --------------------------------------------------------------------------
    @staticmethod
    def is_retry(ctx: Ctx, params: types.CallToolRequestParams) -> bool:
        """A 2026-07-28 agent's retry of a call parked for its answers (either path's)."""
        return (
            SdkInputs.is_retry(params.request_state)
            and ctx.protocol_version not in HANDSHAKE_PROTOCOL_VERSIONS
        )

    async def call_tool(
        self,
        ctx: Ctx,
        principal: Principal,
        target: str | None,
        params: types.CallToolRequestParams,
        arguments: dict[str, Any],
        via: str | None = None,
    ) -> CallResult:
        """Call a server's tool (``params.name``, or what ``via`` a meta-tool named)."""
        owner = (principal.user_id, principal.key_id)
        if self.is_retry(ctx, params):
            parked = self.inputs.take(cast(str, params.request_state), owner)
            relay = FrontRelay(ctx)

            timeout = self.servers.timeout_for(parked.target)

            def resume() -> Awaitable[CallResult]:
                return self.inputs.resume(parked, ctx.params, relay, timeout)

            asked = parked.verdict is not None  # its user was asked to approve it
            ctx_call = CallContext(
                "sdk",
                timeout=timeout,
                exchange=resume,
                origin=relay,
                approve=retry_approver(self.inputs, parked, ctx.params) if asked else None,
                cacheable=False,  # it resumes a call: its answer depends on the agent's
            )
            return await self._call(principal, parked.target, arguments, ctx_call)
        found = find_target(self.servers, principal, params.name, target)
        if found is None:
            raise MCPError(INVALID_PARAMS, f"unknown tool {params.name!r}")
        relay = FrontRelay(ctx, params)
        exchange = None
        if relay.modern:
            relay.call = SdkCall(owner, found.server, target=found)
            exchange = partial(self._first_round, relay, relay.call, found, arguments, ctx)
        call_ctx = CallContext(
            "sdk",
            via,
            self.servers.timeout_for(found),
            relay,
            exchange,
            origin=relay,
            approve=_approver(ctx, relay),
        )
        call_ctx.meta = ctx.meta
        try:
            return await self._call(principal, found, arguments, call_ctx)
        except AskFirst as first:  # a 2026 agent's user approves the call in a round first
            assert relay.call is not None
            runtime, tool = found.runtime, found.backend
            park_for_approval(
                self.inputs, relay.call, relay, runtime, tool, arguments, first.reason
            )
            timeout = call_ctx.timeout or self.timeout
            follow = self.inputs.follow(relay.call, FrontRelay(ctx), timeout)
            return cast(CallResult, await follow)

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
            runtime, tool, breakers = found.runtime, found.backend, self.servers.resilience
            state = breakers.state_of(found.server, tool) if breakers is not None else None
            self.inputs.start(call, lambda: retry.repeat(runtime, tool, arguments, math.inf, state))
        finally:
            CURRENT_RELAY.reset(token)
        timeout = self.servers.timeout_for(found)
        return cast(CallResult, await self.inputs.follow(call, FrontRelay(ctx), timeout))

    async def _call(
        self, principal: Principal, found: CallTarget, arguments: dict[str, Any], ctx: CallContext
    ) -> CallResult:
        """The pillar's one call use case, its refusals and backend errors in MCP terms."""
        try:
            return await self.servers.call(principal, found, arguments, ctx)
        except ArgumentsTooLarge as exc:  # as a body over the global limit: a JSON-RPC error
            raise MCPError(exc.rpc_code, exc.message, exc.rpc_data()) from None
        except CallDenied as exc:
            return tool_error(exc.message)
        except LimitExceeded as exc:  # a JSON-RPC error: clients can retry on its data
            raise to_mcp_error(exc) from None
        except BackendRequestError as exc:
            # The backend refused the request itself (unknown tool, bad params, bad
            # requestState): a protocol error, passed on as one.
            raise to_mcp_error(exc, INVALID_PARAMS) from None

    # --- resources ----------------------------------------------------------------------
    def _servers_for(self, principal: Principal, target: str | None) -> list[str]:
        if not principal.can("tools:read"):
            return []
        return [target] if target is not None else self.view.visible_servers(principal)

    def _allowed(
        self,
        principal: Principal,
        action: str,
        server: str,
        name: str,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """The policy's decision on a resource read or prompt get, as a JSON-RPC error."""
        try:
            self.servers.check_policy(principal, action, server, name, arguments)
        except PolicyDenied as exc:
            raise to_mcp_error(exc) from None

    async def resources(self, principal: Principal, target: str | None) -> list[types.Resource]:
        items: list[types.Resource] = []
        policy = self.servers.policy_for(principal)
        for server in self._servers_for(principal, target):
            catalog = self.servers.catalogs.get(server)
            mark = self.servers.availability.of_server(server)  # listed all the same
            for resource in catalog.resources if catalog else []:
                name = qualified(server, str(resource.uri))
                if policy is not None and not policy.listable(principal, "resources/read", name):
                    continue
                if target is None:
                    resource = resource.model_copy(
                        update={"uri": uris.wrap(server, str(resource.uri))}
                    )
                items.append(with_mark(resource, mark))
        return items

    async def templates(
        self, principal: Principal, target: str | None
    ) -> list[types.ResourceTemplate]:
        items: list[types.ResourceTemplate] = []
        for server in self._servers_for(principal, target):
            catalog = self.servers.catalogs.get(server)
            for template in catalog.resource_templates if catalog else []:
                if target is None:
                    template = template.model_copy(
                        update={"uri_template": uris.wrap(server, template.uri_template)}
                    )
                items.append(template)
        return items

    def _retried(
        self, runtime: ServerRuntime, what: str, work: Callable[[float], Awaitable[T]]
    ) -> Callable[[], Awaitable[T]]:
        """A read (``work(seconds left)``), retried where the server's retries are on:
        a read is always safe to repeat (resilience/retry.py)."""
        resilience = self.servers.resilience
        plan = resilience.read_plan(runtime.spec) if resilience is not None else None
        if plan is None:
            return partial(work, self.timeout)
        return partial(retry.again, work, self.timeout, plan[0], plan[1], what)

    def _resolve_uri(self, target: str | None, uri: str) -> tuple[str, str]:
        if target is not None:
            return target, uri
        found = uris.unwrap(uri)
        if found is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"resource not found: {uri}")
        return found

    async def read_resource(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> types.ReadResourceResult:
        server, uri = self._resolve_uri(target, str(params.uri))
        async with self.servers.audit.track(
            "resources/read", principal, route="mcp", server=server, target=uri
        ) as entry:
            runtime = self._runtime(principal, server, "resource")
            entry.mask = runtime.spec.secrets
            self._allowed(principal, "resources/read", server, uri)
            token = CURRENT_RELAY.set(FrontRelay(ctx, params))
            read = self._retried(runtime, uri, lambda left: runtime.read_resource(uri, left))
            cache = cache_of(self.servers.pipeline)
            try:
                if cache is None:
                    result = await read()
                else:  # answered from the response cache, perhaps (audited as such)
                    result, cached = await cache.read(
                        principal, runtime.spec, server, uri, ctx.meta, read
                    )
                    entry.detail = {"cache": cached} if cached else None
            except BackendError as exc:
                raise to_mcp_error(exc, RESOURCE_NOT_FOUND) from None
            finally:
                CURRENT_RELAY.reset(token)
            entry.result = result
        if target is None:
            contents = [
                c.model_copy(update={"uri": uris.wrap(server, str(c.uri))}) for c in result.contents
            ]
            result = result.model_copy(update={"contents": contents})
        return result

    async def subscription(
        self,
        ctx: Ctx,
        principal: Principal,
        target: str | None,
        front_uri: str,
        subscribe: bool,
        stream: object = None,
    ) -> None:
        """Count a subscriber of ``front_uri``: the agent's session, or (``stream``) a
        2026-07-28 listen stream, whose updates go to the front's bus."""
        server, uri = self._resolve_uri(target, front_uri)
        runtime = self._runtime(principal, server, "resource")
        listeners = self._subscribers[(server, uri)]
        connection = None if stream is not None else (agent_connection(ctx.session) or ctx.session)
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
            raise to_mcp_error(exc, INVALID_PARAMS) from None

    async def resource_updated(self, server: str, uri: str) -> None:
        """A backend announced a change: tell every agent session subscribed to it."""
        published: set[str] = set()
        for key, (session, front_uri) in list(self._subscribers.get((server, uri), {}).items()):
            if session is None:  # listen streams: the bus delivers by URI, once per URI
                if front_uri not in published:
                    published.add(front_uri)
                    if self._publish is not None:
                        await self._publish(front_uri)
                continue
            try:
                await session.send_resource_updated(front_uri)
            except Exception:
                self._subscribers[(server, uri)].pop(key, None)  # that session is gone

    # --- prompts and completion -----------------------------------------------------------
    async def prompts(self, principal: Principal, target: str | None) -> list[types.Prompt]:
        items: list[types.Prompt] = []
        policy = self.servers.policy_for(principal)
        for server in self._servers_for(principal, target):
            catalog = self.servers.catalogs.get(server)
            mark = self.servers.availability.of_server(server)
            for prompt in catalog.prompts if catalog else []:
                name = qualified(server, prompt.name)
                if policy is not None and not policy.listable(principal, "prompts/get", name):
                    continue
                if target is None:
                    prompt = prompt.model_copy(update={"name": qualified(server, prompt.name)})
                items.append(with_mark(prompt, mark))
        return items

    def _prompt_target(self, target: str | None, name: str) -> tuple[str, str]:
        if target is not None:
            return target, name
        try:
            return split_qualified(name)
        except Exception:
            raise MCPError(INVALID_PARAMS, f"unknown prompt {name!r}") from None

    async def get_prompt(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> types.GetPromptResult:
        server, name = self._prompt_target(target, params.name)
        async with self.servers.audit.track(
            "prompts/get", principal, route="mcp", server=server, target=name,
            arguments=params.arguments,
        ) as entry:  # fmt: skip
            runtime = self._runtime(principal, server, f"prompt {params.name!r}")
            entry.mask = runtime.spec.secrets
            self._allowed(principal, "prompts/get", server, name, params.arguments)
            token = CURRENT_RELAY.set(FrontRelay(ctx, params))
            try:
                arguments = params.arguments
                result = await self._retried(
                    runtime, name, lambda left: runtime.get_prompt(name, arguments, left)
                )()
            except BackendError as exc:
                raise to_mcp_error(exc, INVALID_PARAMS) from None
            finally:
                CURRENT_RELAY.reset(token)
            entry.result = result
        return result

    async def complete(
        self, ctx: Ctx, principal: Principal, target: str | None, params: Any
    ) -> types.CompleteResult:
        ref = params.ref
        if isinstance(ref, types.PromptReference):
            server, name = self._prompt_target(target, ref.name)
            ref = ref.model_copy(update={"name": name})
        else:
            server, uri = self._resolve_uri(target, ref.uri)
            ref = ref.model_copy(update={"uri": uri})
        runtime = self._runtime(principal, server, "completion target")
        argument = {"name": params.argument.name, "value": params.argument.value}
        context = dict(params.context.arguments or {}) if params.context else None
        token = CURRENT_RELAY.set(FrontRelay(ctx))
        try:
            result = await runtime.complete(ref, argument, context, self.timeout)
        except BackendError as exc:
            raise to_mcp_error(exc, INVALID_PARAMS) from None
        finally:
            CURRENT_RELAY.reset(token)
        return result
