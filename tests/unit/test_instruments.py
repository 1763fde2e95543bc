"""The instrumentation packages follow tracing: nothing is wrapped while it is off
(an untraced gateway runs FastAPI, httpx, SQLAlchemy and redis-py as they are), and
their spans are recorded only inside sampled traces (or, for a REST request, as a
new trace at the root ratio).

In-process, with the SDK's in-memory exporter (unit scope: the OTLP wire is covered
by tests/integration/observability/)."""

from __future__ import annotations

import httpx
import redis
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    get_current_span,
    use_span,
)
from sqlalchemy.engine import Engine

from gateway.db import ENGINES, Database
from gateway.observability import instruments
from gateway.observability.tracing import Telemetry


def _wrapped() -> dict[str, bool]:
    return {
        "httpx": hasattr(httpx.AsyncHTTPTransport.handle_async_request, "__wrapped__"),
        "redis": hasattr(redis.Redis.execute_command, "__wrapped__"),
    }


def _telemetry(exporter: InMemorySpanExporter, ratio: float) -> Telemetry:
    telemetry = Telemetry()
    telemetry.configure(exporter, sample_ratio=ratio, processor=SimpleSpanProcessor)
    return telemetry


def _listens(engine: Engine) -> bool:
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from sqlalchemy import event

    return any(
        event.contains(engine, name, fn)
        for ref, name, fn in EngineTracer._remove_event_listener_params
        if ref() is engine
    )


def test_nothing_is_wrapped_while_tracing_is_off(tmp_path: object) -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    app = FastAPI()
    telemetry = Telemetry()
    instruments.follow(telemetry, app)
    assert _wrapped() == {"httpx": False, "redis": False}
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)

    exporter = InMemorySpanExporter()
    telemetry.configure(exporter, sample_ratio=1.0, processor=SimpleSpanProcessor)
    assert _wrapped() == {"httpx": True, "redis": True}
    assert app._is_instrumented_by_opentelemetry  # type: ignore[attr-defined]
    assert _listens(db.engine.sync_engine)
    later = Database("sqlite+aiosqlite:///:memory:")  # made while on: instrumented too
    assert _listens(later.engine.sync_engine) and _listens(db.engine.sync_engine)

    telemetry.configure(None)
    assert _wrapped() == {"httpx": False, "redis": False}
    assert not app._is_instrumented_by_opentelemetry  # type: ignore[attr-defined]
    assert not _listens(db.engine.sync_engine) and not _listens(later.engine.sync_engine)
    assert ENGINES.on_add is None
    telemetry.shutdown()


def test_library_spans_only_inside_sampled_traces() -> None:
    exporter = InMemorySpanExporter()
    telemetry = _telemetry(exporter, 1.0)
    instruments.follow(telemetry)
    try:
        tracer = instruments.RoutedProvider(roots=False, home=lambda: telemetry.generation)
        library = tracer.get_tracer("lib")
        # No trace: no span of its own, even at 100 %.
        assert not library.start_span("SELECT").get_span_context().is_valid
        unsampled = SpanContext(5, 6, False, TraceFlags(TraceFlags.DEFAULT))
        with use_span(NonRecordingSpan(unsampled)):
            span = library.start_span("SELECT")
            assert not span.is_recording()
            assert span.get_span_context() == unsampled  # handed on as it is
        sampled = SpanContext(7, 8, False, TraceFlags(TraceFlags.SAMPLED))
        with (
            use_span(NonRecordingSpan(sampled)),
            library.start_as_current_span("SELECT") as span,
        ):
            assert span.is_recording()
            assert get_current_span() is span
        (finished,) = exporter.get_finished_spans()
        assert finished.parent is not None and finished.parent.span_id == 8
        assert finished.instrumentation_scope is not None
        assert finished.instrumentation_scope.name == "lib"
    finally:
        telemetry.shutdown()


def test_request_spans_start_traces_at_the_root_ratio() -> None:
    exporter = InMemorySpanExporter()
    telemetry = _telemetry(exporter, 0.0)
    try:
        requests = instruments.RoutedProvider(roots=True, home=lambda: telemetry.generation)
        span = requests.get_tracer("fastapi").start_span("GET /x")
        # 0 %: not recorded, but a trace id all the same (handed on, logged).
        assert not span.is_recording() and span.get_span_context().is_valid
        assert not span.get_span_context().trace_flags.sampled
        telemetry.configure(exporter, sample_ratio=1.0, processor=SimpleSpanProcessor)
        span = requests.get_tracer("fastapi").start_span("GET /x")
        assert span.is_recording()
        span.end()
        telemetry.configure(None)  # off: nothing at all
        assert not requests.get_tracer("fastapi").start_span("GET /x").get_span_context().is_valid
    finally:
        telemetry.shutdown()


def test_redis_and_httpx_calls_in_a_sampled_trace_get_spans() -> None:
    """Real Redis (the machine's, 127.0.0.1:6379) and a real HTTP server on loopback:
    inside a sampled trace each command and request is a CLIENT span under it, and the
    request carries the trace on (httpx's instrumentation injects `traceparent`)."""
    import os
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[str | None] = []

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("traceparent"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    http = HTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    exporter = InMemorySpanExporter()
    telemetry = _telemetry(exporter, 0.0)  # 0 %: only the agent's sampled trace records
    instruments.follow(telemetry)
    url = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    try:
        client.ping()  # outside any trace: no span
        agent = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED))
        with use_span(NonRecordingSpan(agent)):
            client.set("mcpgw-test-instruments", "1", ex=5)
            httpx.get(f"http://127.0.0.1:{http.server_address[1]}/x", timeout=5)
        spans = exporter.get_finished_spans()
        assert [s.name for s in spans] == ["SET", "GET"]
        assert {s.context.trace_id for s in spans} == {0xABC}
        assert all(s.parent is not None and s.parent.span_id == 0xDEF for s in spans)
        assert spans[0].attributes is not None and spans[0].attributes["db.system"] == "redis"
        traceparent = seen[-1]
        assert traceparent is not None
        assert traceparent.split("-")[1:3] == [f"{0xABC:032x}", f"{spans[1].context.span_id:016x}"]
    finally:
        client.close()
        http.shutdown()
        telemetry.shutdown()


def test_a_library_span_open_across_an_exporter_switch_ends_on_the_old_one() -> None:
    """The replaced exporter is shut only once the SDK spans begun under it have ended
    (tracing._InFlight): switching loses no span."""
    old, new = InMemorySpanExporter(), InMemorySpanExporter()
    telemetry = _telemetry(old, 0.0)
    try:
        library = instruments.RoutedProvider(roots=False, home=lambda: telemetry.generation)
        agent = SpanContext(0x1, 0x2, True, TraceFlags(TraceFlags.SAMPLED))
        with use_span(NonRecordingSpan(agent)):
            span = library.get_tracer("lib").start_span("SELECT")
        retired = telemetry.generation
        telemetry.configure(new, sample_ratio=0.0, processor=SimpleSpanProcessor)
        assert retired is not None and retired.retired and not retired._closed
        span.end()
        assert [s.name for s in old.get_finished_spans()] == ["SELECT"]
        assert retired._closed  # shut once its last span ended
        assert not new.get_finished_spans()
    finally:
        telemetry.shutdown()
