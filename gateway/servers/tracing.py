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
from opentelemetry.trace import (
    DEFAULT_TRACE_STATE,
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    TraceState,
    get_current_span,
)
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
    if type(meta) is dict:  # the usual case, without the ABC check below
        if not isinstance(meta.get(TRACEPARENT), str):
            return None
    elif not isinstance(meta, Mapping):
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


class Unrecorded:
    """One call traced but not recorded (sampled out): ids only
    (:class:`gateway.servers.pipeline.CallTrace`).

    Its trace id still goes to the backend, the audit row, the logs and the response, so
    a call costs what those need and no more (issue 20's budget: +10% at 0% sampling):
    two random ids, the trace id in hex and one preformatted ``traceparent``, which is
    both the response's header and the backend's parent (no span is recorded between
    them). No SDK object, no context attached, no stage spans."""

    __slots__ = (
        "_outgoing",
        "carrier",
        "context",
        "generation",
        "header",
        "request",
        "state",
        "trace_id",
    )

    recording = False

    def __init__(
        self,
        generation: Generation,
        context: SpanContext,
        trace_id: str,
        header: str,
        request: RequestTrace | None,
        state: str | None = None,
    ) -> None:
        self.generation = generation
        self.context = context
        self.trace_id = trace_id
        self.header = header  # the call's own `traceparent`
        self.request = request
        self.state = state  # the `tracestate` carried on (an agent's), if any
        self.carrier: dict[str, str] | None = None
        self._outgoing: Token[dict[str, str] | None] | None = None

    def stage(self, name: str) -> Any:
        return None

    def done(self, span: Any, error: BaseException | None) -> None:
        return None

    def backend(self, call: Call) -> None:
        carrier = {TRACEPARENT: self.header}
        if self.state:
            carrier[TRACESTATE] = self.state
        self.carrier = carrier
        if call.route != "direct":  # the fast path sends `carrier` itself (fastpath.py)
            self._outgoing = OUTGOING.set(carrier)  # for the SDK client (sdk_client.py)

    def backend_done(self, error: BaseException | None) -> None:
        if self._outgoing is not None:
            OUTGOING.reset(self._outgoing)
            self._outgoing = None

    def end(self, call: Call, error: BaseException | None) -> None:
        if isinstance(error, NotSent):  # the call goes another path, which traces it
            self._unserve()
        self.generation.end()

    def _unserve(self) -> None:
        request = self.request
        if request is not None and request.span is self.context:
            request.span = request.header = None


class Spans(Unrecorded):
    """One recorded (sampled) call's spans (:class:`gateway.servers.pipeline.CallTrace`),
    written as OTLP protobuf (gateway/observability/otlp.py) as each ends and queued for
    export when the call ends: the call's SERVER span, a span per acting stage and the
    backend's CLIENT span. What every span of the call shares (trace id, trace state) is
    encoded once per call; attributes that repeat call after call once per process."""

    __slots__ = (
        "_backend",
        "_backend_token",
        "_done",
        "_head",
        "_token",
        "_tool",
        "origin",
        "parent",
        "started",
    )

    recording = True

    def __init__(
        self,
        generation: Generation,
        context: SpanContext,
        trace_id: str,
        header: str,
        request: RequestTrace | None,
        state: str | None,
        parent: SpanContext | None,
    ) -> None:
        super().__init__(generation, context, trace_id, header, request, state)
        self.parent = parent
        self._backend: tuple[int, int] | None = None  # (span id, start ns)
        self._backend_token: object = None
        self._done: list[bytes] = []
        self._tool: str | None = None
        self.origin: TraceOrigin | None = None
        self.started = time.time_ns()
        self._head = otlp.span_head(context.trace_id.to_bytes(16, "big"), state)
        # Current while the call runs: log lines inside it carry its ids, and the
        # instrumentation packages' spans (httpx, SQL) nest under it.
        self._token = otel_context.attach(with_span(NonRecordingSpan(context)))

    def stage(self, name: str) -> tuple[str, int, int] | None:
        if name not in _SPANNED:
            return None
        return name, _new_id(64), time.time_ns()

    def done(self, span: Any, error: BaseException | None) -> None:
        if span is None:
            return
        name, span_id, started = span
        attrs = b""
        if error is not None:
            attrs = otlp.attribute("error.type", getattr(error, "code", type(error).__name__))
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
        client_id = _new_id(64)
        self._backend = (client_id, time.time_ns())
        self._tool = call.tool
        carrier = {TRACEPARENT: f"00-{self.trace_id}-{client_id:016x}-01"}
        if self.state:
            carrier[TRACESTATE] = self.state
        self.carrier = carrier
        if call.route != "direct":
            self._outgoing = OUTGOING.set(carrier)
            # Current for the backend stage: the SDK client's own `_meta` injection
            # (mcp.shared._otel) names the current span as the backend's parent. The
            # fast path sends the carrier itself and runs no library in between.
            client = _context(context.trace_id, client_id, _SAMPLED, context.trace_state)
            self._backend_token = otel_context.attach(with_span(NonRecordingSpan(client)))

    def backend_done(self, error: BaseException | None) -> None:
        if self._outgoing is not None:
            OUTGOING.reset(self._outgoing)
            self._outgoing = None
        backend = self._backend
        if backend is not None:
            self._backend = None
            if self._backend_token is not None:
                otel_context.detach(self._backend_token)  # type: ignore[arg-type]
                self._backend_token = None
            client_id, started = backend
            tool = self._tool or ""
            attrs = _client_attributes(tool)
            if error is not None:
                attrs += otlp.attribute("error.type", type(error).__name__)
            self._write(
                client_id,
                self.context.span_id,
                f"tools/call {tool}",
                otlp.KIND_CLIENT,
                started,
                attrs,
                None if error is None else type(error).__name__,
            )

    def end(self, call: Call, error: BaseException | None) -> None:
        otel_context.detach(self._token)
        if isinstance(error, NotSent):  # the call goes another path, which traces it
            self._unserve()
            self.generation.end()
            return
        outcome = call.outcome
        name = qualified(call.server, call.tool)
        attrs = _call_attributes(call, name, outcome) + _origin_attributes(self.origin)
        if self.generation.capture_bytes:
            attrs += _capture(call, self.generation.capture_bytes)
        failure = None
        if outcome != "ok":
            attrs += otlp.attribute("error.type", outcome)
            failure = call.error or outcome
        parent = self.parent
        self._write(
            self.context.span_id,
            parent.span_id if parent is not None else None,
            f"tools/call {name}",
            otlp.KIND_SERVER,
            self.started,
            attrs,
            failure,
        )
        # The spans go out as they are: the batch processor's thread wraps a batch of
        # calls in one request (otlp.EncodedBatches).
        self.generation.export(self.context, b"".join(self._done))
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
        self._done.append(
            otlp.span_item(
                self._head,
                span_id.to_bytes(8, "big"),
                None if parent_id is None else parent_id.to_bytes(8, "big"),
                name,
                kind,
                started,
                time.time_ns(),
                attrs,
                error,
            )
        )


def _context(trace_id: int, span_id: int, flags: TraceFlags, state: TraceState) -> SpanContext:
    """A local :class:`SpanContext` without the SDK's checks, which cost a µs per call:
    the ids here are made non-zero (or come from a valid parent), as it would check."""
    return tuple.__new__(SpanContext, (trace_id, span_id, False, flags, state, True))


def _remote(
    origin: TraceOrigin | None, request: RequestTrace | None, direct: bool
) -> SpanContext | None:
    """The call's parent: the agent's context in `params._meta`, else a REST request's
    span (gateway/observability/instruments.py, itself under the agent's header), else
    the agent's HTTP header; None: the trace starts here. A fast-path call (``direct``)
    has no current span to look up: `/mcp` is served before FastAPI's stack."""
    parent = extract(_meta_carrier(origin.meta) if origin is not None else None)
    if parent is None:
        if not direct:
            current = get_current_span().get_span_context()
            if current.is_valid:
                return current
        if request is None or request.incoming is None:
            return None
        parent = extract(request.incoming)
        if parent is None:
            return None
    return get_current_span(parent).get_span_context()


class CallTracer:
    """Starts each call's :class:`Spans` or :class:`Unrecorded`
    (:class:`gateway.servers.pipeline.CallTracer`)."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def begin(self, call: Call) -> Unrecorded | None:
        generation = self.telemetry.generation
        if generation is None:
            return None
        origin: TraceOrigin | None = call.origin.trace_origin() if call.origin else None
        request = origin.request if origin is not None else REQUEST_TRACE.get()
        remote = _remote(origin, request, call.route == "direct")
        # Parent-based sampling: an agent's decision is followed; a trace starting here
        # is recorded at the root ratio.
        state_header = None
        if remote is not None:
            sampled = remote.trace_flags.sampled
            trace_id, state = remote.trace_id, remote.trace_state
            state_header = state.to_header() if state else None
        else:
            ratio = generation.ratio
            sampled = ratio > 0.0 and random.random() < ratio
            trace_id, state = _new_id(128), DEFAULT_TRACE_STATE
        span_id = _new_id(64)
        context = _context(trace_id, span_id, _SAMPLED if sampled else _UNSAMPLED, state)
        hex_id = f"{trace_id:032x}"
        header = f"00-{hex_id}-{span_id:016x}-{'01' if sampled else '00'}"
        generation.begin()
        if request is not None and request.span is None:
            request.span, request.header = context, header
        if not sampled:
            return Unrecorded(generation, context, hex_id, header, request, state_header)
        spans = Spans(generation, context, hex_id, header, request, state_header, remote)
        spans.origin = origin
        return spans


def _call_attributes(call: Call, name: str, outcome: str) -> bytes:
    """The call span's attributes that repeat call after call (MCP semantic conventions,
    and the gateway's own), encoded once per server, tool, route and outcome."""
    key = (name, call.server, call.route, call.via, outcome)
    found = _CALL_ATTRIBUTES.get(key)
    if found is None:
        attributes: dict[str, Any] = {
            "mcp.method.name": "tools/call",
            "gen_ai.tool.name": name,
            "gen_ai.operation.name": "execute_tool",
            "mcpgw.server": call.server,
            "mcpgw.route": _ROUTES[call.route],
        }
        if call.via:
            attributes["mcpgw.via"] = call.via
        attributes["mcpgw.outcome"] = outcome
        found = otlp.attributes(attributes)
        if len(_CALL_ATTRIBUTES) >= _ATTRIBUTES_MAX:
            _CALL_ATTRIBUTES.clear()
        _CALL_ATTRIBUTES[key] = found
    return found


def _client_attributes(tool: str) -> bytes:
    """The backend CLIENT span's attributes, encoded once per backend tool."""
    found = _CLIENT_ATTRIBUTES.get(tool)
    if found is None:
        found = otlp.attributes(
            {
                "mcp.method.name": "tools/call",
                "gen_ai.tool.name": tool,
                "gen_ai.operation.name": "execute_tool",
            }
        )
        if len(_CLIENT_ATTRIBUTES) >= _ATTRIBUTES_MAX:
            _CLIENT_ATTRIBUTES.clear()
        _CLIENT_ATTRIBUTES[tool] = found
    return found


def _origin_attributes(origin: TraceOrigin | None) -> bytes:
    """The call span's attributes from its request: session and protocol version
    (encoded once per session), the JSON-RPC request id (per call)."""
    if origin is None:
        return b""
    key = (origin.session_id, origin.protocol_version)
    attrs = _ORIGIN_ATTRIBUTES.get(key)
    if attrs is None:
        attrs = b""
        if origin.session_id:
            attrs += otlp.attribute("mcp.session.id", origin.session_id, cache=False)
        if origin.protocol_version:
            attrs += otlp.attribute("mcp.protocol.version", origin.protocol_version)
        if len(_ORIGIN_ATTRIBUTES) >= _ATTRIBUTES_MAX:
            _ORIGIN_ATTRIBUTES.clear()
        _ORIGIN_ATTRIBUTES[key] = attrs
    if origin.request_id is not None:
        attrs += otlp.attribute("jsonrpc.request.id", str(origin.request_id), cache=False)
    return attrs


# Encoded attribute sets by what they depend on; bounded (names come from catalogs).
_CALL_ATTRIBUTES: dict[tuple[str, str, str, str | None, str], bytes] = {}
_CLIENT_ATTRIBUTES: dict[str, bytes] = {}
_ORIGIN_ATTRIBUTES: dict[tuple[str | None, str | None], bytes] = {}
_ATTRIBUTES_MAX = 4096


def _capture(call: Call, limit: int) -> bytes:
    """The call's payloads as span attributes: masked as the audit trail masks them
    (secret-named fields, token shapes, the server's own secrets), cut to ``limit``."""
    secrets = call.target.runtime.spec.secrets.values
    attrs = b""
    arguments = stored_json(call.arguments, secrets)
    if arguments is not None:
        attrs += otlp.attribute("mcpgw.request.arguments", arguments[:limit], cache=False)
    if call.result is not None and not isinstance(call.result, bytes | bytearray):
        result = stored_json(call.result, secrets)
        if result is not None:
            attrs += otlp.attribute("mcpgw.response.result", result[:limit], cache=False)
    return attrs


def _new_id(bits: int) -> int:
    """A random, non-zero trace (128) or span (64) id, as the SDK's generator makes them."""
    return random.getrandbits(bits) or 1


def install(pipeline: Pipeline, telemetry: Telemetry) -> None:
    """Keep ``pipeline``'s tracing hook in step with ``telemetry``: installed while an
    exporter is configured, removed (nothing per call) while none is."""
    tracer = CallTracer(telemetry)

    def follow(current: Telemetry) -> None:
        pipeline.trace(tracer if current.enabled else None)

    telemetry.listeners.append(follow)
    follow(telemetry)


__all__ = ["CallTracer", "Spans", "Unrecorded", "install"]
