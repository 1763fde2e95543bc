"""``bundle`` runtime: a curated set of servers exposed under one namespace.

Member ``m``'s tool ``t`` appears as ``m_t`` in the bundle (so as
``{bundle}__m_t`` to agents). Member names hold no underscore, so the first
underscore splits a bundle tool name back into member and tool. Members are
inline definitions (run by the bundle) or registered servers (shared with them).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from mcp import types

if TYPE_CHECKING:
    from gateway.servers.runtimes.direct import DirectRoute

from gateway.servers.runtimes.base import (
    BackendUnavailable,
    Catalog,
    Health,
    ServerRuntime,
    ServerSpec,
    ToolNotFound,
    monotonic,
)


class BundleRuntime:
    def __init__(
        self,
        spec: ServerSpec,
        members: dict[str, ServerRuntime],
        owned: set[str],
    ) -> None:
        self.spec = spec
        self.members = members
        self.owned = owned  # members this bundle runs itself (inline ones)
        self.health = Health()
        self.last_used = monotonic()

    @property
    def running(self) -> bool:
        return any(m.running for m in self.members.values())

    async def start(self) -> None:
        results = await asyncio.gather(
            *(m.start() for m in self.members.values()), return_exceptions=True
        )
        failures = [
            f"{name}: {r}" for name, r in zip(self.members, results, strict=True) if r is not None
        ]
        self._update_health(failures)
        if len(failures) == len(self.members):
            raise BackendUnavailable(f"bundle {self.spec.name!r}: " + "; ".join(failures))

    def _update_health(self, failures: list[str]) -> None:
        if not failures:
            self.health.mark("healthy", None)
        elif len(failures) < len(self.members):
            self.health.mark("degraded", "; ".join(failures)[:1000])
        else:
            self.health.mark("unhealthy", "; ".join(failures)[:1000])

    async def stop(self, *, final: bool = False) -> None:
        await asyncio.gather(
            *(self.members[n].stop(final=final) for n in self.owned), return_exceptions=True
        )
        self.health.mark("stopped", None)

    def _split(self, name: str) -> tuple[str, ServerRuntime, str]:
        member, sep, tool = name.partition("_")
        runtime = self.members.get(member)
        if not sep or runtime is None:
            raise ToolNotFound(f"bundle {self.spec.name!r} has no tool {name!r}")
        return member, runtime, tool

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        self.last_used = monotonic()
        _, runtime, tool = self._split(name)
        return await runtime.call_tool(tool, arguments, timeout)

    def _owner_of(self, uri: str) -> ServerRuntime:
        for runtime in self.members.values():
            catalog = getattr(runtime, "last_catalog", None)
            if catalog is None or any(str(r.uri) == uri for r in catalog.resources):
                return runtime
        raise ToolNotFound(f"bundle {self.spec.name!r} has no resource {uri!r}")

    async def read_resource(self, uri: str, timeout: float) -> types.ReadResourceResult:
        return await self._owner_of(uri).read_resource(uri, timeout)

    async def subscribe(self, uri: str, subscribe: bool, timeout: float) -> None:
        await self._owner_of(uri).subscribe(uri, subscribe, timeout)

    def direct_route(
        self, *, modern: bool = True, affinity: str | None = None
    ) -> DirectRoute | None:
        """None: a bundle's calls go through its members' sessions (the SDK path)."""
        return None

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout: float
    ) -> types.GetPromptResult:
        _, runtime, prompt = self._split(name)
        return await runtime.get_prompt(prompt, arguments, timeout)

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
        timeout: float,
    ) -> types.CompleteResult:
        if isinstance(ref, types.PromptReference):
            _, runtime, prompt = self._split(ref.name)
            return await runtime.complete(
                ref.model_copy(update={"name": prompt}), argument, context, timeout
            )
        return await self._owner_of(ref.uri).complete(ref, argument, context, timeout)

    async def ping(self) -> float:
        results = await asyncio.gather(
            *(m.ping() for m in self.members.values()), return_exceptions=True
        )
        failures = [
            f"{name}: {r}"
            for name, r in zip(self.members, results, strict=True)
            if isinstance(r, BaseException)
        ]
        self._update_health(failures)
        latencies = [r for r in results if isinstance(r, float)]
        if not latencies:
            raise BackendUnavailable("; ".join(failures))
        self.health.latency_ms = max(latencies)
        return max(latencies)

    async def catalog(self) -> Catalog:
        combined = Catalog()
        for member, runtime in self.members.items():
            part = await runtime.catalog()
            for tool in part.tools:
                combined.tools.append(tool.model_copy(update={"name": f"{member}_{tool.name}"}))
            for prompt in part.prompts:
                combined.prompts.append(
                    prompt.model_copy(update={"name": f"{member}_{prompt.name}"})
                )
            combined.resources.extend(part.resources)
            combined.resource_templates.extend(part.resource_templates)
        return combined
