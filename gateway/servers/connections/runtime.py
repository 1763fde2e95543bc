"""The pool's runtime for a server whose users bring their own credential.

It holds one backend session per connection — keyed by (server, the caller's
credential), never shared between users — each a runtime of the server's usual kind
built with that user's headers, started on first use and kept (hot-path rules: no new
MCP session per call). :meth:`PerUserRuntime.for_caller` is what the call resolution
(``ServerService.visible_runtime``) hands every entry point, so REST, the SDK path,
the fast path and EXECUTE_TOOL all reach the caller's own session; a caller with no
usable connection gets :class:`NotConnected`, whose calls answer a tool error saying
how to connect.

A refreshed token gets a new session (its headers are baked into the session's HTTP
client and the fast path's channel): the old one is stopped once its calls are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mcp import types

from gateway.auth.principal import Principal
from gateway.mcp.results import tool_error
from gateway.servers.connections.vault import Credential, Vault
from gateway.servers.runtimes.base import (
    BackendUnavailable,
    Catalog,
    Health,
    ServerRuntime,
    ServerSpec,
    monotonic,
)

if TYPE_CHECKING:
    from gateway.servers.runtimes.direct import DirectRoute

log = logging.getLogger("gateway.connections")

# (server, kind, the caller's credential or None) → what to tell a caller who cannot call.
ConnectHint = Callable[[str, str, Credential | None], str]
_RETIRE_WAIT = 120.0


class NotConnected:
    """A :class:`ServerRuntime` for a caller without a usable connection: tool calls
    answer a tool error saying how to connect; other requests fail with that text."""

    def __init__(self, spec: ServerSpec, message: str) -> None:
        self.spec = spec
        self.message = message
        self.health = Health(status="stopped", last_error=message)
        self.last_used = monotonic()

    @property
    def running(self) -> bool:
        return False

    async def start(self) -> None:
        raise BackendUnavailable(self.message)

    async def stop(self, *, final: bool = False) -> None:
        return None

    async def catalog(self) -> Catalog:
        raise BackendUnavailable(self.message)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        return tool_error(self.message)

    async def ping(self) -> float:
        raise BackendUnavailable(self.message)

    async def read_resource(self, uri: str, timeout: float) -> types.ReadResourceResult:
        raise BackendUnavailable(self.message)

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout: float
    ) -> types.GetPromptResult:
        raise BackendUnavailable(self.message)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
        timeout: float,
    ) -> types.CompleteResult:
        raise BackendUnavailable(self.message)

    async def subscribe(self, uri: str, subscribe: bool, timeout: float) -> None:
        raise BackendUnavailable(self.message)

    def direct_route(
        self, *, modern: bool = True, affinity: str | None = None
    ) -> DirectRoute | None:
        return None  # the SDK path answers the tool error


class PerUserRuntime(NotConnected):
    """The server's runtime in the pool: its users' sessions, and the server's own view
    (catalog, health) read through any connected user's session."""

    def __init__(
        self,
        spec: ServerSpec,
        build: Callable[[ServerSpec], ServerRuntime],
        vault: Vault,
        hint: ConnectHint,
    ) -> None:
        self.kind = str((spec.config.get("credentials") or {}).get("kind", "oauth"))
        # Called without a caller (a bundle member): no user's credential applies, so it
        # answers as NotConnected does.
        super().__init__(spec, hint(spec.name, self.kind, None))
        self.health = Health()
        self.last_used = monotonic()
        self._build = build
        self._vault = vault
        self._hint = hint
        # connection id → (the credential it was built with, that user's session)
        self._sessions: dict[str, tuple[Credential, ServerRuntime]] = {}
        self._refusals: dict[str | None, NotConnected] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self._stopped = False

    # --- the caller's session -------------------------------------------------------------
    def for_caller(self, principal: Principal) -> ServerRuntime:
        """The runtime that serves ``principal``'s calls: their own session, or a
        :class:`NotConnected` that says how to connect (memory only: dict lookups)."""
        credential = self._vault.get(self.spec.name, principal.user_id)
        if credential is None or credential.status == "broken":
            return self._refusal(credential)
        return self._session(credential)

    def _refusal(self, credential: Credential | None) -> NotConnected:
        key = None if credential is None else f"{credential.connection_id}:{credential.version}"
        found = self._refusals.get(key)
        if found is None:
            if len(self._refusals) > 1024:
                self._refusals.clear()
            found = NotConnected(self.spec, self._hint(self.spec.name, self.kind, credential))
            self._refusals[key] = found
        return found

    def _session(self, credential: Credential) -> ServerRuntime:
        held = self._sessions.get(credential.connection_id)
        if held is not None:
            if held[0] is credential:  # the common case: an identity check
                return held[1]
            if held[0].headers == credential.headers:  # re-read, same token
                self._sessions[credential.connection_id] = (credential, held[1])
                return held[1]
        runtime = self._build(self._spec_for(credential))
        self._sessions[credential.connection_id] = (credential, runtime)
        if held is not None:
            self._retire(held[1])
        return runtime

    def _spec_for(self, credential: Credential) -> ServerSpec:
        # A remote server has no environment: the bare token is listed there only so the
        # session's mask covers it wherever a backend echoes it.
        bare = {f"CONNECTION_SECRET_{i}": v for i, v in enumerate(credential.secrets)}
        return replace(
            self.spec,
            id=f"{self.spec.id}:{credential.connection_id}",
            # "server.member" names make the pool's callbacks refresh the server itself
            # and keep this session's health off the server's row.
            name=f"{self.spec.name}.~{credential.connection_id[:8]}",
            secret_env={**self.spec.secret_env, **bare},
            secret_headers={**self.spec.secret_headers, **credential.headers},
        )

    def _retire(self, runtime: ServerRuntime) -> None:
        """Stop a replaced session once its calls are done (bounded)."""

        async def retire() -> None:
            deadline = monotonic() + _RETIRE_WAIT
            # Polled: calls in flight are counted, not signalled.
            while runtime.health.in_flight > 0 and monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            with contextlib.suppress(Exception):
                await runtime.stop(final=True)

        task = asyncio.get_running_loop().create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def forget(self, connection_id: str) -> None:
        """Close a deleted or broken connection's session."""
        held = self._sessions.pop(connection_id, None)
        if held is not None:
            self._retire(held[1])

    async def reap(self, cutoff: float) -> int:
        """Stop users' sessions unused since ``cutoff`` (they restart on the next call)."""
        idle = [
            cid
            for cid, (_, runtime) in self._sessions.items()
            if runtime.last_used < cutoff and runtime.health.in_flight == 0
        ]
        for cid in idle:
            _, runtime = self._sessions.pop(cid)
            with contextlib.suppress(Exception):
                await runtime.stop(final=True)
        return len(idle)

    # --- the server's own view: through any connected user's session ----------------------
    def _any(self) -> ServerRuntime:
        for _, runtime in self._sessions.values():
            if runtime.running:
                return runtime
        credential = self._vault.any_for(self.spec.name)
        if credential is None:
            raise BackendUnavailable(
                f"no user has connected server {self.spec.name!r} yet: its tools are "
                "listed once someone connects"
            )
        return self._session(credential)

    @property
    def running(self) -> bool:
        return any(runtime.running for _, runtime in self._sessions.values())

    async def start(self) -> None:
        if self._stopped:
            raise BackendUnavailable(f"server {self.spec.name!r} was removed")
        try:
            await self._any().start()
        except BackendUnavailable as exc:
            self.health.mark("unhealthy", str(exc))
            raise
        self.health.mark("healthy")

    async def stop(self, *, final: bool = False) -> None:
        self._stopped = self._stopped or final
        sessions = [runtime for _, runtime in self._sessions.values()]
        self._sessions.clear()
        await asyncio.gather(*(r.stop(final=True) for r in sessions), return_exceptions=True)
        self.health.mark("stopped")

    async def catalog(self) -> Catalog:
        runtime = self._any()
        await runtime.start()
        return await runtime.catalog()

    async def ping(self) -> float:
        return await self._any().ping()
