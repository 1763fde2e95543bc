"""The session pool: one live runtime per registered server, shared by every caller.

Runtimes start on demand (first call, catalog refresh) and stay up; on-demand
stdio/docker servers are stopped after ``idle_seconds`` without use. A changed
definition (new version) replaces the runtime. A server whose users bring their own
credential gets a :class:`PerUserRuntime`: one session per (server, connection) inside
it (connections/runtime.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from gateway.servers.connections.runtime import ConnectHint, PerUserRuntime
from gateway.servers.connections.schemas import per_user_kind
from gateway.servers.connections.vault import Credential, Vault
from gateway.servers.runtimes import CONNECTORS
from gateway.servers.runtimes.base import RuntimeContext, ServerRuntime, ServerSpec, monotonic
from gateway.servers.runtimes.bundle import BundleRuntime
from gateway.servers.runtimes.connection import McpConnection
from gateway.servers.runtimes.dual import DualEraRuntime
from gateway.servers.runtimes.replica_settings import CONFIG_KEY as REPLICAS
from gateway.servers.runtimes.replica_settings import plan as replica_plan
from gateway.servers.runtimes.replicas import ReplicaSetRuntime

log = logging.getLogger("gateway.servers")

IDLE_STOPPABLE = frozenset({"npx", "uvx", "docker"})


def _both_eras(spec: ServerSpec) -> bool:
    """A remote server whose era is left to negotiation, over Streamable HTTP (an `/sse`
    URL is almost certainly the legacy transport, which has one era: remote.py)."""
    config = spec.config
    return bool(
        config.get("protocol", "auto") == "auto"
        and config.get("transport", "auto") != "sse"
        and not urlsplit(str(config.get("url", ""))).path.rstrip("/").endswith("/sse")
    )


def _default_hint(server: str, kind: str, credential: Credential | None) -> str:
    return (
        f"server {server!r} acts with each user's own credential: connect yours with "
        f"POST /api/v1/connections/{server}"
    )


class SessionPool:
    def __init__(
        self,
        ctx: RuntimeContext,
        idle_seconds: float,
        vault: Vault | None = None,
        hint: ConnectHint | None = None,
    ) -> None:
        self.ctx = ctx
        self.idle_seconds = idle_seconds
        # Users' credentials for servers that take them (filled by the connection service).
        self.vault = vault or Vault()
        self.hint = hint or _default_hint
        self._runtimes: dict[str, ServerRuntime] = {}
        self.generation = 0  # bumped whenever the set of runtimes changes (for caches)

    def get(self, name: str) -> ServerRuntime | None:
        return self._runtimes.get(name)

    def specs(self) -> dict[str, ServerSpec]:
        return {name: runtime.spec for name, runtime in self._runtimes.items()}

    def runtimes(self) -> dict[str, ServerRuntime]:
        return dict(self._runtimes)

    def _build(self, spec: ServerSpec) -> ServerRuntime:
        if spec.type == "remote" and per_user_kind(spec.config):
            return PerUserRuntime(spec, self._build_plain, self.vault, self.hint)
        return self._build_plain(spec)

    def _build_plain(self, spec: ServerSpec) -> ServerRuntime:
        """The runtime of ``spec``'s type (a per-user server's users' sessions too): a
        replica set when it has replicas (runtimes/replicas.py)."""
        replicas = replica_plan(spec.type, spec.config) if REPLICAS in spec.config else None
        if replicas is not None:
            return ReplicaSetRuntime(spec, replicas, self._build_one, self.ctx)
        return self._build_one(spec, self.ctx)

    def _build_one(self, spec: ServerSpec, ctx: RuntimeContext) -> ServerRuntime:
        """One backend of ``spec``'s type, reporting to ``ctx``."""
        if spec.type == "generated" and spec.config.get("protocol") == "dual":
            connector = CONNECTORS["generated"]
            return DualEraRuntime(
                spec,
                McpConnection(spec, connector, ctx, mode="legacy"),
                McpConnection(spec, connector, ctx, mode="auto"),
            )
        if spec.type == "remote" and _both_eras(spec):
            return DualEraRuntime.for_remote(spec, CONNECTORS["remote"], ctx)
        if spec.type != "bundle":
            return McpConnection(spec, CONNECTORS[spec.type], ctx)
        members: dict[str, ServerRuntime] = {}
        owned: set[str] = set()
        for member in spec.config.get("members", []):
            if member.get("server"):
                shared = self._runtimes.get(member["server"])
                if shared is not None:
                    members[member["name"]] = shared
                continue
            member_spec = ServerSpec(
                id=f"{spec.id}:{member['name']}",
                name=f"{spec.name}.{member['name']}",
                type=member["type"],
                config=member.get("config") or {},
                env=spec.env,
                secret_env=spec.secret_env,
                secret_headers=spec.secret_headers,
                version=spec.version,
                max_concurrency=spec.max_concurrency,
            )
            members[member["name"]] = McpConnection(member_spec, CONNECTORS[member_spec.type], ctx)
            owned.add(member["name"])
        return BundleRuntime(spec, members, owned)

    async def sync(self, specs: list[ServerSpec]) -> list[str]:
        """Make the pool match ``specs`` (enabled servers); returns names (re)built."""
        wanted = {s.name: s for s in specs if s.enabled}
        for name in [n for n in self._runtimes if n not in wanted]:
            await self.remove(name)
        rebuilt = []
        # Plain servers first: bundles may reference them.
        for spec in sorted(wanted.values(), key=lambda s: s.type == "bundle"):
            current = self._runtimes.get(spec.name)
            if current is not None and current.spec == spec:
                continue
            if current is not None:
                await self._stop_quietly(current)
            self._runtimes[spec.name] = self._build(spec)
            self.generation += 1
            rebuilt.append(spec.name)
        return rebuilt

    async def remove(self, name: str) -> None:
        runtime = self._runtimes.pop(name, None)
        if runtime is not None:
            self.generation += 1
            await self._stop_quietly(runtime)

    async def _stop_quietly(self, runtime: ServerRuntime, *, final: bool = True) -> None:
        with contextlib.suppress(Exception):
            await runtime.stop(final=final)

    async def reap_idle(self) -> list[str]:
        """Stop on-demand servers unused for ``idle_seconds``; returns their names."""
        if self.idle_seconds <= 0:
            return []
        cutoff = monotonic() - self.idle_seconds
        stopped = []
        for name, runtime in list(self._runtimes.items()):
            if isinstance(runtime, PerUserRuntime):
                if await runtime.reap(cutoff):
                    stopped.append(name)
                continue
            if (
                runtime.spec.type in IDLE_STOPPABLE
                and runtime.running
                and runtime.last_used < cutoff
                and runtime.health.in_flight == 0
            ):
                await self._stop_quietly(runtime, final=False)
                stopped.append(name)
                log.info("stopped idle server", extra={"server": name})
        return stopped

    async def close(self) -> None:
        await asyncio.gather(
            *(self._stop_quietly(r) for r in self._runtimes.values()), return_exceptions=True
        )
        self._runtimes.clear()
        self.generation += 1
