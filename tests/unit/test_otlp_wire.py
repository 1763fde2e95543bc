"""The call spans' hand-written OTLP protobuf parses, field by field, with the real
message classes of `opentelemetry-proto` (what a Collector decodes)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanContext, TraceFlags

from gateway.observability import otlp

_FIXED64 = struct.Struct("<Q")


def span(
    trace_id: bytes,
    span_id: bytes,
    parent_span_id: bytes | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attrs: bytes = b"",
    error: str | None = None,
    trace_state: str | None = None,
) -> bytes:
    """One encoded ``Span``, field by field: the reference the call tracer's
    :func:`otlp.span_item` is checked against (``attrs`` from :func:`otlp.attributes`;
    ``error``: status ERROR)."""
    parts = [
        b"\x0a\x10",
        trace_id,
        b"\x12\x08",
        span_id,
    ]
    if trace_state:
        parts.append(otlp._field(0x1A, trace_state.encode()))
    if parent_span_id is not None:
        parts += (b"\x22\x08", parent_span_id)
    parts += (
        otlp._field(0x2A, name.encode()),
        b"\x30",
        otlp._varint(kind),
        b"\x39",
        _FIXED64.pack(start_ns),
        b"\x41",
        _FIXED64.pack(end_ns),
        attrs,
    )
    if error is not None:
        status = otlp._field(0x12, error[:256].encode()) + b"\x18" + otlp._varint(otlp.STATUS_ERROR)
        parts.append(otlp._field(0x7A, status))
    return b"".join(parts)


def scope_spans_items(spans: Iterable[bytes]) -> bytes:
    """Encoded spans (:func:`span`) as repeated ``ScopeSpans.spans`` fields."""
    return b"".join(otlp._field(0x12, s) for s in spans)


def _value(any_value: object) -> object:
    kind = any_value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(any_value, kind)


def test_spans_parse_with_the_real_messages() -> None:
    trace_id, server_id, parent_id, child_id = (os.urandom(n) for n in (16, 8, 8, 8))
    attrs = {"mcp.method.name": "tools/call", "ok": True, "n": -3, "ratio": 0.5, "é": "ü" * 200}
    server = span(
        trace_id,
        server_id,
        parent_id,
        "tools/call a__b",
        otlp.KIND_SERVER,
        10,
        2**63 + 5,
        otlp.attributes(attrs),
        "tool said no",
        "vendor=1",
    )
    child = span(trace_id, child_id, server_id, "authorize", otlp.KIND_INTERNAL, 11, 12)
    batches = otlp.EncodedBatches(Resource.create({"service.name": "gw"}), ("scope", "1.2"))
    context = SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED))
    items = [otlp.EncodedSpans(context, scope_spans_items([server, child]))] * 2
    request = ExportTraceServiceRequest.FromString(batches.request(items))

    (resource_spans,) = request.resource_spans
    resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "gw"
    (scope_spans,) = resource_spans.scope_spans
    assert (scope_spans.scope.name, scope_spans.scope.version) == ("scope", "1.2")
    assert len(scope_spans.spans) == 4  # two calls' spans, none merged into another
    first, second = scope_spans.spans[:2]
    assert first.trace_id == trace_id and first.span_id == server_id
    assert first.parent_span_id == parent_id and first.trace_state == "vendor=1"
    assert (first.name, first.kind) == ("tools/call a__b", 2)
    assert (first.start_time_unix_nano, first.end_time_unix_nano) == (10, 2**63 + 5)
    assert {a.key: _value(a.value) for a in first.attributes} == attrs
    assert (first.status.code, first.status.message) == (2, "tool said no")
    assert second.parent_span_id == server_id and second.kind == 1
    assert second.status.code == 0 and not second.attributes


def test_a_batch_of_encoded_and_sdk_spans_goes_out_whole() -> None:
    """The batch processor queues the call spans (encoded) and SDK spans (operations,
    instrumentation packages) together: one request carries both, none is dropped."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

    kept: list[object] = []

    class Keep(SpanExporter):
        def export(self, spans: object) -> object:  # type: ignore[override]
            kept.extend(spans)  # type: ignore[call-overload]
            return None

    provider = TracerProvider(resource=Resource.create({"service.name": "gw"}))
    provider.add_span_processor(SimpleSpanProcessor(Keep()))
    with provider.get_tracer("lib", "9").start_as_current_span("SELECT gateway"):
        pass
    trace_id, span_id = os.urandom(16), os.urandom(8)
    call = span(trace_id, span_id, None, "tools/call a__b", otlp.KIND_SERVER, 1, 2)
    context = SpanContext(1, 2, False, TraceFlags(TraceFlags.SAMPLED))
    encoded = otlp.EncodedSpans(context, scope_spans_items([call]))
    batches = otlp.EncodedBatches(Resource.create({"service.name": "gw"}), ("scope", "1.2"))

    data = otlp._request_bytes(batches, [encoded, *kept, encoded])
    assert data is not None
    request = ExportTraceServiceRequest.FromString(data)
    names = [s.name for r in request.resource_spans for ss in r.scope_spans for s in ss.spans]
    assert sorted(names) == ["SELECT gateway", "tools/call a__b", "tools/call a__b"]
    assert otlp._request_bytes(batches, kept) is None  # SDK spans alone: the SDK's path


def test_the_call_tracers_spans_are_the_same_spans() -> None:
    """The call tracer writes each span from its trace's shared head (:func:`span_head`)
    with remembered attributes and names (:func:`span_item`): the same messages as a
    span written field by field, whatever is present (trace state, parent, error)."""
    from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

    trace_id, span_id, parent_id = os.urandom(16), os.urandom(8), os.urandom(8)
    attrs = otlp.attributes({"gen_ai.tool.name": "a__b", "n": 3}) + otlp.attribute(
        "mcpgw.request.arguments", '{"x": 1}', cache=False
    )
    for state in (None, "vendor=1"):
        for parent in (None, parent_id):
            for error in (None, "tool said no"):
                whole = span(
                    trace_id, span_id, parent, "tools/call a__b", 2, 10, 2**63, attrs, error, state
                )
                item = otlp.span_item(
                    otlp.span_head(trace_id, state),
                    span_id,
                    parent,
                    "tools/call a__b",
                    otlp.KIND_SERVER,
                    10,
                    2**63,
                    attrs,
                    error,
                )
                expected = ScopeSpans.FromString(scope_spans_items([whole]))
                assert ScopeSpans.FromString(item) == expected
                (decoded,) = expected.spans
                assert decoded.trace_state == (state or "")
                assert {a.key for a in decoded.attributes} == {
                    "gen_ai.tool.name",
                    "n",
                    "mcpgw.request.arguments",
                }
