"""The pipeline's ``breaker`` stage: circuit breakers per server and per (server, tool)
(breaker.py), and each call's retry plan for the backend stage (retry.py).

``enter`` is a plain function (no coroutine; pipeline.py calls it without awaiting):
while both breakers are closed it is two dictionary lookups and two comparisons. It
puts the tool's :class:`ToolState` on the call (``Call.resilience``), which the backend
stages read for the retry plan. An open breaker answers in the backend's place: a tool
error saying the backend is unavailable and when it is tried again, audited with
outcome ``unavailable``. ``leave`` counts the call's verdict (``Call.fault``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from gateway.backend_errors import BackendRequestError
from gateway.mcp.results import tool_error
from gateway.servers.availability import (
    BREAKER,
    UNAVAILABLE_META,
    Availability,
    Unavailable,
    wall_clock,
)
from gateway.servers.resilience.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from gateway.servers.resilience.settings import (
    BreakerPolicy,
    Defaults,
    RetryPolicy,
    ServerPolicy,
    retry_safe,
)

if TYPE_CHECKING:
    from gateway.servers.pipeline import Call, Stage
    from gateway.servers.runtimes.base import ServerRuntime, ServerSpec
    from gateway.servers.service import ServerService

log = logging.getLogger("gateway.servers")

_MAX_TOOLS = 4096  # tool states kept per server (names agents made up are not bounded)


class CatalogSource(Protocol):
    """What the stage reads of the catalog: its version and a tool's annotations
    (the server service)."""

    catalog_version: int

    def tool_annotations(self, server: str, tool: str) -> dict[str, Any] | None: ...


class ServerState:
    """A server's breaker, its tools' states and its counts."""

    __slots__ = (
        "breaker",
        "id",
        "name",
        "policy",
        "rejected",
        "retries",
        "seen",
        "tools",
        "version",
    )

    def __init__(self, spec: ServerSpec, policy: ServerPolicy) -> None:
        self.name, self.id, self.version = spec.name, spec.id, spec.version
        self.policy = policy
        self.breaker = Breaker(policy.breaker)
        self.tools: dict[str, ToolState] = {}
        self.seen = -1  # the catalog version its tools' retry plans were made from
        self.retries = 0  # attempts repeated
        self.rejected = 0  # calls answered `unavailable`


class ToolState:
    """One tool's breaker and retry plan (None: calls of it are never repeated)."""

    __slots__ = ("breaker", "name", "retry", "server")

    def __init__(self, server: ServerState, name: str, breaker: BreakerPolicy) -> None:
        self.server, self.name = server, name
        self.breaker = Breaker(breaker)
        self.retry: RetryPolicy | None = None


class Resilience:
    """The ``breaker`` stage (see the module docstring)."""

    def __init__(
        self, defaults: Defaults, source: CatalogSource, marks: Availability | None = None
    ) -> None:
        self.defaults = defaults
        self.source = source
        # Where an open breaker marks its server or tool unavailable in listings.
        self.marks = marks
        self._servers: dict[str, ServerState] = {}
        # Calls probing half-open breakers: id(call) → those breakers.
        self._probes: dict[int, tuple[Breaker, ...]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- which servers it covers ---------------------------------------------------------
    def active_for(self, specs: Sequence[ServerSpec]) -> bool:
        """Whether the stage has work with these servers (the defaults, or a server that
        turns breakers or retries on); servers no longer registered are forgotten."""
        names = {s.name for s in specs}
        self._servers = {k: v for k, v in self._servers.items() if k in names}
        if self.defaults.active:
            return True
        return any(ServerPolicy.of(s.config, self.defaults).active for s in specs)

    def _load(self, spec: ServerSpec) -> ServerState:
        """A server's state, new (its settings changed, or first call): breakers closed."""
        try:
            policy = ServerPolicy.of(spec.config, self.defaults)
        except Exception:  # stored before a check existed: the defaults apply
            log.warning("unreadable resilience settings", extra={"server": spec.name})
            policy = ServerPolicy(self.defaults.breaker, self.defaults.retries, {})
        if spec.name in self._servers and self.marks is not None:
            self.marks.forget(spec.name, BREAKER)  # its breakers start closed again
        state = self._servers[spec.name] = ServerState(spec, policy)
        return state

    def _tool(self, server: ServerState, name: str) -> ToolState:
        if len(server.tools) >= _MAX_TOOLS:
            server.tools.clear()
        breaker, _, _ = server.policy.tool(name)
        state = server.tools[name] = ToolState(server, name, breaker)
        self._plan(server, state)
        return state

    def _plan(self, server: ServerState, tool: ToolState) -> None:
        _, retries, idempotent = server.policy.tool(tool.name)
        safe = retries.enabled and retries.attempts > 1
        if safe and idempotent is None:  # the annotations decide (a catalog scan: rare)
            safe = retry_safe(self.source.tool_annotations(server.name, tool.name), None)
        tool.retry = retries if safe and idempotent is not False else None

    # --- the stage -----------------------------------------------------------------------
    def enter(self, call: Call) -> None:
        """Before the backend: the call's tool state; an answer if a breaker is open."""
        target = call.target
        spec = target.runtime.spec
        server = self._servers.get(spec.name)
        if server is None or server.version != spec.version or server.id != spec.id:
            server = self._load(spec)
        if server.seen != self.source.catalog_version:  # annotations may have changed
            server.seen = self.source.catalog_version
            for state in server.tools.values():
                self._plan(server, state)
        # By the backend's tool name: settings and annotations are (transforms.py).
        tool = server.tools.get(target.backend)
        if tool is None:
            tool = self._tool(server, target.backend)
        call.resilience = tool
        if server.breaker.state or tool.breaker.state:
            self._gate(call, server, tool)

    def _gate(self, call: Call, server: ServerState, tool: ToolState) -> None:
        """A breaker is not closed: let the call through (as a probe) or answer it."""
        now = call.started
        for breaker, scope in ((server.breaker, "server"), (tool.breaker, "tool")):
            if breaker.state != CLOSED and not breaker.admits(now):
                self._unavailable(call, server, tool, breaker, scope, now)
                return
        probing = tuple(b for b in (server.breaker, tool.breaker) if b.state == HALF_OPEN)
        for breaker in probing:
            breaker.probing += 1
        if probing:
            self._probes[id(call)] = probing

    def _unavailable(
        self,
        call: Call,
        server: ServerState,
        tool: ToolState,
        breaker: Breaker,
        scope: str,
        now: float,
    ) -> None:
        wait = math.ceil(breaker.retry_after(now))
        what = (
            f"server {server.name!r}"
            if scope == "server"
            else (f"tool {tool.name!r} of server {server.name!r}")
        )
        why = f"circuit breaker open after {breaker.failures} failed calls"
        if breaker.last_error:
            why += f"; last: {breaker.last_error}"
        when = (
            f"the gateway tries it again in {wait} s"
            if wait > 0
            else "it is being tried again now: call again in a moment"
        )
        text = f"{what} is unavailable ({why}); {when}"
        result = tool_error(text)
        result.meta = {UNAVAILABLE_META: {"scope": scope, "retryAfter": max(wait, 1)}}
        call.answer, call.outcome, call.error = result, "unavailable", text
        server.rejected += 1

    def leave(self, call: Call, error: BaseException | None) -> None:
        """After the backend: count the call's verdict on its breakers."""
        tool = call.resilience
        if tool is None or call.outcome == "unavailable":
            return
        probes = self._probes.pop(id(call), ()) if self._probes else ()
        fault = call.fault
        if fault == "replica":  # one replica failed, others are up: no verdict
            for breaker in probes:
                breaker.probing -= 1
            return
        if fault is None:
            if (error is not None and not isinstance(error, BackendRequestError)) or (
                call.outcome == "cancelled"
            ):  # never answered (cancelled, handed to the other path): no verdict
                for breaker in probes:
                    breaker.probing -= 1
                return
            now = call.started
            tool.breaker.success(now)
            tool.server.breaker.success(now)
            for breaker in probes:
                self._closed(breaker, tool)
            return
        self._failed(call, tool, fault, probes)

    def _failed(self, call: Call, tool: ToolState, fault: str, probes: tuple[Breaker, ...]) -> None:
        now = time.perf_counter()
        server = tool.server
        counted = (tool.breaker, server.breaker) if fault == "server" else (tool.breaker,)
        for breaker in counted:
            opened = breaker.failure(now, call.error)
            if breaker in probes:  # a probe failed: open again
                breaker.open(now)
                opened = True
            if opened:
                self._opened(call, breaker, server, tool)
        for breaker in probes:
            if breaker not in counted:
                breaker.probing -= 1

    def _closed(self, breaker: Breaker, tool: ToolState) -> None:
        breaker.close()
        whole = breaker is tool.server.breaker
        scope = "server" if whole else f"tool {tool.name!r}"
        log.info("circuit breaker closed", extra={"server": tool.server.name, "scope": scope})
        self._mark(tool.server.name, None if whole else tool.name, None)

    def _opened(self, call: Call, breaker: Breaker, server: ServerState, tool: ToolState) -> None:
        whole = breaker is server.breaker
        log.warning(
            "circuit breaker opened",
            extra={
                "server": server.name,
                "scope": "server" if whole else f"tool {tool.name!r}",
                "failures": breaker.failures,
                "open_seconds": breaker.policy.open_seconds,
                "error": breaker.last_error,
            },
        )
        if whole:
            self._health_probe(call.target.runtime, breaker.policy.open_seconds / 2)
        if self.marks is not None:
            self._mark_open(server, None if whole else tool.name, breaker)

    # --- listings: fail open, marked (availability.py) ---------------------------------------
    def _mark_open(self, server: ServerState, tool: str | None, breaker: Breaker) -> None:
        """Mark what ``breaker`` guards unavailable in listings until it lets calls
        through again; then the mark goes (a failed probe opens it, and marks, again)."""
        why = f"circuit breaker open after {breaker.failures} failed calls"
        if breaker.last_error:
            why += f"; last: {breaker.last_error}"
        mark = Unavailable("server" if tool is None else "tool", why, wall_clock(breaker.retry_at))
        self._mark(server.name, tool, mark)
        until = breaker.retry_at
        delay = max(0.0, until - time.perf_counter())
        asyncio.get_running_loop().call_later(delay, self._expire, server, tool, breaker, until)

    def _expire(
        self, server: ServerState, tool: str | None, breaker: Breaker, until: float
    ) -> None:
        """An open period ended: unmark, unless the breaker opened again since (its own
        timer unmarks then) or the server's state was replaced (its marks went with it)."""
        if (breaker.state == OPEN and breaker.retry_at > until) or (
            self._servers.get(server.name) is not server
        ):
            return
        self._mark(server.name, tool, None)

    def _mark(self, server: str, tool: str | None, mark: Unavailable | None) -> None:
        if self.marks is None:
            return
        if tool is None:
            self.marks.mark_server(server, BREAKER, mark)
        else:
            self.marks.mark_tool(server, tool, mark)

    def _health_probe(self, runtime: ServerRuntime, delay: float) -> None:
        """Ping the server halfway through the open period, offset from the half-open
        probes: its health shows whether it is back before calls are let through."""
        loop = asyncio.get_running_loop()

        async def ping() -> None:
            with contextlib.suppress(Exception):
                await runtime.ping()

        def start() -> None:
            task = loop.create_task(ping())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        loop.call_later(delay, start)

    # --- what others read ----------------------------------------------------------------
    def state_of(self, server: str, tool: str) -> ToolState | None:
        """A tool's state (its retry plan), for a backend call made outside the stage's
        sight (the SDK path's 2026-07-28 rounds run it in a task of their own)."""
        found = self._servers.get(server)
        return found.tools.get(tool) if found is not None else None

    def read_plan(self, spec: ServerSpec) -> tuple[RetryPolicy, ServerState] | None:
        """How a read of ``spec``'s (a resource, a prompt: always safe to repeat) is
        retried: the server's retry policy, None when its retries are off."""
        server = self._servers.get(spec.name)
        if server is None or server.version != spec.version or server.id != spec.id:
            server = self._load(spec)
        retries = server.policy.retries
        if not retries.enabled or retries.attempts < 2:
            return None
        return retries, server

    def describe(self, server: str) -> dict[str, Any] | None:
        """A server's breakers for its health: its own, and its tools' that are not
        closed or have failed lately (None: no call has been seen)."""
        state = self._servers.get(server)
        if state is None:
            return None
        now = time.perf_counter()
        out = state.breaker.describe(now)
        out["retries"], out["rejected"] = state.retries, state.rejected
        out["tools"] = {
            name: tool.breaker.describe(now)
            for name, tool in sorted(state.tools.items())
            if tool.breaker.state != CLOSED or tool.breaker.failures
        }
        return out

    def series(self) -> Iterator[tuple[str, str, int, int, int]]:
        """(server, tool or "" for the server's own breaker, state, retries, rejected):
        the metrics read when scraped."""
        for name, state in self._servers.items():
            yield name, "", state.breaker.state, state.retries, state.rejected
            for tool_name, tool in state.tools.items():
                if tool.breaker.state != CLOSED or tool.breaker.opens:
                    yield name, tool_name, tool.breaker.state, 0, 0


def follow_servers(service: ServerService, defaults: Defaults) -> Resilience:
    """Install the stage in ``service``'s pipeline while it has work: breakers or retries
    on by default, or a registered server that turns them on (checked after each load
    of the registry); otherwise the slot stays empty and costs nothing."""
    stage = Resilience(defaults, service, service.availability)
    service.resilience = stage

    def changed(specs: list[ServerSpec]) -> None:
        active = stage.active_for(specs)
        service.pipeline.install("breaker", cast("Stage", stage) if active else None)

    service.spec_listeners.append(changed)
    changed([])
    return stage
