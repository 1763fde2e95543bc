"""Spans from the OpenTelemetry instrumentation packages, in step with tracing.

``opentelemetry-instrumentation-fastapi`` (a SERVER span per REST request),
``-httpx`` (outgoing HTTP: identity providers' keys, skill catalogs, the model
endpoint), ``-sqlalchemy`` (SQL statements) and ``-redis`` (Redis commands) are
installed only while an exporter is configured, and removed when tracing is turned
off: an untraced gateway runs FastAPI, httpx, SQLAlchemy and redis-py unwrapped, so
they cost nothing per request, query or command then.

``-httpx`` is applied to ``httpx`` only, not to ``httpx2`` (the MCP SDK's client, which
the package can also wrap): a request to a remote backend already has the gateway's
CLIENT span (``tools/call {tool}``), whose context the backend receives; an HTTP span
under it would cost the SDK path a span per request and hand the backend another
parent. Not used: ``-celery``. Its publishing span is only ended for tasks registered in
Celery's *current* app, and the gateway sends jobs by name through an app that is not
current (the task lives in the worker): its spans would never end. The job's context
goes in the task's headers instead (gateway/jobs/bus.py, gateway/jobs/tracing.py).
``/mcp`` never meets the FastAPI instrumentation: it is served before FastAPI's stack
(gateway/app.py), and its spans are the MCP ones (gateway/servers/tracing.py).

The packages bind a tracer provider when instrumenting; exporters are swapped at run
time and tests run several gateways in one process, so the provider they get here
(:class:`RoutedProvider`) decides per span: the tracing configuration of the request
being served, else its own gateway's (REST requests) or the latest one enabled in
this process (the libraries, shared by the whole process). It asks the SDK only for
spans that will be recorded: a library's span only inside a sampled trace (never a
root of its own: the reaper's queries are not worth a trace), a REST request's span
under the agent's context or, with none, as a new trace at the root ratio.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import (
    INVALID_SPAN,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
    Tracer,
    TracerProvider,
    get_current_span,
    use_span,
)
from opentelemetry.util._decorator import _agnosticcontextmanager

from gateway.db import ENGINES
from gateway.observability.tracing import REQUEST_TRACE, Generation, Telemetry

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("gateway.telemetry")

# REST paths not worth a span: scrapes and probes (every few seconds), and the legacy
# SSE stream (open for the whole session).
EXCLUDED_URLS = "/metrics,/healthz,/readyz,/sse"
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_NO_METRICS = NoOpMeterProvider()  # the gateway's metrics are its own (/metrics)

# Telemetries with an exporter, in the order they were enabled (the libraries are
# instrumented while this is not empty).
_enabled: list[Telemetry] = []


def _latest() -> Generation | None:
    for telemetry in reversed(_enabled):
        if telemetry.generation is not None:
            return telemetry.generation
    return None


class RoutedTracer(Tracer):
    """A tracer whose spans go to the tracing configuration in force for them."""

    def __init__(
        self,
        scope: tuple[str, str | None, str | None],
        roots: bool,
        home: Callable[[], Generation | None],
    ) -> None:
        self._scope = scope
        self._roots = roots
        self._home = home

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = get_current_span(context).get_span_context()
        if parent.is_valid and not parent.trace_flags.sampled:
            # Not recorded: the trace's context still goes on (httpx sends it).
            return NonRecordingSpan(parent)
        request = REQUEST_TRACE.get()
        generation = request.generation if request is not None else None
        generation = generation or self._home()
        if generation is None:
            return NonRecordingSpan(parent) if parent.is_valid else INVALID_SPAN
        if not parent.is_valid:
            if not self._roots:
                return INVALID_SPAN
            if random.random() >= generation.ratio:
                # A trace that starts here, not recorded: its id is still handed on
                # (the call spans' rule, gateway/servers/tracing.py).
                unsampled = SpanContext(
                    random.getrandbits(128) or 1, random.getrandbits(64) or 1, False, _UNSAMPLED
                )
                return NonRecordingSpan(unsampled)
        return generation.library_tracer(*self._scope).start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @_agnosticcontextmanager  # as the API's tracers declare it (works with and without `with`)
    def start_as_current_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )
        with use_span(
            span,
            end_on_exit=end_on_exit,
            record_exception=record_exception,
            set_status_on_exception=set_status_on_exception,
        ) as current:
            yield current


class RoutedProvider(TracerProvider):
    """The tracer provider handed to the instrumentation packages (module docstring).

    ``roots``: may its spans start a trace (a REST request's) or only continue one
    (a library call's); ``home``: the configuration used outside a traced request."""

    def __init__(self, *, roots: bool, home: Callable[[], Generation | None]) -> None:
        self.roots = roots
        self.home = home

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Tracer:
        scope = (instrumenting_module_name, instrumenting_library_version, schema_url)
        return RoutedTracer(scope, self.roots, self.home)


_LIBRARIES = RoutedProvider(roots=False, home=_latest)
_libraries_on = False


def follow(telemetry: Telemetry, app: FastAPI | None = None) -> None:
    """Instrument the libraries (and ``app``'s REST requests) while ``telemetry`` has an
    exporter; remove the instrumentation when none has."""

    def changed(current: Telemetry) -> None:
        if current.enabled:
            _enable(current, app)
        else:
            _disable(current, app)

    telemetry.listeners.append(changed)
    changed(telemetry)


def _enable(telemetry: Telemetry, app: FastAPI | None) -> None:
    if telemetry not in _enabled:
        _enabled.append(telemetry)
    _instrument_libraries()
    if app is not None and not getattr(app, "_is_instrumented_by_opentelemetry", False):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=RoutedProvider(roots=True, home=lambda: telemetry.generation),
            meter_provider=_NO_METRICS,
            excluded_urls=EXCLUDED_URLS,
            # Spans per ASGI message would double the REST spans for nothing.
            exclude_spans=["receive", "send"],
        )
        # Starlette builds its stack once, on the first request: build it again.
        app.middleware_stack = app.build_middleware_stack()


def _disable(telemetry: Telemetry, app: FastAPI | None) -> None:
    if telemetry in _enabled:
        _enabled.remove(telemetry)
    if app is not None and getattr(app, "_is_instrumented_by_opentelemetry", False):
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.uninstrument_app(app)  # rebuilds the stack without it
    if not _enabled:
        _uninstrument_libraries()


def _instrument_libraries() -> None:
    global _libraries_on
    if _libraries_on:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    HTTPXClientInstrumentor().instrument(tracer_provider=_LIBRARIES, meter_provider=_NO_METRICS)
    RedisInstrumentor().instrument(tracer_provider=_LIBRARIES)
    _instrument_sql()
    ENGINES.on_add = _reinstrument_sql
    _libraries_on = True


def _uninstrument_libraries() -> None:
    global _libraries_on
    if not _libraries_on:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    ENGINES.on_add = None
    HTTPXClientInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    SQLAlchemyInstrumentor().uninstrument()
    _libraries_on = False


def _instrument_sql() -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # The engines are made before tracing starts (and by name, so the package's
    # create_engine wrapper never sees them): each is handed over explicitly. The
    # package declares SQLAlchemy < 2.1 and would refuse 2.1 without a word; the
    # events it listens to are the same in 2.1 (tests/integration/observability/
    # test_spans.py reads its spans), so its version check is skipped.
    SQLAlchemyInstrumentor().instrument(
        engines=ENGINES.all(),
        tracer_provider=_LIBRARIES,
        meter_provider=_NO_METRICS,
        skip_dep_check=True,
    )


def _reinstrument_sql() -> None:
    """An engine made while tracing is on (a worker's, a test's): instrument it too."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    SQLAlchemyInstrumentor().uninstrument()
    _instrument_sql()


__all__ = ["EXCLUDED_URLS", "RoutedProvider", "RoutedTracer", "follow"]
