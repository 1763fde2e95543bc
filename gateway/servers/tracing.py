"""The call pipeline's tracing hook: one span per tool call, whichever way it came.

Installed on the pipeline (:meth:`Pipeline.trace`) only while an exporter is configured
(gateway/observability/tracing.py), so an untraced gateway pays one None check per
call. Per the OpenTelemetry semantic conventions for MCP (semantic-conventions-genai
v0.1.0, `docs/gen-ai/mcp.md`, Development): the call's span is the MCP server span,
``tools/call {gen_ai.tool.name}`` (kind SERVER), child of the agent's context from
`params._meta` or, failing that, the HTTP ``traceparent``; each acting stage gets a
child span (``authorize`` …) and the backend stage the MCP client span
``tools/call {backend tool}`` (kind CLIENT), whose context is what the backend receives.
A result with ``isError`` (and any other failure) sets ``error.type`` and the ERROR status.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace import set_span_in_context as with_span

from gateway.observability.tracing import (
    OUTGOING,
    REQUEST_TRACE,
    TRACEPARENT,
    TRACESTATE,
    Generation,
    Telemetry,
    carrier_of,
    extract,
    traceparent,
)
from gateway.servers.calls import qualified

if TYPE_CHECKING:
    from gateway.servers.pipeline import Call, Pipeline, TraceOrigin

# The call's `route` as span attribute: the fast path's name for operators.
_ROUTES = {"rest": "rest", "sdk": "sdk", "direct": "fast"}
# The stages whose work is worth a span (record's enter only waits while the audit
# queue is full: that shows as the gap before the next stage).
_SPANNED = frozenset({"authorize", "limit", "cache", "breaker"})
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


def _meta_carrier(meta: Any) -> dict[str, str] | None:
    """The W3C fields in a request's `_meta` (a dict, or the SDK's model of it)."""
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        meta = getattr(meta, "model_extra", None) or {}
    parent = meta.get(TRACEPARENT)
    if not isinstance(parent, str):
        return None
    state = meta.get(TRACESTATE)
    return (
        {TRACEPARENT: parent, TRACESTATE: state}
        if isinstance(state, str)
        else {TRACEPARENT: parent}
    )


class Spans:
    """One traced call's spans (:class:`gateway.servers.pipeline.CallTrace`)."""

    __slots__ = (
        "_backend",
        "_backend_token",
        "_context",
        "_outgoing",
        "_token",
        "carrier",
        "generation",
        "recording",
        "span",
        "trace_id",
    )

    def __init__(self, generation: Generation, span: Span, recording: bool) -> None:
        self.generation = generation
        self.span = span
        self.recording = recording
        self.trace_id = f"{span.get_span_context().trace_id:032x}"
        self.carrier: dict[str, str] | None = None
        self._backend: Span | None = None
        self._backend_token: object = None
        self._outgoing: Token[dict[str, str] | None] | None = None
        self._context: Any = None
        self._token: object = None
        if recording:
            self._context = with_span(span)
            # Current while the call runs: log lines inside it carry its ids.
            self._token = otel_context.attach(self._context)

    def stage(self, name: str) -> Span | None:
        if not self.recording or name not in _SPANNED:
            return None
        return self.generation.tracer.start_span(name, context=self._context)

    def done(self, span: Any, error: BaseException | None) -> None:
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.set_attribute("error.type", getattr(error, "code", type(error).__name__))
        span.end()

    def backend(self, call: Call) -> None:
        span = self.span
        if self.recording:
            client = self.generation.tracer.start_span(
                f"tools/call {call.tool}",
                context=self._context,
                kind=SpanKind.CLIENT,
                attributes={
                    "mcp.method.name": "tools/call",
                    "gen_ai.tool.name": call.tool,
                    "gen_ai.operation.name": "execute_tool",
                    "mcpgw.server": call.server,
                },
            )
            self._backend = client
            # Current for the backend stage: the SDK client's own `_meta` injection
            # (mcp.shared._otel) names the current span as the backend's parent.
            self._backend_token = otel_context.attach(with_span(client))
            self.carrier = carrier_of(client)
        else:  # not sampled: the backend still joins the (unsampled) trace
            context = span.get_span_context()
            self.carrier = {TRACEPARENT: traceparent(context)}
            if context.trace_state:
                self.carrier[TRACESTATE] = context.trace_state.to_header()
        self._outgoing = OUTGOING.set(self.carrier)

    def backend_done(self, error: BaseException | None) -> None:
        if self._outgoing is not None:
            OUTGOING.reset(self._outgoing)
            self._outgoing = None
        client = self._backend
        if client is not None:
            self._backend = None
            otel_context.detach(self._backend_token)  # type: ignore[arg-type]
            if error is not None:
                client.set_status(Status(StatusCode.ERROR, type(error).__name__))
                client.set_attribute("error.type", type(error).__name__)
            client.end()

    def end(self, call: Call, error: BaseException | None) -> None:
        if self.recording:
            span = self.span
            outcome = call.outcome
            span.set_attribute("mcpgw.outcome", outcome)
            if outcome != "ok":
                span.set_attribute("error.type", outcome)
                span.set_status(Status(StatusCode.ERROR, call.error or outcome))
            span.end()
            otel_context.detach(self._token)  # type: ignore[arg-type]
        self.generation.end()


class CallTracer:
    """Starts each call's :class:`Spans` (:class:`gateway.servers.pipeline.CallTracer`)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def begin(self, call: Call) -> Spans | None:
        generation = self.telemetry.generation
        if generation is None:
            return None
        origin: TraceOrigin | None = call.origin.trace_origin() if call.origin else None
        request = origin.request if origin is not None else REQUEST_TRACE.get()
        parent = extract(_meta_carrier(origin.meta) if origin is not None else None)
        if parent is None and request is not None:
            parent = extract(request.incoming)
        # Parent-based sampling, decided here: an agent's decision is followed; a trace
        # starting here is recorded at the root ratio. Unrecorded calls never reach the
        # SDK (a span object there costs more than the fast path's whole call).
        remote = get_current_span(parent).get_span_context() if parent is not None else None
        if remote is not None:
            sampled = remote.trace_flags.sampled
        else:
            sampled = generation.ratio > 0.0 and random.random() < generation.ratio
        if sampled:
            name = qualified(call.server, call.tool)
            span = generation.tracer.start_span(
                f"tools/call {name}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes=_attributes(call, name, origin),
            )
        else:
            span = NonRecordingSpan(
                SpanContext(
                    remote.trace_id if remote is not None else _new_id(128),
                    _new_id(64),
                    is_remote=False,
                    trace_flags=_UNSAMPLED,
                    trace_state=remote.trace_state if remote is not None else None,
                )
            )
        generation.begin()
        if request is not None and request.span is None:
            request.span = span.get_span_context()
        return Spans(generation, span, sampled)


def _new_id(bits: int) -> int:
    """A random, non-zero trace (128) or span (64) id, as the SDK's generator makes them."""
    return random.getrandbits(bits) or 1


def _attributes(call: Call, name: str, origin: TraceOrigin | None) -> dict[str, Any]:
    """The call span's attributes (MCP semantic conventions, and the gateway's own)."""
    attributes: dict[str, Any] = {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": name,
        "gen_ai.operation.name": "execute_tool",
        "mcpgw.server": call.server,
        "mcpgw.route": _ROUTES[call.route],
    }
    if call.via:
        attributes["mcpgw.via"] = call.via
    if origin is not None:
        if origin.session_id:
            attributes["mcp.session.id"] = origin.session_id
        if origin.request_id is not None:
            attributes["jsonrpc.request.id"] = str(origin.request_id)
        if origin.protocol_version:
            attributes["mcp.protocol.version"] = origin.protocol_version
    return attributes


def install(pipeline: Pipeline, telemetry: Telemetry) -> None:
    """Keep ``pipeline``'s tracing hook in step with ``telemetry``: installed while an
    exporter is configured, removed (nothing per call) while none is."""
    tracer = CallTracer(telemetry)

    def follow(current: Telemetry) -> None:
        pipeline.trace(tracer if current.enabled else None)

    telemetry.listeners.append(follow)
    follow(telemetry)


__all__ = ["CallTracer", "Spans", "install"]
