"""Tracing with the OpenTelemetry SDK: off until an exporter is configured, swappable
at run time, W3C trace context in and out.

Nothing here runs per call while tracing is off: the call pipeline holds no tracer
then (gateway/servers/tracing.py is installed only while :attr:`Telemetry.generation`
is set), and the request middleware checks one attribute. The SDK provides the
configuration, the batch processor and the OTLP exporters; the call spans themselves
are written as OTLP protobuf by the call tracer (gateway/observability/otlp.py says
why), other spans (the test span) are SDK spans. Spans follow the OpenTelemetry
semantic conventions for MCP (semantic-conventions-genai v0.1.0, `docs/gen-ai/mcp.md`,
status Development).

The gateway keeps a tracer provider of its own rather than the process-global one:
the global can be set once per process, and the exporter must be swappable (and
tests run several gateways in one process). Each configuration is a
:class:`Generation`; replacing it retires the old one, which is shut down (its queued
spans flushed to the old exporter) once the calls that began under it have ended.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    get_current_span,
    use_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway import __version__
from gateway.observability.log_export import LogExport
from gateway.observability.metric_export import MetricExport
from gateway.observability.otlp import (
    EncodedBatches,
    EncodedGrpcExporter,
    EncodedHttpExporter,
    EncodedSpans,
)

log = logging.getLogger("gateway.telemetry")

SERVICE_NAME = "mcp-gateway"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_PROPAGATOR = TraceContextTextMapPropagator()
# Seconds a retired generation waits for its calls before it is shut down anyway.
RETIRE_GRACE = 600.0


@dataclass(slots=True)
class RequestTrace:
    """One HTTP request's trace, while tracing is on (set by the request middleware).

    ``incoming``: the agent's ``traceparent``/``tracestate`` headers; ``span``: the
    context of the span that served the request (the call's), once there is one, for
    the response's ``traceparent`` header and the access log line."""

    incoming: dict[str, str] | None = None
    span: SpanContext | None = None
    generation: Generation | None = None  # the tracing configuration it began under
    # ``span`` as a ``traceparent`` value, when whoever set it had it formatted already
    # (the call tracer: the same string goes to the backend).
    header: str | None = None

    def served(self, current: bool = False) -> str | None:
        """The response's ``traceparent``: the serving span's context (the call's, else,
        with ``current``, the REST request's span current while the response starts),
        or, when the response starts before the call does (an SDK session's event
        stream), the agent's own (same trace)."""
        if self.span is not None:
            return self.header or traceparent(self.span)
        if current:
            context = get_current_span().get_span_context()
            if context.is_valid:
                return traceparent(context)
        if self.incoming is not None and extract(self.incoming) is not None:
            return self.incoming[TRACEPARENT]
        return None


# Where the request middleware keeps the RequestTrace in the ASGI scope's state: for
# handlers that run outside the request's context (the SDK's 2025-11-25 sessions).
TRACE_STATE_KEY = "trace"
REQUEST_TRACE: ContextVar[RequestTrace | None] = ContextVar("mcpgw_request_trace", default=None)
# The context a backend request carries on (``_meta`` and headers), set by the call
# pipeline's tracer for the backend stage; read by the SDK client's request hook.
OUTGOING: ContextVar[dict[str, str] | None] = ContextVar("mcpgw_trace_outgoing", default=None)


@contextmanager
def operation(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    request: RequestTrace | None = None,
    meta: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span | None]:
    """A span for work that is not a tool call through the pipeline (a resource read, a
    prompt, a pillar's tool, a skill load, a sandbox's exec or files), made current so
    that what runs inside nests under it. Its parent: the span being served, else the
    agent's W3C context (``meta``: a request's ``params._meta``; then the request's
    headers); with none, a new trace at the configured ratio. Nothing (None) while
    tracing is off or outside a traced request: one context-variable read."""
    request = request or REQUEST_TRACE.get()
    generation = request.generation if request is not None else None
    if request is None or generation is None or generation.retired:
        yield None
        return
    parent: Context | None = None
    top = not get_current_span().get_span_context().is_valid
    if top:
        parent = extract(_meta_carrier(meta)) or extract(request.incoming)
        if parent is None and random.random() >= generation.ratio:
            yield None
            return
    generation.begin()
    try:
        with generation.tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=attributes
        ) as span:
            # The span serving the request (the response names it), unless it nests
            # in one already: a REST request's own (instruments.py).
            if top and request.span is None and span.is_recording():
                request.span = span.get_span_context()
            yield span
    finally:
        generation.end()


@contextmanager
def detached(
    telemetry: Telemetry | None,
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    carrier: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    fresh: bool = False,
) -> Iterator[Span | None]:
    """A span for work no request waits on (a worker's job, a backend's reconnection),
    made current. Its parent: the W3C ``carrier`` (a job's task headers), else the
    current span (unless ``fresh``: a reconnection belongs to no call, whatever the
    task it runs in began under), else none: a new trace, recorded at the root ratio.
    An unrecorded new trace is still made current (its id is handed on), so the spans
    inside decide alike. Nothing (None) while tracing is off."""
    generation = telemetry.generation if telemetry is not None else None
    if generation is None:
        yield None
        return
    parent = extract(carrier)
    if parent is None and (fresh or not get_current_span().get_span_context().is_valid):
        if random.random() >= generation.ratio:
            unsampled = SpanContext(_new_id(128), _new_id(64), False, _UNSAMPLED)
            with use_span(NonRecordingSpan(unsampled)):
                yield None
            return
        parent = Context()  # a root, whatever is current
    generation.begin()
    try:
        with generation.tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=attributes
        ) as span:
            yield span
    finally:
        generation.end()


def current_carrier() -> dict[str, str] | None:
    """The W3C context of what is being served (the current span, else the request's
    span or the agent's context), for a message that carries it on (a job's task
    headers); None when nothing is traced (always, while tracing is off)."""
    context = get_current_span().get_span_context()
    if not context.is_valid:
        request = REQUEST_TRACE.get()
        if request is None:
            return None
        if request.span is None:
            incoming = request.incoming
            return dict(incoming) if incoming and extract(incoming) is not None else None
        context = request.span
    carrier = {TRACEPARENT: traceparent(context)}
    if context.trace_state:
        carrier[TRACESTATE] = context.trace_state.to_header()
    return carrier


_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)


def _new_id(bits: int) -> int:
    return random.getrandbits(bits) or 1


def _meta_carrier(meta: Mapping[str, Any] | None) -> dict[str, str] | None:
    if not meta or not isinstance(meta.get(TRACEPARENT), str):
        return None
    state = meta.get(TRACESTATE)
    carrier = {TRACEPARENT: meta[TRACEPARENT]}
    if isinstance(state, str):
        carrier[TRACESTATE] = state
    return carrier


def extract(carrier: Mapping[str, str] | None) -> Context | None:
    """The remote parent named by a W3C carrier (``traceparent``, ``tracestate``), or
    None when it names none (absent or malformed: the call starts a trace)."""
    if not carrier or TRACEPARENT not in carrier:
        return None
    context = _PROPAGATOR.extract(carrier)
    if not get_current_span(context).get_span_context().is_valid:
        return None
    return context


def traceparent(context: SpanContext) -> str:
    """``context`` as a W3C ``traceparent`` value."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of what is being served, for log lines: the span of
    the call in progress, else the request's span or the agent's incoming context."""
    context = get_current_span().get_span_context()
    if not context.is_valid:
        request = REQUEST_TRACE.get()
        if request is None:
            return None
        if request.span is not None:
            context = request.span
        else:
            parent = extract(request.incoming)
            if parent is None:
                return None
            context = get_current_span(parent).get_span_context()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def current_trace_id() -> str | None:
    """The trace id of what is being served (:func:`current_ids`), for audit rows."""
    ids = current_ids()
    return ids[0] if ids is not None else None


@dataclass(eq=False)
class Generation:
    """One tracer provider (one exporter configuration) and the calls begun under it."""

    provider: TracerProvider
    tracer: Tracer
    description: str
    ratio: float = 1.0  # of traces starting here, the share recorded (the root sampler)
    processor: Any = None  # the batch processor the call spans are queued in
    capture_bytes: int = 0  # payloads on spans, cut to this many bytes (0: none)

    def export(self, context: SpanContext, data: bytes) -> None:
        """Queue one call's encoded spans (gateway/observability/otlp.py) for export."""
        self.processor.on_end(EncodedSpans(context, data))

    active: int = 0
    retired: bool = False
    _closed: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # The instrumentation packages' tracers (gateway/observability/instruments.py).
    _libraries: dict[tuple[str, str | None, str | None], Tracer] = field(default_factory=dict)

    def library_tracer(self, name: str, version: str | None, schema_url: str | None) -> Tracer:
        """The tracer of one instrumentation package (its own scope) on this provider."""
        key = (name, version, schema_url)
        tracer = self._libraries.get(key)
        if tracer is None:
            tracer = self._libraries[key] = self.provider.get_tracer(name, version, schema_url)
        return tracer

    def begin(self) -> None:
        self.active += 1

    def end(self) -> None:
        self.active -= 1
        if self.retired and self.active <= 0:
            self.close()

    def close(self) -> None:
        """Shut the provider down (flushing its queue to its exporter), in a thread: an
        export waits on the network. Once only."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        threading.Thread(target=self.provider.shutdown, name="otel-retire", daemon=True).start()


class Telemetry:
    """The gateway's tracing: which exporter, which sampling, the current tracer.

    ``tracer`` is None while no exporter is configured; listeners (the call pipeline)
    are told whenever it changes, so they can install or remove their hook."""

    def __init__(self) -> None:
        self.generation: Generation | None = None
        self.logs = LogExport()  # log lines as OTLP logs, when configured
        # Metrics pushed as OTLP, when configured (the app sets it: it owns the registry).
        self.metric_export: MetricExport | None = None
        self.listeners: list[Callable[[Telemetry], None]] = []
        self._retiring: set[Generation] = set()

    @property
    def enabled(self) -> bool:
        return self.generation is not None

    def configure(
        self,
        exporter: SpanExporter | None,
        *,
        sample_ratio: float = 0.01,
        description: str = "custom",
        attributes: Mapping[str, Any] | None = None,
        processor: Callable[[SpanExporter], Any] | None = None,
        capture_bytes: int = 0,
    ) -> None:
        """Export to ``exporter`` from now on (None: tracing off). Spans of calls that
        began before still end on the old exporter, which is then flushed and shut."""
        new: Generation | None = None
        if exporter is not None:
            resource = Resource.create(
                {"service.name": SERVICE_NAME, "service.version": __version__, **(attributes or {})}
            )
            # The call tracer samples (parent-based, root ratio: gateway/servers/tracing.py)
            # and asks the SDK only for the spans it records, so the SDK's root sampler
            # must not decide a second time.
            provider = TracerProvider(sampler=ParentBased(ALWAYS_ON), resource=resource)
            if isinstance(exporter, EncodedHttpExporter | EncodedGrpcExporter):
                exporter.batches = EncodedBatches(resource, ("mcp-gateway", __version__))
            queue = (processor or _batch)(exporter)
            provider.add_span_processor(queue)
            tracer = provider.get_tracer("mcp-gateway", __version__)
            new = Generation(provider, tracer, description, sample_ratio, queue, capture_bytes)
            provider.add_span_processor(_InFlight(new))
        old, self.generation = self.generation, new
        for listener in list(self.listeners):
            listener(self)
        if old is not None:
            self.retire(old)
        log.info(
            "tracing configured" if new else "tracing off",
            extra={"exporter": description if new else None, "sample_ratio": sample_ratio},
        )

    def retire(self, generation: Generation) -> None:
        generation.retired = True
        if generation.active <= 0:
            generation.close()
            return
        self._retiring.add(generation)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(RETIRE_GRACE, self._force_close, generation)

    def _force_close(self, generation: Generation) -> None:
        self._retiring.discard(generation)
        generation.close()

    def flush(self, timeout_ms: int = 5000) -> bool:
        """Export every finished span now (blocking); True when all went out."""
        generation = self.generation
        logs = self.logs.flush(timeout_ms)
        return (generation is None or generation.provider.force_flush(timeout_ms)) and logs

    def shutdown(self) -> None:
        """Flush and stop every generation (the app's end)."""
        self.logs.shutdown()
        if self.metric_export is not None:
            self.metric_export.shutdown()
        generations = [g for g in (self.generation, *self._retiring) if g is not None]
        self.generation = None
        self._retiring.clear()
        for listener in list(self.listeners):  # hooks and instrumentation come off
            listener(self)
        for generation in generations:
            generation.provider.shutdown()


class _InFlight(SpanProcessor):
    """Counts the SDK spans open under a generation (an instrumentation package's, an
    operation's), so that a replaced exporter is shut only once they have ended."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        self.generation.begin()

    def on_end(self, span: ReadableSpan) -> None:
        self.generation.end()


def _batch(exporter: SpanExporter) -> BatchSpanProcessor:
    # Spans are exported off the request path, in the processor's own thread.
    return BatchSpanProcessor(exporter, max_queue_size=8192, schedule_delay_millis=1000)
