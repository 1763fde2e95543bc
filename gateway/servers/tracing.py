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
import time
from collections.abc import Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, get_current_span
from opentelemetry.trace import set_span_in_context as with_span

from gateway.audit.forming import stored_json
from gateway.observability import otlp
from gateway.observability.tracing import (
    OUTGOING,
    REQUEST_TRACE,
    TRACEPARENT,
    TRACESTATE,
    Generation,
    RequestTrace,
    Telemetry,
    extract,
    traceparent,
)
from gateway.servers.calls import qualified
from gateway.servers.pipeline import NotSent

if TYPE_CHECKING:
    from gateway.servers.pipeline import Call, Pipeline, TraceOrigin

# The call's `route` as span attribute: the fast path's name for operators.
_ROUTES = {"rest": "rest", "sdk": "sdk", "direct": "fast"}
# The stages whose work is worth a span (record's enter only waits while the audit
# queue is full: that shows as the gap before the next stage).
_SPANNED = frozenset({"authorize", "size", "limit", "cache", "breaker"})
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


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
    """One traced call's spans (:class:`gateway.servers.pipeline.CallTrace`).

    Every call has a span context (its trace id goes to the backend, the audit row, the
    logs, the response); a recorded (sampled) call also has its spans written, as OTLP
    protobuf, when it ends (gateway/observability/otlp.py): the call's SERVER span, a
    span per acting stage and the backend's CLIENT span."""

    __slots__ = (
        "_backend",
        "_backend_token",
        "_done",
        "_outgoing",
        "_token",
        "_tool",
        "carrier",
        "context",
        "generation",
        "origin",
        "parent",
        "recording",
        "request",
        "started",
        "trace_id",
    )

    def __init__(
        self,
        generation: Generation,
        context: SpanContext,
        parent: SpanContext | None,
        recording: bool,
    ) -> None:
        self.generation = generation
        self.context = context
        self.parent = parent
        self.recording = recording
        self.trace_id = f"{context.trace_id:032x}"
        self.carrier: dict[str, str] | None = None
        self._backend: tuple[int, int] | None = None  # (span id, start ns)
        self._backend_token: object = None
        self._outgoing: Token[dict[str, str] | None] | None = None
        self._token: object = None
        self._done: list[bytes] = []
        self._tool: str | None = None
        self.origin: TraceOrigin | None = None
        self.request: RequestTrace | None = None
        self.started = time.time_ns()
        if recording:
            # Current while the call runs: log lines inside it carry its ids.
            self._token = otel_context.attach(with_span(NonRecordingSpan(context)))

    def stage(self, name: str) -> tuple[str, int, int] | None:
        if not self.recording or name not in _SPANNED:
            return None
        return name, _new_id(64), time.time_ns()

    def done(self, span: Any, error: BaseException | None) -> None:
        if span is None:
            return
        name, span_id, started = span
        attrs = b""
        if error is not None:
            attrs = otlp.attributes({"error.type": getattr(error, "code", type(error).__name__)})
        self._write(
            span_id,
            self.context.span_id,
            name,
            otlp.KIND_INTERNAL,
            started,
            attrs,
            None if error is None else type(error).__name__,
        )

    def backend(self, call: Call) -> None:
        context = self.context
        if self.recording:
            client_id = _new_id(64)
            self._backend = (client_id, time.time_ns())
            client = SpanContext(context.trace_id, client_id, False, _SAMPLED, context.trace_state)
            # Current for the backend stage: the SDK client's own `_meta` injection
            # (mcp.shared._otel) names the current span as the backend's parent.
            self._backend_token = otel_context.attach(with_span(NonRecordingSpan(client)))
            context = client
        self.carrier = {TRACEPARENT: traceparent(context)}
        if context.trace_state:
            self.carrier[TRACESTATE] = context.trace_state.to_header()
        self._outgoing = OUTGOING.set(self.carrier)
        self._tool = call.tool if self.recording else None

    def backend_done(self, error: BaseException | None) -> None:
        if self._outgoing is not None:
            OUTGOING.reset(self._outgoing)
            self._outgoing = None
        backend = self._backend
        if backend is not None:
            self._backend = None
            otel_context.detach(self._backend_token)  # type: ignore[arg-type]
            client_id, started = backend
            tool = self._tool or ""
            attrs = {
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": tool,
                "gen_ai.operation.name": "execute_tool",
            }
            if error is not None:
                attrs["error.type"] = type(error).__name__
            self._write(
                client_id,
                self.context.span_id,
                f"tools/call {tool}",
                otlp.KIND_CLIENT,
                started,
                otlp.attributes(attrs),
                None if error is None else type(error).__name__,
            )

    def end(self, call: Call, error: BaseException | None) -> None:
        if isinstance(error, NotSent):  # the call goes another path, which traces it
            if self.recording:
                otel_context.detach(self._token)  # type: ignore[arg-type]
            request = self.request
            if request is not None and request.span is self.context:
                request.span = None
            self.generation.end()
            return
        if self.recording:
            outcome = call.outcome
            name = qualified(call.server, call.tool)
            items = _attributes(call, name, self.origin)
            items["mcpgw.outcome"] = outcome
            if self.generation.capture_bytes:
                _capture(items, call, self.generation.capture_bytes)
            failure = None
            if outcome != "ok":
                items["error.type"] = outcome
                failure = call.error or outcome
            parent = self.parent
            self._write(
                self.context.span_id,
                parent.span_id if parent is not None else None,
                f"tools/call {name}",
                otlp.KIND_SERVER,
                self.started,
                otlp.attributes(items),
                failure,
            )
            otel_context.detach(self._token)  # type: ignore[arg-type]
            self.generation.export(self.context, otlp.scope_spans_items(self._done))
        self.generation.end()

    def _write(
        self,
        span_id: int,
        parent_id: int | None,
        name: str,
        kind: int,
        started: int,
        attrs: bytes,
        error: str | None,
    ) -> None:
        context = self.context
        state = context.trace_state.to_header() if context.trace_state else None
        self._done.append(
            otlp.span(
                context.trace_id.to_bytes(16, "big"),
                span_id.to_bytes(8, "big"),
                None if parent_id is None else parent_id.to_bytes(8, "big"),
                name,
                kind,
                started,
                time.time_ns(),
                attrs,
                error,
                state,
            )
        )


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
        remote: SpanContext | None = None
        if parent is not None:
            remote = get_current_span(parent).get_span_context()
        else:
            # A REST request's span (gateway/observability/instruments.py), itself under
            # the agent's header, else that header.
            current = get_current_span().get_span_context()
            if current.is_valid:
                remote = current
            elif request is not None:
                parent = extract(request.incoming)
                if parent is not None:
                    remote = get_current_span(parent).get_span_context()
        # Parent-based sampling: an agent's decision is followed; a trace starting here
        # is recorded at the root ratio.
        if remote is not None:
            sampled = remote.trace_flags.sampled
        else:
            sampled = generation.ratio > 0.0 and random.random() < generation.ratio
        context = SpanContext(
            remote.trace_id if remote is not None else _new_id(128),
            _new_id(64),
            is_remote=False,
            trace_flags=_SAMPLED if sampled else _UNSAMPLED,
            trace_state=remote.trace_state if remote is not None else None,
        )
        generation.begin()
        if request is not None and request.span is None:
            request.span = context
        spans = Spans(generation, context, remote, sampled)
        spans.origin, spans.request = origin, request
        return spans


def _capture(items: dict[str, Any], call: Call, limit: int) -> None:
    """The call's payloads as span attributes: masked as the audit trail masks them
    (secret-named fields, token shapes, the server's own secrets), cut to ``limit``."""
    secrets = call.target.runtime.spec.secrets.values
    arguments = stored_json(call.arguments, secrets)
    if arguments is not None:
        items["mcpgw.request.arguments"] = arguments[:limit]
    if call.result is not None and not isinstance(call.result, bytes | bytearray):
        result = stored_json(call.result, secrets)
        if result is not None:
            items["mcpgw.response.result"] = result[:limit]


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
