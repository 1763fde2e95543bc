"""One persistent MCP client session to one backend, whatever the transport.

A supervisor task owns the session (anyio requires a context to be exited by the
task that entered it): it connects, watches for the connection to drop, reconnects
once with backoff after a drop, and closes on stop. Calls from any task share the
session concurrently, bounded by a limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

from mcp import Client, types
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import CONNECTION_CLOSED
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.observability.masking import mask_structure, mask_text
from gateway.servers.runtimes.backend_tasks import (
    BackendTaskCall,
    requires_task,
    runs_as_task,
    task_support,
    undeclared_as_optional,
)
from gateway.servers.runtimes.base import (
    BackendError,
    BackendNotConnected,
    BackendRequestError,
    BackendTimeout,
    BackendUnavailable,
    Catalog,
    Connector,
    Health,
    RuntimeContext,
    ServerSpec,
    monotonic,
)
from gateway.servers.runtimes.connect_span import ConnectSpan
from gateway.servers.runtimes.direct import DirectRoute
from gateway.servers.runtimes.limiter import Limiter
from gateway.servers.runtimes.listener import ListenStream
from gateway.servers.runtimes.relay import (
    CURRENT_RELAY,
    Callers,
    Relay,
)
from gateway.servers.runtimes.remote import StreamableHttpTarget
from gateway.servers.runtimes.sdk_client import (
    TASKS_EXTENSION,
    agent_input_round,
    connection_lost,
    describe,
    fetch_catalog,
    forward_agent_capabilities,
    probe,
    propagate_trace,
    session_closed,
    tolerate_results,
)

log = logging.getLogger("gateway.servers")

_WATCH_INTERVAL = 0.25
_MAX_BACKOFF = 30.0


class McpConnection:
    """A :class:`ServerRuntime` over one MCP session (stdio, HTTP, SSE or in-process)."""

    def __init__(
        self,
        spec: ServerSpec,
        connector: Connector,
        ctx: RuntimeContext,
        *,
        mode: str | None = None,
    ) -> None:
        self.spec = spec
        self._mode = mode
        self.connector = connector
        self.ctx = ctx
        self.health = Health()
        self.last_used = monotonic()
        self._client: Client | None = None
        self._connected = asyncio.Event()
        self._failed: BaseException | None = None
        # One stop event per supervisor: a restart never un-stops an old one.
        self._stop = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._final = False
        self._start_lock = asyncio.Lock()
        self._semaphore = Limiter(spec.max_concurrency)
        self._callers = Callers()  # agents with a request in flight, for backend requests
        self._retry_after = 0.0
        self._backoff = 0.5
        self._background: set[asyncio.Task[None]] = set()
        self.last_catalog: Catalog | None = None
        self._task_tools: tuple[Catalog | None, dict[str, str]] = (None, {})
        self._opened: Any = None
        self._direct: DirectRoute | None = None
        # 2026-07-28 sessions: list changes and subscribed resources (listener.py).
        self._listener = ListenStream(
            spec.name,
            lambda: self._spawn(self.ctx.on_list_changed(self.spec.name, announced=True)),
            lambda uri: self._spawn(self.ctx.on_resource_updated(self.spec.name, uri)),
            # re-fetched, and announced to agents only if something changed
            lambda: self._spawn(self.ctx.on_list_changed(self.spec.name)),
        )

    # --- lifecycle --------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._client is not None and not session_closed(self._client)

    async def start(self) -> None:
        await self._ensure_client()

    async def stop(self, *, final: bool = False) -> None:
        """Stop the session; ``final`` also refuses later restarts (server removed)."""
        self._final = self._final or final
        self._stop.set()
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._client = None
        self._connected.clear()
        await self._set_health("stopped", None)

    async def _ensure_client(self) -> Client:
        client = self._client
        if client is not None and not session_closed(client):
            return client
        async with self._start_lock:
            client = self._client
            if client is not None and not session_closed(client):
                return client
            if self._final:
                raise BackendNotConnected(f"server {self.spec.name!r} was removed or replaced")
            if self._supervisor is None or self._supervisor.done():
                if monotonic() < self._retry_after and self.health.last_error:
                    raise BackendNotConnected(
                        f"server {self.spec.name!r} is unavailable: {self.health.last_error} "
                        f"(retrying in {self._retry_after - monotonic():.1f}s)"
                    )
                self._stop = asyncio.Event()
                self._failed = None
                self._connected.clear()
                self._supervisor = asyncio.create_task(
                    self._supervise(self._stop), name=f"mcp-backend-{self.spec.name}"
                )
            await self._wait_connected()
            assert self._client is not None
            return self._client

    async def _wait_connected(self) -> None:
        supervisor = self._supervisor
        assert supervisor is not None
        connected = asyncio.ensure_future(self._connected.wait())
        try:
            done, _ = await asyncio.wait(
                {connected, supervisor},
                timeout=self.ctx.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            connected.cancel()
        if self._connected.is_set() and self._client is not None:
            return
        if not done:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervisor
            await self._connect_failed(TimeoutError())
            raise BackendNotConnected(
                f"server {self.spec.name!r} did not start within {self.ctx.connect_timeout:.0f}s"
            )
        reason = describe(self._failed) if self._failed else "it stopped"
        raise BackendNotConnected(f"cannot connect to server {self.spec.name!r}: {reason}")

    async def _open(self, stack: AsyncExitStack, targets: Sequence[Any]) -> Client:
        errors: list[BaseException] = []
        for target in targets:
            client = Client(
                target,
                message_handler=self._on_message,
                client_info=types.Implementation(name="mcp-gateway", version="1"),
                cache=None,
                mode=self._client_mode(),
                sampling_callback=self._callers.sampling,
                elicitation_callback=self._callers.elicitation,
                list_roots_callback=self._callers.roots,
                logging_callback=self._callers.log,
            )
            try:
                opened = await stack.enter_async_context(client)
                self._opened = target
                return opened
            except Exception as exc:  # try the next candidate (e.g. SSE after Streamable HTTP)
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ExceptionGroup(
            "every transport failed", [e for e in errors if isinstance(e, Exception)]
        )

    def _direct_route(self, client: Client) -> DirectRoute | None:
        if not isinstance(self._opened, StreamableHttpTarget) or not client.protocol_version:
            return None
        return DirectRoute.build(
            self.spec.name,
            self._opened,
            client.protocol_version,
            self.spec.secrets,
            self._semaphore,
            self.health,
            self._callers,  # fast calls count as callers of this session
        )

    async def _drop_direct(self) -> None:
        route, self._direct = self._direct, None
        if route is not None:
            await route.channel.close()

    def direct_route(
        self, *, modern: bool = True, affinity: str | None = None
    ) -> DirectRoute | None:
        """The fast path's route to this backend while its session is up (else None).

        One session serves agents of both eras (``modern``: the agent's); the fast path
        decides whether it can bridge them."""
        route = self._direct
        if route is None or self._client is None or session_closed(self._client):
            return None
        self.last_used = monotonic()
        return route

    def _client_mode(self) -> Any:
        if self._mode is not None:
            return self._mode
        chooser = getattr(self.connector, "client_mode", None)
        return chooser(self.spec) if chooser is not None else "auto"

    async def _supervise(self, stop: asyncio.Event) -> None:
        reconnecting = False
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await self._supervise_until(stop, stopped, reconnecting)
        finally:
            stopped.cancel()

    async def _supervise_until(
        self, stop: asyncio.Event, stopped: asyncio.Future[Any], reconnecting: bool
    ) -> None:
        while not stop.is_set():
            established = False
            connecting = ConnectSpan(self.ctx, self.spec, reconnecting)
            try:
                targets = await self.connector.targets(self.spec, self.ctx)
                async with AsyncExitStack() as stack:
                    client = await self._open(stack, targets)
                    self._client = client
                    forward_agent_capabilities(client)
                    propagate_trace(client)
                    tolerate_results(client)
                    self.health.protocol_version = client.protocol_version
                    self._direct = self._direct_route(client)
                    established = True
                    connecting.connected(client.protocol_version)
                    self._backoff = 0.5
                    self._connected.set()
                    await self._set_health("healthy", None)
                    self._spawn(self.ctx.on_list_changed(self.spec.name))  # fresh catalog
                    listener = asyncio.create_task(
                        self._listener.run(client, self.ctx.connect_timeout)
                    )
                    try:
                        # asyncio.wait (unlike wait_for on 3.11) never swallows a cancel.
                        while not stop.is_set() and not session_closed(client):
                            await asyncio.wait({stopped}, timeout=_WATCH_INTERVAL)
                    finally:
                        listener.cancel()
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await listener
                    self._client = None
                    self._connected.clear()
                    await self._drop_direct()
            except asyncio.CancelledError:
                connecting.close()
                self._client = None
                await self._drop_direct()
                raise
            except BaseException as exc:  # any failure is reported, never raised
                self._client = None
                self._connected.clear()
                await self._drop_direct()
                if not established:
                    connecting.failed(exc, self._mask(describe(exc)))
                    self._failed = exc
                    await self._connect_failed(exc)
                    return
                log.warning(
                    "backend session failed",
                    extra={"server": self.spec.name, "error": self._mask(describe(exc))},
                )
            if stop.is_set():
                return
            # The session dropped under us: say so, then reconnect once right away;
            # if that fails, the next call retries after a backoff.
            self.health.restarts += 1
            await self._set_health("unhealthy", "connection lost; reconnecting")
            log.warning("backend connection lost", extra={"server": self.spec.name})
            if reconnecting:
                await asyncio.sleep(min(self._backoff, _MAX_BACKOFF))
                self._backoff *= 2
            reconnecting = True

    async def _connect_failed(self, exc: BaseException) -> None:
        message = self._mask(describe(exc))
        self._retry_after = monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _MAX_BACKOFF)
        await self._set_health("unhealthy", message)
        log.warning("cannot connect backend", extra={"server": self.spec.name, "error": message})

    # --- notifications ------------------------------------------------------------------
    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            return
        root = getattr(message, "root", message)
        if isinstance(
            root,
            types.ToolListChangedNotification
            | types.ResourceListChangedNotification
            | types.PromptListChangedNotification,
        ):
            self._spawn(self.ctx.on_list_changed(self.spec.name, announced=True))
        elif isinstance(root, types.ResourceUpdatedNotification):
            self._spawn(self.ctx.on_resource_updated(self.spec.name, str(root.params.uri)))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- requests -----------------------------------------------------------------------
    def _mask(self, text: str) -> str:
        return mask_text(text, self.spec.secret_values())

    def _masked(self, error: types.ErrorData) -> types.ErrorData:
        """A backend's JSON-RPC error with this server's secrets masked in it."""
        data = mask_structure(error.data, self.spec.secret_values())
        return types.ErrorData(code=error.code, message=self._mask(error.message), data=data)

    async def _set_health(
        self, status: Any, error: str | None, latency: float | None = None
    ) -> None:
        if self.health.mark(status, error, latency):
            with contextlib.suppress(Exception):
                await self.ctx.on_health_changed(self.spec.name, self.health)

    def session_expired(self) -> bool:
        """Did the backend answer 404 to our session (it forgot it)?"""
        return isinstance(self._opened, StreamableHttpTarget) and self._opened.expired

    async def renew_session(self) -> None:
        """Drop the forgotten session; the next request starts a new one (as the spec
        asks of a client that gets 404 for its session)."""
        async with self._start_lock:
            if not self.session_expired():
                return  # another caller renewed it meanwhile
            log.info(
                "backend session expired; starting a new one", extra={"server": self.spec.name}
            )
            self._opened.expired = False
            task, self._supervisor = self._supervisor, None
            self._stop.set()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._client = None
            self._connected.clear()

    async def _request(self, what: str, coro_factory: Any, timeout: float) -> Any:
        try:
            return await self._request_once(what, coro_factory, timeout)
        except BackendRequestError:
            if not self.session_expired():
                raise
        # The request met a forgotten session, so the backend never ran it: run it
        # once more on a new session.
        await self.renew_session()
        return await self._request_once(what, coro_factory, timeout)

    async def _request_once(self, what: str, coro_factory: Any, timeout: float) -> Any:
        self.last_used = monotonic()
        if self.session_expired():
            await self.renew_session()
        async with self._semaphore:
            client = await self._ensure_client()
            self.health.in_flight += 1
            try:
                with self._callers.serving(CURRENT_RELAY.get()):
                    return await self._run(what, client, coro_factory, timeout)
            finally:
                self.health.in_flight -= 1
                self.last_used = monotonic()

    async def _run(self, what: str, client: Client, coro_factory: Any, timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                return await coro_factory(client)
        except TimeoutError:
            raise BackendTimeout(
                f"{what} on server {self.spec.name!r} timed out after {timeout:g}s"
            ) from None
        except MCPError as exc:
            if exc.error.code == CONNECTION_CLOSED and connection_lost(client, exc.error):
                raise BackendUnavailable(
                    f"connection to server {self.spec.name!r} was lost during {what}"
                ) from None
            # The backend's own answer: passed on (code, message, data), secrets masked.
            error = self._masked(exc.error)
            raise BackendRequestError(f"{what} failed: {error.message}", error) from None
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(self._mask(f"{what} failed: {describe(exc)}")) from None

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        relay = CURRENT_RELAY.get()
        if self.last_catalog is None:  # the first call of a new connection: know its tools
            with contextlib.suppress(BackendError):
                await self.catalog()
        if runs_as_task(self._task_support(name), relay):
            return await self.call_tool_as_task(name, arguments, timeout)
        try:
            return await self._call_tool(name, arguments, timeout, relay)
        except BackendRequestError as exc:
            # A 2026-07-28 backend decides per call (SEP-2663): this one wants a task.
            if not (self.offers_tasks and requires_task(exc.error)):
                raise
        return await self.call_tool_as_task(name, arguments, timeout)

    async def call_tool_as_task(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        """Call ``name`` as a task of the backend's, followed to its end
        (backend_tasks.py); the caller sees an ordinary call."""
        relay = CURRENT_RELAY.get()
        result: types.CallToolResult = await self._request(
            f"tool {name!r}",
            lambda client: BackendTaskCall(
                client, self.spec.name, name, arguments, relay, self._spawn
            ).run(),
            timeout,
        )
        return result

    @property
    def offers_tasks(self) -> bool:
        """A 2026-07-28 session whose server offers the tasks extension (SEP-2663)."""
        client = self._client
        if client is None or client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            return False
        return TASKS_EXTENSION in (client.server_capabilities.extensions or {})

    async def _call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float, relay: Relay | None
    ) -> types.CallToolResult:
        # Bound to this caller: the SDK reports progress from its reader task.
        progress = relay.progress if relay is not None and relay.wants_progress else None
        retry = relay.input_round if relay is not None else None

        async def call(client: Client) -> Any:
            if retry is not None and client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                # 2026-07-28: hand an input_required result back to the agent unchanged and
                # forward its answers, rather than answering on its behalf.
                return await client.session.call_tool(
                    name,
                    arguments,
                    read_timeout_seconds=timeout,
                    progress_callback=progress,
                    input_responses=retry.input_responses,
                    request_state=retry.request_state,
                    meta=retry.meta,
                    allow_input_required=True,
                )
            return await client.call_tool(
                name, arguments, read_timeout_seconds=timeout, progress_callback=progress
            )

        result: types.CallToolResult = await self._request(f"tool {name!r}", call, timeout)
        return result

    def _task_support(self, name: str) -> str | None:
        """Whether the backend runs its tool ``name`` as a task (from its last listing,
        marked by :meth:`catalog`; rebuilt once per listing, then one dict lookup)."""
        catalog, client = self.last_catalog, self._client
        if catalog is None or client is None:
            return None
        if client.protocol_version in MODERN_PROTOCOL_VERSIONS and not self.offers_tasks:
            return None  # a tool's own declaration, but no extension to run the task with
        if self._task_tools[0] is not catalog:
            table = {tool.name: task_support(tool)[0] for tool in catalog.tools}
            self._task_tools = (catalog, {k: v for k, v in table.items() if v is not None})
        return self._task_tools[1].get(name)

    async def read_resource(self, uri: str, timeout: float) -> types.ReadResourceResult:
        async def read(client: Client) -> Any:
            retry = agent_input_round(client)
            if retry is not None:
                return await client.session.read_resource(
                    uri,
                    input_responses=retry.input_responses,
                    request_state=retry.request_state,
                    allow_input_required=True,
                )
            return await client.read_resource(uri)

        result: types.ReadResourceResult = await self._request(f"reading {uri!r}", read, timeout)
        return result

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout: float
    ) -> types.GetPromptResult:
        async def get(client: Client) -> Any:
            retry = agent_input_round(client)
            if retry is not None:
                return await client.session.get_prompt(
                    name,
                    arguments,
                    input_responses=retry.input_responses,
                    request_state=retry.request_state,
                    allow_input_required=True,
                )
            return await client.get_prompt(name, arguments)

        result: types.GetPromptResult = await self._request(f"prompt {name!r}", get, timeout)
        return result

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
        timeout: float,
    ) -> types.CompleteResult:
        result: types.CompleteResult = await self._request(
            "completion",
            lambda client: client.complete(ref, argument, context_arguments=context),
            timeout,
        )
        return result

    async def subscribe(self, uri: str, subscribe: bool, timeout: float) -> None:
        async def go(client: Client) -> None:
            if client.protocol_version in MODERN_PROTOCOL_VERSIONS:
                # 2026-07-28 has no resources/subscribe: the listen stream's filter.
                resources = client.server_capabilities.resources
                if subscribe and resources is not None and resources.subscribe is False:
                    raise BackendError(
                        f"server {self.spec.name!r} does not offer resource subscriptions"
                    )
                await self._listener.subscribe(uri, subscribe)  # once in place (listener.py)
                return
            with warnings.catch_warnings():  # deprecated in 2026-07-28, still the 2025 way
                warnings.simplefilter("ignore")
                if subscribe:
                    await client.subscribe_resource(uri)
                else:
                    await client.unsubscribe_resource(uri)

        await self._request("subscription", go, timeout)

    async def ping(self) -> float:
        started = monotonic()
        await self._request("ping", probe, 10.0)
        latency = (monotonic() - started) * 1000
        await self._set_health("degraded" if latency > 1000 else "healthy", None, latency)
        return latency

    async def catalog(self) -> Catalog:
        result: Catalog = await self._request("listing", fetch_catalog, self.ctx.connect_timeout)
        if self.offers_tasks:
            result.tools = [undeclared_as_optional(tool) for tool in result.tools]
        self.last_catalog = result
        return result
