"""One server reached on both protocol eras: each agent request goes on the session
of the agent's own era where the backend keeps both.

The eras differ in more than framing. 2025-11-25 sessions have a back-channel (the
server's sampling, elicitation, roots and log requests reach the agent's session;
resource subscriptions push updates), while 2026-07-28 has none but offers
`input_required` results and `subscriptions/listen`. Bridging one era onto the other
loses or reshapes some of that, so the gateway prefers not to bridge:

- ``generated`` servers with config ``protocol: "dual"`` always keep both sessions.
- ``remote`` Streamable HTTP servers left at ``protocol: "auto"`` that answered
  `server/discover` are spoken to in 2026-07-28; the first 2025-11-25 agent request
  opens a second, handshake session (every SDK that speaks 2026-07-28 keeps the
  handshake too). Should the backend refuse it, 2025 agents are bridged over the
  2026 session (retried after :data:`LEGACY_RETRY_SECONDS`).

The 2026 session is the primary one: catalog, health and list-change events come
from it. The auxiliary session reports no health (one server, one status), but the
list changes the backend announces on it are passed on: a backend announces a change
a 2025-11-25 agent's call made on that session only. Resource updates of
subscriptions made on it are passed on too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.servers.runtimes.backend_tasks import requires_task
from gateway.servers.runtimes.base import (
    BackendRequestError,
    BackendUnavailable,
    Catalog,
    Connector,
    Health,
    RuntimeContext,
    ServerSpec,
    monotonic,
)
from gateway.servers.runtimes.connection import McpConnection
from gateway.servers.runtimes.direct import DirectRoute
from gateway.servers.runtimes.relay import CURRENT_RELAY

log = logging.getLogger("gateway.servers")

LEGACY_RETRY_SECONDS = 600.0


async def _ignored(*_args: Any, **_kwargs: Any) -> None:
    return None


def _announced_only(
    on_list_changed: Callable[..., Awaitable[None]],
) -> Callable[..., Awaitable[None]]:
    """The auxiliary session's list-change callback: what the backend announced on it
    (not the catalog refresh every session asks for on connecting)."""

    async def relay(name: str, announced: bool = False) -> None:
        if announced:
            await on_list_changed(name, announced=True)

    return relay


class DualEraRuntime:
    """Two sessions to one backend, one per era; see the module docstring."""

    def __init__(
        self,
        spec: ServerSpec,
        legacy: McpConnection,
        modern: McpConnection,
        *,
        optional_legacy: bool = False,
    ) -> None:
        self.spec = spec
        self.legacy = legacy
        self.modern = modern
        self.health = modern.health
        self.last_used = monotonic()
        # optional_legacy: the backend may not keep the handshake; bridge when it does not.
        self._optional = optional_legacy
        self._legacy_down_until = 0.0
        self._opening: asyncio.Task[Any] | None = None

    @classmethod
    def for_remote(
        cls, spec: ServerSpec, connector: Connector, ctx: RuntimeContext
    ) -> DualEraRuntime:
        """A `protocol: auto` Streamable HTTP server: 2026 first, the handshake on demand."""
        quiet = dataclasses.replace(
            ctx,
            on_health_changed=_ignored,
            on_list_changed=_announced_only(ctx.on_list_changed),
        )
        return cls(
            spec,
            McpConnection(spec, connector, quiet, mode="legacy"),
            McpConnection(spec, connector, ctx),
            optional_legacy=True,
        )

    # --- which session ------------------------------------------------------------------
    def _speaks_modern(self) -> bool:
        """Did the primary session negotiate 2026-07-28 (else it is itself a handshake one)?"""
        return self.modern.health.protocol_version in MODERN_PROTOCOL_VERSIONS

    def _legacy_usable(self) -> bool:
        return not self._optional or (
            self._speaks_modern() and monotonic() >= self._legacy_down_until
        )

    async def _pick(self) -> McpConnection:
        relay = CURRENT_RELAY.get()
        if relay is None or relay.modern:
            return self.modern
        if not self._optional:
            return self.legacy
        await self.modern.start()  # its era decides whether a second session is needed
        if not self._legacy_usable():
            return self.modern
        try:
            await self.legacy.start()
        except BackendUnavailable as exc:
            self._legacy_unavailable(exc)
            return self.modern
        return self.legacy

    def _legacy_unavailable(self, exc: BaseException) -> None:
        self._legacy_down_until = monotonic() + LEGACY_RETRY_SECONDS
        log.info(
            "backend refused a 2025-11-25 session; bridging those agents over 2026-07-28",
            extra={"server": self.spec.name, "error": str(exc)},
        )

    def direct_route(
        self, *, modern: bool = True, affinity: str | None = None
    ) -> DirectRoute | None:
        """The fast path's route for an agent of this era: the handshake session's for a
        2025 agent once it is open (it is opened in the background on first demand)."""
        if modern or not self._optional:
            return (self.modern if modern else self.legacy).direct_route()
        if not self._speaks_modern():
            return self.modern.direct_route()  # a handshake-only backend: one session
        route = self.legacy.direct_route()
        if route is None and self._legacy_usable() and self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._open_legacy())
        return route if route is not None else self.modern.direct_route()

    async def _open_legacy(self) -> None:
        try:
            await self.legacy.start()
        except Exception as exc:  # BackendUnavailable or worse: never raised from a task
            self._legacy_unavailable(exc)
        finally:
            self._opening = None

    # --- ServerRuntime ------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.legacy.running or self.modern.running

    async def start(self) -> None:
        await self.modern.start()

    async def stop(self, *, final: bool = False) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await opening
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
        session = await self._pick()
        relay = CURRENT_RELAY.get()
        tasks = self.modern.offers_tasks
        if session is not self.modern and tasks and relay is not None and relay.long_running:
            session = self.modern  # a job's call: the backend's tasks are a 2026 feature
        try:
            return await session.call_tool(name, arguments, timeout)
        except BackendRequestError as exc:
            # The handshake session cannot make the task this tool requires: the 2026
            # session can (backend_tasks.py), whichever era the agent speaks.
            if session is self.modern or not (tasks and requires_task(exc.error)):
                raise
        return await self.modern.call_tool_as_task(name, arguments, timeout)

    async def read_resource(self, uri: str, timeout: float) -> types.ReadResourceResult:
        return await (await self._pick()).read_resource(uri, timeout)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout: float
    ) -> types.GetPromptResult:
        return await (await self._pick()).get_prompt(name, arguments, timeout)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
        timeout: float,
    ) -> types.CompleteResult:
        return await (await self._pick()).complete(ref, argument, context, timeout)

    async def subscribe(self, uri: str, subscribe: bool, timeout: float) -> None:
        """One subscription for agents of both eras (they all hear of updates from either
        session): on the primary session of a remote server (its listen filter when it
        speaks 2026-07-28), on the handshake session of an in-process dual one."""
        session = self.modern if self._optional else self.legacy
        await session.subscribe(uri, subscribe, timeout)


__all__ = ["DualEraRuntime", "Health"]
