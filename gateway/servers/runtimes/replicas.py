"""Several replicas of one server behind one name: each request goes to one of them.

A remote server may list more endpoints, and an npx/uvx/docker server may run several
processes (`config.replicas`: replica_settings.py). Each replica is a runtime of the
server's own kind; this one picks among them per request:

- ``round_robin`` takes them in turn, ``weighted`` in proportion to their weights
  (smooth weighted round-robin: over any run of calls each replica's share is within
  one call of its weight's), ``least_in_flight`` the one with the fewest calls in
  flight (ties in turn), ``failover`` the first that is up (the order given: primary,
  then secondaries).
- A replica whose connection fails is *ejected* for ``eject_seconds``; a health probe
  that gets an answer readmits it sooner. When every replica is out the server is
  unavailable (the breaker and the catalog's last known tools take it from there).
- A request that could not be sent (the replica cannot be connected) goes to the next
  replica at once: the backend never saw it, whatever the tool. One that was sent and
  lost is the retry stage's to repeat, and only when that is safe (resilience/retry.py);
  the repeat goes to another replica, since the one that failed is out.
- Session affinity: the calls of one 2025-11-25 agent session stay on one replica (a
  backend may keep state per session, and its questions come back on its session);
  should that replica fail, the session moves to another. 2026-07-28 agents are
  stateless: each call is balanced.

Catalog and list-change events come from any replica (they serve the same server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from mcp import types

from gateway.servers.resilience.retry import http_failure
from gateway.servers.runtimes.base import (
    BackendError,
    BackendNotConnected,
    BackendRequestError,
    BackendTimeout,
    BackendUnavailable,
    Catalog,
    Health,
    ReplicaFailed,
    RuntimeContext,
    ServerRuntime,
    ServerSpec,
    monotonic,
)
from gateway.servers.runtimes.relay import CURRENT_RELAY
from gateway.servers.runtimes.replica_settings import ReplicaPlan

if TYPE_CHECKING:
    from gateway.servers.runtimes.direct import DirectRoute

log = logging.getLogger("gateway.servers")

T = TypeVar("T")
_MAX_PINNED = 10_000


@dataclass(eq=False)
class Replica:
    """One replica and what the balancer knows of it."""

    index: int
    label: str  # its URL, or "process N"
    runtime: ServerRuntime
    weight: int = 1
    ejected_until: float = 0.0
    failures: int = 0  # connection failures since it last answered
    calls: int = 0  # requests sent to it (both paths)
    current: int = field(default=0, repr=False)  # smooth weighted round-robin state

    def admitted(self, now: float) -> bool:
        return self.ejected_until <= now

    def describe(self, now: float) -> dict[str, Any]:
        """The replica as the server's health shows it (REST, portal)."""
        out = self.ejected_until > now
        return {
            "replica": self.index,
            "endpoint": self.label,
            "weight": self.weight,
            "status": "ejected" if out else self.runtime.health.status,
            "in_flight": self.runtime.health.in_flight,
            "calls": self.calls,
            "failures": self.failures,
            "ejected_for_seconds": round(self.ejected_until - now, 3) if out else None,
            "last_error": self.runtime.health.last_error,
        }


class _SetHealth(Health):
    """The set's health: its own status, the replicas' calls in flight summed."""

    def __init__(self, replicas: Sequence[Replica]) -> None:
        super().__init__()
        self._replicas = replicas

    @property
    def in_flight(self) -> int:
        return sum(r.runtime.health.in_flight for r in getattr(self, "_replicas", ()))

    @in_flight.setter
    def in_flight(self, value: int) -> None:
        return None  # each replica counts its own

    def replicas(self) -> list[dict[str, Any]] | None:
        now = monotonic()
        return [r.describe(now) for r in self._replicas]


class ReplicaSetRuntime:
    """A :class:`ServerRuntime` over several replicas of one server (module docstring)."""

    def __init__(
        self,
        spec: ServerSpec,
        plan: ReplicaPlan,
        build: Callable[[ServerSpec, RuntimeContext], ServerRuntime],
        ctx: RuntimeContext,
    ) -> None:
        self.spec = spec
        self.strategy = plan.strategy
        self.eject_seconds = plan.eject_seconds
        # The replicas report their health here; the set's own is what is persisted.
        self._persist = ctx.on_health_changed
        own = replace(ctx, on_health_changed=self._replica_health)
        self.replicas = [
            Replica(i, label, build(_replica_spec(spec, i, config), own), weight)
            for i, (config, weight, label) in enumerate(
                zip(plan.configs, plan.weights, plan.labels, strict=True)
            )
        ]
        self.health: Health = _SetHealth(self.replicas)
        self.last_used = monotonic()
        self._turn = 0
        self._out = False  # a replica was ejected lately: check who is in before choosing
        self._pinned: dict[str, Replica] = {}

    # --- choosing ------------------------------------------------------------------------
    def pick(self, affinity: str | None = None) -> Replica:
        """The replica for the next request (see the module docstring); raises
        BackendUnavailable when every replica is out. While none is out (the usual
        case) no clock is read and no list is built."""
        up = self._up() if self._out else self.replicas
        if affinity is not None:
            held = self._pinned.get(affinity)
            if held is not None and held in up:
                held.calls += 1
                return held
        chosen = self._choose(up)
        chosen.calls += 1
        if affinity is not None:
            if len(self._pinned) >= _MAX_PINNED:
                self._pinned.clear()
            self._pinned[affinity] = chosen
        return chosen

    def _up(self) -> list[Replica]:
        """The replicas taking requests, when some were ejected lately."""
        now = monotonic()
        up = [r for r in self.replicas if r.admitted(now)]
        if not up:
            raise BackendUnavailable(self._all_out(now))
        if len(up) == len(self.replicas):
            self._out = False  # all back in: the plain path again
        return up

    def _choose(self, up: list[Replica]) -> Replica:
        if len(up) == 1 or self.strategy == "failover":
            return up[0]
        if self.strategy == "weighted":
            total = 0
            best = up[0]
            for replica in up:
                replica.current += replica.weight
                total += replica.weight
                if replica.current > best.current:
                    best = replica
            best.current -= total
            return best
        turn = self._turn
        self._turn += 1
        if self.strategy == "least_in_flight":
            fewest = min(r.runtime.health.in_flight for r in up)
            up = [r for r in up if r.runtime.health.in_flight == fewest]
        return up[turn % len(up)]

    def _all_out(self, now: float) -> str:
        back = min(r.ejected_until for r in self.replicas) - now
        return (
            f"server {self.spec.name!r} is unavailable: all {len(self.replicas)} replicas "
            f"failed (the first is retried in {max(back, 0):.1f}s)"
        )

    # --- what happened -------------------------------------------------------------------
    def failed(self, replica: Replica, error: BaseException | str) -> None:
        """A connection to ``replica`` failed: it is ejected for ``eject_seconds``."""
        replica.failures += 1
        was_in = replica.admitted(monotonic())
        replica.ejected_until = monotonic() + self.eject_seconds
        self._out = True
        for key in [k for k, r in self._pinned.items() if r is replica]:
            del self._pinned[key]  # its sessions move on their next call
        self._update_health()
        if was_in:
            log.warning(
                "replica ejected",
                extra={"server": self.spec.name, "replica": replica.index,
                       "endpoint": replica.label, "error": str(error)[:500]},
            )  # fmt: skip

    def answered(self, replica: Replica) -> None:
        """``replica`` answered a probe: it is (back) in."""
        if replica.failures or replica.ejected_until:
            if not replica.admitted(monotonic()):
                log.info(
                    "replica readmitted",
                    extra={"server": self.spec.name, "replica": replica.index},
                )
            replica.failures, replica.ejected_until = 0, 0.0
            self._update_health()

    def route_failed(self, route: DirectRoute) -> None:
        """The fast path's report: a direct POST on ``route`` failed to get an answer."""
        for replica in self.replicas:
            if replica.runtime.health is route.health:
                self.failed(replica, "the connection failed")
                return

    async def _replica_health(self, _name: str, health: Health) -> None:
        """A replica's health changed: a lost connection ejects it; the set's health is
        recomputed and persisted when it changed."""
        for replica in self.replicas:
            if replica.runtime.health is health and health.status == "unhealthy":
                self.failed(replica, health.last_error or "unhealthy")
        await self._health_changed()

    async def _health_changed(self) -> None:
        if self._update_health():
            with contextlib.suppress(Exception):
                await self._persist(self.spec.name, self.health)

    def _update_health(self) -> bool:
        """Recompute the set's status from its replicas'; True when it changed."""
        now = monotonic()
        down = [
            r
            for r in self.replicas
            if not r.admitted(now) or r.runtime.health.status == "unhealthy"
        ]
        errors = "; ".join(
            f"replica {r.index} ({r.label}): {r.runtime.health.last_error or 'ejected'}"
            for r in down
        )[:1000]
        if not down:
            healthy = any(r.runtime.health.status == "healthy" for r in self.replicas)
            return self.health.mark("healthy" if healthy else "stopped", None)
        if len(down) < len(self.replicas):
            return self.health.mark("degraded", errors)
        return self.health.mark("unhealthy", errors)

    def describe(self) -> list[dict[str, Any]]:
        """Each replica's state, for the server's health."""
        now = monotonic()
        return [r.describe(now) for r in self.replicas]

    # --- requests ------------------------------------------------------------------------
    async def _on_one(self, what: Callable[[ServerRuntime], Awaitable[T]]) -> T:
        """``what`` on the chosen replica; an unsent request goes on to the next one."""
        self.last_used = monotonic()
        relay = CURRENT_RELAY.get()
        affinity = getattr(relay, "affinity", None) if relay is not None else None
        replica = self.pick(affinity)
        while True:
            try:
                return await what(replica.runtime)
            except BackendNotConnected as exc:
                self.failed(replica, exc)
                replica = self.pick(affinity)  # raises once none is left
            except BackendTimeout:
                raise  # slow, not down: the breaker's to judge
            except BackendRequestError as exc:
                if not http_failure(exc):
                    raise  # an answer
                self._lost(replica, exc)
            except BackendError as exc:
                self._lost(replica, exc)

    def _lost(self, replica: Replica, exc: BackendError) -> NoReturn:
        """A request sent to ``replica`` got no answer: it goes out, and the request
        fails (the retry stage repeats it, on another replica, where that is safe) as
        :class:`ReplicaFailed` while others are up: no verdict on the server."""
        self.failed(replica, exc)
        if self.any_up():
            raise ReplicaFailed(str(exc)) from None
        raise exc

    def any_up(self) -> bool:
        """Whether a replica is admitted (a failure then is one replica's, not the server's)."""
        now = monotonic()
        return any(r.admitted(now) for r in self.replicas)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], timeout: float
    ) -> types.CallToolResult:
        return await self._on_one(lambda r: r.call_tool(name, arguments, timeout))

    async def read_resource(self, uri: str, timeout: float) -> types.ReadResourceResult:
        return await self._on_one(lambda r: r.read_resource(uri, timeout))

    async def get_prompt(
        self, name: str, arguments: dict[str, str] | None, timeout: float
    ) -> types.GetPromptResult:
        return await self._on_one(lambda r: r.get_prompt(name, arguments, timeout))

    async def complete(
        self,
        ref: types.PromptReference | types.ResourceTemplateReference,
        argument: dict[str, str],
        context: dict[str, str] | None,
        timeout: float,
    ) -> types.CompleteResult:
        return await self._on_one(lambda r: r.complete(ref, argument, context, timeout))

    async def subscribe(self, uri: str, subscribe: bool, timeout: float) -> None:
        """On every replica that is up: an update may come from any of them."""
        now = monotonic()
        up = [r for r in self.replicas if r.admitted(now)]
        results = await asyncio.gather(
            *(r.runtime.subscribe(uri, subscribe, timeout) for r in up), return_exceptions=True
        )
        if up and all(isinstance(x, BaseException) for x in results):
            first = results[0]
            assert isinstance(first, BaseException)
            raise first

    def direct_route(
        self, *, modern: bool = True, affinity: str | None = None
    ) -> DirectRoute | None:
        """The fast path's route: the chosen replica's (None while it has none: the SDK
        path then serves the call, through :meth:`call_tool`)."""
        try:
            replica = self.pick(affinity)
        except BackendUnavailable:
            return None
        self.last_used = monotonic()
        return replica.runtime.direct_route(modern=modern, affinity=affinity)

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return any(r.runtime.running for r in self.replicas)

    async def start(self) -> None:
        """Start every replica; those that fail are ejected (raises if none started)."""
        results = await asyncio.gather(
            *(r.runtime.start() for r in self.replicas), return_exceptions=True
        )
        for replica, result in zip(self.replicas, results, strict=True):
            if isinstance(result, BaseException):
                self.failed(replica, result)
            else:
                self.answered(replica)
        await self._health_changed()
        if all(isinstance(x, BaseException) for x in results):
            raise BackendUnavailable(self._all_out(monotonic()))

    async def stop(self, *, final: bool = False) -> None:
        await asyncio.gather(
            *(r.runtime.stop(final=final) for r in self.replicas), return_exceptions=True
        )
        self.health.mark("stopped", None)

    async def catalog(self) -> Catalog:
        """Any replica's (they serve one server); the replicas are started first, so the
        fast path has every replica's route from the start."""
        if not all(r.runtime.running for r in self.replicas):
            await self.start()
        return await self._on_one(lambda r: r.catalog())

    async def ping(self) -> float:
        """Probe every replica (the ejected ones too: an answer readmits them); the
        fastest answer's milliseconds, or BackendUnavailable when none answered."""
        results = await asyncio.gather(
            *(r.runtime.ping() for r in self.replicas), return_exceptions=True
        )
        answered: list[float] = []
        for replica, result in zip(self.replicas, results, strict=True):
            if isinstance(result, BaseException):
                self.failed(replica, result)
            else:
                self.answered(replica)
                answered.append(result)
        await self._health_changed()
        if not answered:
            raise BackendUnavailable(self._all_out(monotonic()))
        self.health.latency_ms = min(answered)
        return min(answered)


def _replica_spec(spec: ServerSpec, index: int, config: dict[str, Any]) -> ServerSpec:
    """Replica ``index``'s spec: the server's own, with that replica's config (its name
    stays the server's: errors, logs and events name the server)."""
    return replace(spec, id=f"{spec.id}.r{index}", config=config)
