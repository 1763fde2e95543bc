"""The call pipeline: the named stages every tool call passes, whichever way it came.

REST `tools/execute`, the `/mcp` SDK path, `EXECUTE_TOOL` and the fast path each know
how to reach a backend (a runtime call, or raw JSON-RPC forwarded on a pooled
connection); everything around that is here, once, in this order::

    authorize → limit → cache → breaker → backend → record

A stage is an object called with the :class:`Call` and ``proceed`` (the rest of the
chain); it may refuse (raise :class:`CallDenied`), answer without proceeding, or wrap
what follows. Controls added later (policy, rate limits, caching, breakers, audit,
tracing) are stages installed by name; no entry point changes. Stages that are not
installed cost nothing: the chain is built from the installed ones only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from mcp import types

from gateway.auth.principal import Principal
from gateway.errors import Forbidden
from gateway.servers.calls import CallTarget
from gateway.servers.runtimes.relay import Relay

STAGES = ("authorize", "limit", "cache", "breaker", "backend", "record")
Route = Literal["rest", "sdk", "direct"]
Outcome = Literal["ok", "tool_error", "error", "denied", "cancelled", "not_sent"]
Proceed = Callable[[], Awaitable[Any]]
# (server, route, seconds, outcome): what the record stage reports for each call.
CallRecorder = Callable[[str, str, float, str], None]
# The order stages wrap one another: record outermost (it acts on the way out, after
# everything, so it sees refusals too), then the rest as listed in STAGES.
_NESTING = ("record", "authorize", "limit", "cache", "breaker")


@dataclass(slots=True)
class Call:
    """One tool call on its way through the pipeline.

    ``route`` is the path that serves it (REST, the SDK path or the fast path's
    ``direct``); ``via`` the meta-tool it came through (``EXECUTE_TOOL``), if any. The
    backend stage sets ``outcome``; stages read it on the way back.
    """

    principal: Principal
    target: CallTarget
    arguments: dict[str, Any]
    route: Route
    via: str | None = None
    started: float = field(default_factory=time.perf_counter)
    outcome: Outcome = "error"

    @property
    def server(self) -> str:
        return self.target.server

    @property
    def tool(self) -> str:
        return self.target.tool


CallResult = types.CallToolResult | types.InputRequiredResult


@dataclass(slots=True)
class CallContext:
    """How an entry point wants one call made (``ServerService.call``).

    ``relay`` takes what the backend sends mid-call (progress, logs, questions) to the
    agent; ``exchange``, when set, replaces the plain runtime call as the way to the
    backend (the SDK path's multi-round calls of 2026-07-28 agents)."""

    route: Route = "rest"
    via: str | None = None
    timeout: float | None = None
    relay: Relay | None = None
    exchange: Callable[[], Awaitable[CallResult]] | None = None


class CallDenied(Forbidden):
    """A stage refused the call; ``message`` says why (shown to the caller)."""

    code = "call_denied"


class NotSent(Exception):
    """The backend stage sent nothing and handed the call to another path, which runs
    the pipeline itself: this run is not recorded."""


class Stage(Protocol):
    """One named step around the backend call."""

    async def __call__(self, call: Call, proceed: Proceed) -> Any:
        """Do this stage's part and return ``await proceed()`` (or refuse, or answer)."""
        ...


class Pipeline:
    """The installed stages, in :data:`STAGES` order, run around a backend call."""

    def __init__(self, stages: dict[str, Stage] | None = None) -> None:
        self._stages: dict[str, Stage] = {}
        self._chain: tuple[Stage, ...] = ()
        for name, stage in (stages or {}).items():
            self.install(name, stage)

    def install(self, name: str, stage: Stage | None) -> None:
        """Put ``stage`` in the slot ``name`` (None empties it)."""
        if name not in STAGES or name == "backend":
            raise ValueError(f"no pipeline stage named {name!r}; stages: {STAGES}")
        if stage is None:
            self._stages.pop(name, None)
        else:
            self._stages[name] = stage
        self._chain = tuple(self._stages[n] for n in _NESTING if n in self._stages)

    @property
    def names(self) -> tuple[str, ...]:
        """The filled slots, in order, with ``backend`` where the backend call runs."""
        return tuple(n for n in STAGES if n in self._stages or n == "backend")

    async def run(self, call: Call, backend: Callable[[Call], Awaitable[Any]]) -> Any:
        """``backend(call)`` with every installed stage around it."""
        chain = self._chain
        if not chain:
            return await backend(call)
        last = len(chain)
        position = 0

        async def proceed() -> Any:
            nonlocal position
            if position == last:
                return await backend(call)
            stage = chain[position]
            position += 1
            return await stage(call, proceed)

        return await proceed()


class Authorize:
    """The caller's key and role must allow calling tools (visibility was settled when
    the target was resolved). Policy rules join this stage."""

    refusal = "this key may not call tools (needs 'tools:execute')"

    async def __call__(self, call: Call, proceed: Proceed) -> Any:
        if not call.principal.can("tools:execute"):
            raise CallDenied(self.refusal)
        return await proceed()


class Record:
    """Reports every call that reached a verdict (answered, refused or cancelled): the
    per-server call metrics, one series whatever the route. Audit rows and spans join
    this stage.

    It is the outermost stage: listed last because it acts on the way out, it wraps the
    others so a refusal or an answer from a cache is recorded too.
    """

    def __init__(self, recorder: CallRecorder) -> None:
        self.recorder = recorder

    async def __call__(self, call: Call, proceed: Proceed) -> Any:
        try:
            return await proceed()
        except NotSent:
            call.outcome = "not_sent"
            raise
        except CallDenied:
            call.outcome = "denied"
            raise
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            raise
        finally:
            if call.outcome != "not_sent":
                seconds = time.perf_counter() - call.started
                self.recorder(call.server, call.route, seconds, call.outcome)
