"""The call pipeline: the named stages every tool call passes, whichever way it came.

REST `tools/execute`, the `/mcp` SDK path, `EXECUTE_TOOL` and the fast path each know
how to reach a backend (a runtime call, or raw JSON-RPC forwarded on a pooled
connection); everything around that is here, once, in this order::

    transform → authorize → size → limit → cache → breaker → backend → record

A stage has two halves. ``enter`` runs before the backend, in that order: it may
refuse the call (raise :class:`CallDenied`) or answer it without the backend (set
``call.answer``: what a cache will do). ``leave`` runs after, in reverse order, for
every stage that was entered, with the error the call ended in (if any); ``record``
is listed last because it acts last, and it is entered first, so it sees refusals
and answers of the others too. Controls added later (policy, rate limits, caching,
breakers, audit) are stages installed by name; no entry point changes (``transform``,
a server's default and fixed arguments, comes first so that policy conditions and the
audit trail see the arguments that are sent: transforming.py). Tracing is
the pipeline's own hook around all of them (:meth:`Pipeline.trace`): a span for the
call, one per acting stage and one for the backend; entry points only say where the
call came from (``Call.origin``) and the backend stage passes ``Call.trace.carrier`` on.

Why halves rather than wrappers (``await proceed()``): a wrapper stays on the stack
for the whole backend exchange, and every time the exchange waits and resumes, the
resume passes through each wrapper's frame. On the fast path that cost 15-40 µs of
gateway CPU per call; halves cost the same whatever the backend does. Stages that
are not installed cost nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

from mcp import types

from gateway.audit.entry import REQUEST_SCOPE
from gateway.audit.rows import Wire, actor_of, result_size, wire
from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from gateway.errors import Forbidden
from gateway.observability.logging import current_request_id
from gateway.observability.tracing import RequestTrace
from gateway.policy.engine import Request
from gateway.policy.limits import Admission, LimitExceeded
from gateway.policy.service import PolicyDenied as Refused
from gateway.policy.service import PolicyService
from gateway.servers.calls import CallTarget, qualified
from gateway.servers.runtimes.relay import Relay

STAGES = ("transform", "authorize", "size", "limit", "cache", "breaker", "backend", "record")
Route = Literal["rest", "sdk", "direct"]
Outcome = Literal[
    "ok",
    "tool_error",
    "error",
    "denied",
    "rate_limited",
    "timeout",
    "cancelled",
    "not_sent",
    "unavailable",
]
# (server, tool, route, seconds, outcome, trace id, result bytes): what the record stage
# reports for each call.
CallRecorder = Callable[[str, str, str, float, str, str | None, int | None], None]
# (server, reason): a call a stage refused.
RefusalRecorder = Callable[[str, str], None]
# The order stages are entered: record first (so it leaves last and sees everything),
# then the rest as listed in STAGES.
_ENTERING = ("record", "transform", "authorize", "size", "limit", "cache", "breaker")
CallResult = types.CallToolResult | types.InputRequiredResult
# Asks the agent's user a question (why approval is needed); True: approved.
Approver = Callable[[str], Awaitable[bool]]


@dataclass(slots=True)
class Call:
    """One tool call on its way through the pipeline.

    ``route`` is the path that serves it (REST, the SDK path or the fast path's
    ``direct``); ``via`` the meta-tool it came through (``EXECUTE_TOOL``), if any. The
    backend stage sets ``outcome``; a stage that answers in the backend's place sets
    ``answer`` (and ``outcome``).
    """

    principal: Principal
    target: CallTarget
    arguments: dict[str, Any]
    route: Route
    via: str | None = None
    started: float = field(default_factory=time.perf_counter)
    outcome: Outcome = "error"
    answer: Any = None
    error: str | None = None  # why it failed, as the agent was told (audited, masked)
    result: Any = None  # the answer, measured for the audit trail (bytes or a model)
    bytes_out: int | None = None
    # Where the call came from, for its span (an entry point's :class:`TraceSource`).
    origin: TraceSource | None = None
    # Its spans while tracing is on (set by the tracer; None otherwise).
    trace: CallTrace | None = None
    # The policy rule or limit that refused it, or the rule its user approved it under
    # (``approved``), audited in the row's detail.
    rule: str | None = None
    approved: bool = False
    # Asks the agent's user to approve the call (a `require_approval` rule); None: this
    # path cannot ask.
    approve: Approver | None = None
    # What the limit stage counted in, to count out when the call ends (controls.py).
    admission: Admission | None = None
    # The backend failed to answer (set by the backend stages, counted by the breakers):
    # "server" (unreachable, cut short), "call" (timed out, unreadable answer) or
    # "replica" (one replica of a replicated server, which others cover: no verdict).
    fault: str | None = None
    # The tool's breaker and retry plan (resilience/stage.py's ToolState), when installed.
    resilience: Any = None
    # The request's `_meta` (the response cache reads its `io.mcpgw/cache` directive).
    meta: Mapping[str, Any] | None = None
    # The response cache's part in the call (servers/cache/stage.py): None until it
    # decides; an entry point sets "skip" for a call never to be cached.
    cache: Any = None

    @property
    def server(self) -> str:
        return self.target.server

    @property
    def tool(self) -> str:
        return self.target.tool


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
    origin: TraceSource | None = None
    approve: Approver | None = None
    meta: Mapping[str, Any] | None = None  # the request's `_meta`
    cacheable: bool = True  # False: never answered from, nor kept in, the response cache


class CallDenied(Forbidden):
    """A stage refused the call; ``message`` says why (shown to the caller)."""

    code = "call_denied"


class NotSent(Exception):
    """The backend stage sent nothing and handed the call to another path, which runs
    the pipeline itself: this run is not recorded."""


class Stage(Protocol):
    """One named step around the backend call (see the module docstring)."""

    def enter(self, call: Call) -> Awaitable[None] | None:
        """Before the backend: raise :class:`CallDenied` to refuse, set ``call.answer``
        to answer in its place, or return to let the call go on. An ``async def`` is
        awaited; a plain function is called, and what it returns awaited only when it
        is not None: a stage that seldom waits (the audit queue is full, an approval
        is asked) returns a coroutine only then, and costs none per call otherwise."""

    def leave(self, call: Call, error: BaseException | None) -> None:
        """After the backend (or a later stage's refusal or answer): ``error`` is what
        the call raised, None when it was answered."""


class TraceOrigin(NamedTuple):
    """What a call's span is told about the request that carried it."""

    meta: Mapping[str, Any] | None  # the request's `params._meta` (W3C fields in it)
    request: RequestTrace | None  # the HTTP request's trace (its headers' context)
    session_id: str | None = None
    request_id: Any = None
    protocol_version: str | None = None


class TraceSource(Protocol):
    """An entry point's view of its request, read only when the call is traced."""

    def trace_origin(self) -> TraceOrigin:
        """The request's trace fields (see :class:`TraceOrigin`)."""


class CallTrace(Protocol):
    """One traced call's spans (gateway/servers/tracing.py)."""

    trace_id: str  # hex, for the audit row
    recording: bool  # sampled: its spans are exported (a metrics exemplar may name it)
    carrier: dict[str, str] | None  # the W3C fields the backend request carries

    def stage(self, name: str) -> Any:
        """A child span for stage ``name`` (None: not recorded); ended by :meth:`done`."""

    def done(self, span: Any, error: BaseException | None) -> None:
        """End a stage's span."""

    def backend(self, call: Call) -> None:
        """The backend stage begins: its span, and :attr:`carrier` for the backend."""

    def backend_done(self, error: BaseException | None) -> None:
        """The backend stage ended (or never began)."""

    def end(self, call: Call, error: BaseException | None) -> None:
        """The call's verdict is in: its span ends."""


class CallTracer(Protocol):
    """The pipeline's tracing hook: installed while an exporter is configured."""

    def begin(self, call: Call) -> CallTrace | None:
        """Start the call's span (None: this call is not traced)."""


class StageDefaults:
    """Halves that do nothing, for a stage that needs only one (never called: the
    pipeline skips them)."""

    def enter(self, call: Call) -> Awaitable[None] | None:
        return None

    def leave(self, call: Call, error: BaseException | None) -> None:
        return None


class Pipeline:
    """The installed stages, run around a backend call."""

    def __init__(self, stages: dict[str, Stage] | None = None) -> None:
        self._stages: dict[str, Stage] = {}
        self._entering: tuple[Stage, ...] = ()
        # Per stage: whether its enter does anything (StageDefaults' is skipped).
        self._acts: tuple[bool, ...] = ()
        self._names: tuple[str, ...] = ()
        # By how many stages were entered: those whose leave does anything, last entered
        # first (a no-op leave is not even called).
        self._leaving: tuple[tuple[Stage, ...], ...] = ((),)
        # The tracing hook (None while tracing is off: then it costs one check per call).
        self._tracer: CallTracer | None = None
        for name, stage in (stages or {}).items():
            self.install(name, stage)

    def trace(self, tracer: CallTracer | None) -> None:
        """Install the tracing hook (None removes it): every call gets a span, with a
        child span per stage and one for the backend (gateway/servers/tracing.py)."""
        self._tracer = tracer

    @property
    def traced(self) -> bool:
        return self._tracer is not None

    def install(self, name: str, stage: Stage | None) -> None:
        """Put ``stage`` in the slot ``name`` (None empties it)."""
        if name not in STAGES or name == "backend":
            raise ValueError(f"no pipeline stage named {name!r}; stages: {STAGES}")
        if stage is None:
            self._stages.pop(name, None)
        else:
            self._stages[name] = stage
        self._names = tuple(n for n in _ENTERING if n in self._stages)
        self._entering = tuple(self._stages[n] for n in self._names)
        self._acts = tuple(_overrides(s, "enter") for s in self._entering)
        entering = self._entering
        self._leaving = tuple(
            tuple(s for s in reversed(entering[:n]) if _overrides(s, "leave"))
            for n in range(len(entering) + 1)
        )

    def stage(self, name: str) -> Stage | None:
        """The stage in the slot ``name`` (None: empty)."""
        return self._stages.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        """The filled slots in :data:`STAGES` order, with ``backend`` where it runs."""
        return tuple(n for n in STAGES if n in self._stages or n == "backend")

    async def enter(self, call: Call) -> int:
        """Enter every stage in order; how many were entered, for :meth:`leave` (on a
        refusal, those before it have been left already and the refusal is raised)."""
        tracer = self._tracer
        trace = None
        if tracer is not None:
            trace = call.trace = tracer.begin(call)
            if trace is not None and trace.recording:
                return await self._enter_traced(call, trace)
        # Untraced, or traced but not recorded (sampled out): no stage spans, so the
        # stages run as they are, and only the backend's context is set up after.
        entered = 0
        try:
            for stage, acts in zip(self._entering, self._acts, strict=True):
                if acts:
                    pending = stage.enter(call)
                    if pending is not None:
                        await pending
                entered += 1
                if call.answer is not None:
                    break
        except BaseException as exc:
            self.leave(call, entered, exc)
            raise
        if trace is not None and call.answer is None:
            trace.backend(call)
        return entered

    async def _enter_traced(self, call: Call, trace: CallTrace) -> int:
        """:meth:`enter` of a recorded call: each acting stage in a span of its own,
        then the backend's."""
        entered = 0
        try:
            for stage, acts, name in zip(self._entering, self._acts, self._names, strict=True):
                if acts:
                    span = trace.stage(name)
                    try:
                        pending = stage.enter(call)
                        if pending is not None:
                            await pending
                    except BaseException as exc:
                        trace.done(span, exc)
                        raise
                    trace.done(span, None)
                entered += 1
                if call.answer is not None:
                    break
        except BaseException as exc:
            self.leave(call, entered, exc)
            raise
        if call.answer is None:
            trace.backend(call)
        return entered

    def leave(self, call: Call, entered: int, error: BaseException | None) -> None:
        """Leave the ``entered`` stages, last entered first."""
        trace = call.trace
        if trace is not None:
            trace.backend_done(error)
        for stage in self._leaving[entered]:
            stage.leave(call, error)
        if trace is not None:
            trace.end(call, error)

    async def run(self, call: Call, backend: Callable[[Call], Awaitable[Any]]) -> Any:
        """``backend(call)`` (or a stage's answer) with every installed stage around it."""
        entered = await self.enter(call)
        if call.answer is not None:
            self.leave(call, entered, None)
            return call.answer
        try:
            result = await backend(call)
        except BaseException as exc:
            self.leave(call, entered, exc)
            raise
        self.leave(call, entered, None)
        return result


def _overrides(stage: Stage, half: str) -> bool:
    """Whether the stage's ``half`` (enter or leave) does anything: StageDefaults' do
    nothing, and are not called."""
    found = getattr(type(stage), half, None)
    return found is not None and found is not getattr(StageDefaults, half)


class PolicyDenied(CallDenied, Refused):
    """A policy rule (or the key's own tool globs) refused the call."""

    code = "policy_denied"


# A tool's annotations (readOnlyHint, destructiveHint, ...) by server and tool name.
AnnotationLookup = Callable[[str, str], Mapping[str, Any] | None]


class Authorize(StageDefaults):
    """The caller's key and role must allow calling tools (visibility was settled when
    the target was resolved), then the policy in force must (gateway/policy/): its
    rules, and the key's own tool globs. A refusal names the deciding rule only."""

    refusal = "this key may not call tools (needs 'tools:execute')"

    def __init__(
        self, policies: PolicyService | None = None, annotations: AnnotationLookup | None = None
    ) -> None:
        self.policies = policies
        self.annotations = annotations

    def enter(self, call: Call) -> Awaitable[None] | None:
        # A plain function: a coroutine only when the user must approve the call.
        principal = call.principal
        if not principal.can("tools:execute"):
            raise CallDenied(self.refusal)
        policy = self.policies.policy_for(principal) if self.policies is not None else None
        if policy is None:
            return None
        server, tool = call.target.server, call.target.tool
        target = qualified(server, tool)
        decision = policy.decide(
            principal, "tools/call", target, lambda: self._request(call), call.arguments
        )
        if decision.allowed:
            return None
        call.rule = decision.rule
        reason = decision.reason("tools/call", target)
        if decision.effect == "require_approval":
            return self._ask(call, reason)
        raise PolicyDenied(reason, rule=decision.rule)

    @staticmethod
    async def _ask(call: Call, reason: str) -> None:
        """Have the agent's user approve the call (an elicitation), or refuse it."""
        if call.approve is None:
            if call.route == "direct":
                raise NotSent  # the SDK path asks, where the client can be asked
            raise PolicyDenied(
                f"{reason}; this client cannot be asked (it supports no elicitation)",
                rule=call.rule,
            )
        if not await call.approve(reason):
            raise PolicyDenied(f"{reason}; the user did not approve it", rule=call.rule)
        call.approved = True

    def _request(self, call: Call) -> Request:
        lookup, server, tool = self.annotations, call.target.server, call.target.tool
        backend = call.target.backend  # the catalog knows a tool by the backend's name
        scope = REQUEST_SCOPE.get() or {}
        client = (scope.get("state") or {}).get("mcp_client")
        return Request(
            arguments=call.arguments,
            client=tuple(client) if client else None,
            server=server,
            tool=tool,
            annotations=(lambda: lookup(server, backend)) if lookup is not None else None,
        )


# The audit trail's name for each path a call can take.
_AUDIT_ROUTES = {"rest": "rest", "sdk": "mcp", "direct": "mcp-fast"}


class Record(StageDefaults):
    """Reports every call that reached a verdict (answered, refused or cancelled): the
    per-server call metrics, one series whatever the route, and one audit row (queued:
    the writer masks and stores it off the request path), with the call's trace id when
    it is traced (the tracing hook, :meth:`Pipeline.trace`, wraps every stage).

    Entered first: while the audit queue is full, a call waits (boundedly) for room
    before it goes on, rather than its row being dropped."""

    def __init__(
        self,
        recorder: CallRecorder | None,
        audit: AuditLog | None = None,
        refusals: RefusalRecorder | None = None,
    ) -> None:
        self.recorder = recorder
        self.audit = audit
        self.refusals = refusals

    def enter(self, call: Call) -> Awaitable[None] | None:
        # A plain function: a coroutine only while the queue is full.
        audit = self.audit
        if audit is not None and audit.full:
            return audit.room()
        return None

    def leave(self, call: Call, error: BaseException | None) -> None:
        error_code = None
        if error is not None:
            if isinstance(error, NotSent):
                return
            if isinstance(error, LimitExceeded):
                call.outcome, error_code, call.error = "rate_limited", error.code, error.message
                call.rule = error.limit
                if self.refusals is not None:
                    self.refusals(call.server, error.code)
            elif isinstance(error, CallDenied):
                call.outcome, error_code = "denied", error.code
                call.error = error.message
                if self.refusals is not None:
                    self.refusals(call.server, error.code)
            elif isinstance(error, asyncio.CancelledError):
                call.outcome = "cancelled"
            else:
                call.error = call.error or str(error) or type(error).__name__
                error_code = getattr(error, "code", None) and str(error.code)  # type: ignore[attr-defined]
        seconds = time.perf_counter() - call.started
        if self.recorder is not None:
            trace = call.trace
            target = call.target
            self.recorder(
                target.server,
                target.tool,
                call.route,
                seconds,
                call.outcome,
                trace.trace_id if trace is not None and trace.recording else None,
                call.bytes_out,
            )
        if self.audit is not None:
            self.audit.record(CallRecord(call, seconds * 1000, error_code))


def _detail(call: Call) -> dict[str, Any] | None:
    """The audit row's detail: the deciding rule (and whether the user approved), and
    the response cache's part (``hit``: answered from it; ``bypass``: asked not to be),
    and the backend's own name of a tool a transform renamed (the row's target is the
    name the agent called)."""
    cached = getattr(call.cache, "audit", None)
    renamed = call.target.backend_tool
    detail: dict[str, Any] = {}
    if call.rule is not None:
        detail["rule"] = call.rule
        if call.approved:
            detail["approved"] = True
    if cached is not None:
        detail["cache"] = cached
    if renamed is not None:
        detail["backend_tool"] = renamed
    return detail or None


class CallRecord:
    """A finished call as the audit trail takes it: read out at once, into a row on the
    wire (audit/rows.py), without an AuditEntry in between (a µs per call)."""

    __slots__ = ("call", "error_code", "latency_ms")

    def __init__(self, call: Call, latency_ms: float, error_code: str | None) -> None:
        self.call, self.latency_ms, self.error_code = call, latency_ms, error_code

    def audit_wire(self, event_id: str) -> Wire:
        """The row (called by the writer while the call's request is current)."""
        call = self.call
        trace = call.trace
        bytes_out = call.bytes_out
        target = call.target
        secrets = target.runtime.spec.secrets  # (its truth read plainly: no method call)
        return wire(
            event_id,
            time.time(),
            current_request_id(),
            trace.trace_id if trace is not None else None,
            actor_of(call.principal),
            REQUEST_SCOPE.get(),
            "tools/call",
            "meta" if call.via else _AUDIT_ROUTES[call.route],
            target.server,
            target.tool,
            call.via,
            call.arguments,
            _detail(call),
            call.outcome,
            self.error_code,
            call.error,
            self.latency_ms,
            None,
            bytes_out if bytes_out is not None else result_size(call.result),
            secrets if secrets.values else None,
        )
