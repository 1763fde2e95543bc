"""The call tracer's two kinds of call: unrecorded (ids only) and recorded (spans).

Real parts: the call pipeline with its `Authorize` stage, the gateway's request
middleware, the SDK's span processor and the real `opentelemetry-proto` messages the
spans are decoded with; the exporter keeps what it is given instead of sending it (the
integration tests send it to an OTLP receiver).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from gateway.auth.principal import Principal
from gateway.middleware import RequestContextMiddleware
from gateway.observability import otlp
from gateway.observability.tracing import OUTGOING, TRACE_STATE_KEY, Telemetry
from gateway.servers.calls import CallTarget
from gateway.servers.pipeline import Authorize, Call, Pipeline, TraceOrigin
from gateway.servers.tracing import Spans, Unrecorded, install

AGENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
AGENT_PARENT = f"00-{AGENT_TRACE}-b7ad6b7169203331-01"


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.items: list[Any] = []

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        self.items.extend(spans)
        return SpanExportResult.SUCCESS


class _Origin:
    def __init__(self, scope: MutableMapping[str, Any], meta: dict[str, Any] | None) -> None:
        self.scope, self.meta = scope, meta

    def trace_origin(self) -> TraceOrigin:
        return TraceOrigin(self.meta, self.scope["state"].get(TRACE_STATE_KEY), "s1", 7, "v")


async def _serve(
    ratio: float, route: str, meta: dict[str, Any] | None = None
) -> tuple[Call, list[tuple[bytes, bytes]], dict[str, str] | None, _Keep]:
    """One call through the middleware and the pipeline, traced at ``ratio``: the call,
    the response headers, the context the SDK client would have sent, what was kept."""
    telemetry, kept = Telemetry(), _Keep()
    telemetry.configure(kept, sample_ratio=ratio, processor=SimpleSpanProcessor)
    pipeline = Pipeline({"authorize": Authorize()})
    install(pipeline, telemetry)
    principal = Principal("u", "u@x", "u", "developer", "k", ("*",))
    calls: list[Call] = []
    outgoing: list[dict[str, str] | None] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        target = CallTarget("srv", "echo", None)  # type: ignore[arg-type]
        call = Call(principal, target, {}, route, origin=_Origin(scope, meta))  # type: ignore[arg-type]
        entered = await pipeline.enter(call)
        outgoing.append(OUTGOING.get())
        call.outcome = "ok"
        pipeline.leave(call, entered, None)
        calls.append(call)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": [], "state": {}}
    await RequestContextMiddleware(app, telemetry)(scope, receive, send)
    telemetry.shutdown()
    return calls[0], sent[0]["headers"], outgoing[0], kept


def _decoded(kept: _Keep) -> list[Any]:
    batches = otlp.EncodedBatches(Resource.create({"service.name": "gw"}), ("gw", "1"))
    request = ExportTraceServiceRequest.FromString(batches.request(kept.items))
    return [s for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]


async def test_an_unrecorded_call_is_ids_only_and_still_propagates() -> None:
    call, headers, outgoing, kept = await _serve(0.0, "direct")
    trace = call.trace
    assert isinstance(trace, Unrecorded) and not isinstance(trace, Spans)
    assert trace.carrier is not None
    parent = trace.carrier["traceparent"]
    assert parent == f"00-{trace.trace_id}-{trace.context.span_id:016x}-00"
    assert (b"traceparent", parent.encode()) in headers  # the response names the same
    assert outgoing is None  # the fast path sends the carrier itself
    assert kept.items == []


async def test_an_unrecorded_call_off_the_fast_path_hands_the_sdk_client_its_context() -> None:
    call, _, outgoing, _ = await _serve(0.0, "sdk")
    assert call.trace is not None and outgoing == call.trace.carrier


async def test_a_recorded_call_writes_its_spans_under_the_agents_trace() -> None:
    meta = {"traceparent": AGENT_PARENT, "tracestate": "vendor=1"}
    call, headers, _, kept = await _serve(0.0, "direct", meta)  # the agent sampled it
    trace = call.trace
    assert isinstance(trace, Spans) and trace.trace_id == AGENT_TRACE
    assert trace.carrier is not None and trace.carrier["tracestate"] == "vendor=1"
    spans = {s.name: s for s in _decoded(kept)}
    assert set(spans) == {"tools/call srv__echo", "authorize", "tools/call echo"}
    server = spans["tools/call srv__echo"]
    assert server.trace_id.hex() == AGENT_TRACE and server.trace_state == "vendor=1"
    assert server.parent_span_id.hex() == "b7ad6b7169203331"
    attributes = {a.key: a.value.string_value for a in server.attributes}
    assert attributes["mcp.session.id"] == "s1" and attributes["jsonrpc.request.id"] == "7"
    assert attributes["mcpgw.route"] == "fast" and attributes["mcpgw.outcome"] == "ok"
    client = spans["tools/call echo"]
    assert client.parent_span_id == server.span_id
    assert trace.carrier["traceparent"] == f"00-{AGENT_TRACE}-{client.span_id.hex()}-01"
    response = dict(headers)[b"traceparent"].decode()
    assert response == f"00-{AGENT_TRACE}-{server.span_id.hex()}-01"
