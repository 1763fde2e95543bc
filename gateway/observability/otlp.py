"""OTLP trace protobuf, written directly: the call spans' wire form, and the exporters
that send it.

Why not the SDK's span objects and encoder: on this class of machine an SDK span
costs 15-40 µs to create and the SDK's OTLP encoder 30+ µs per span to serialise,
several times the fast path's whole call (about 100 µs of CPU). A call's spans are
written here as protobuf bytes when the call ends (field numbers of
`opentelemetry/proto/trace/v1/trace.proto`; tests/unit/test_otlp_wire.py parses
them back with `opentelemetry-proto`), queued in the SDK's own
``BatchSpanProcessor`` (batching, flushing, shutdown as for any span) and sent by the
SDK's OTLP exporters (transport, headers, TLS, compression, retries), subclassed to
take the bytes as they are.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

KIND_INTERNAL, KIND_SERVER, KIND_CLIENT = 1, 2, 3
STATUS_ERROR = 2
_DOUBLE = struct.Struct("<d")
# start_time_unix_nano (field 7) and end_time_unix_nano (8), both fixed64, tags included.
_TIMES = struct.Struct("<BQBQ")
_KINDS = {kind: bytes((0x30, kind)) for kind in (1, 2, 3, 4, 5)}
# Encoded attributes repeat (server, tool, route, method): remembered, bounded.
_KV_CACHE: dict[tuple[str, Any], bytes] = {}
_ATTRIBUTE_CACHE: dict[tuple[str, Any], bytes] = {}
_KV_CACHE_MAX = 8192
# Span names (stages, tools) repeat too: their encoded field, remembered, bounded.
_NAME_CACHE: dict[str, bytes] = {}


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag``: field number << 3 | 2, one byte)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    if isinstance(value, str):
        return _field(0x0A, value.encode())
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    return _field(0x0A, str(value).encode())


def key_value(key: str, value: Any) -> bytes:
    """One attribute as an encoded ``KeyValue``."""
    cache_key = (key, value)
    found = _KV_CACHE.get(cache_key)
    if found is None:
        found = _field(0x0A, key.encode()) + _field(0x12, _any_value(value))
        if len(_KV_CACHE) >= _KV_CACHE_MAX:
            _KV_CACHE.clear()
        _KV_CACHE[cache_key] = found
    return found


def attribute(key: str, value: Any, *, cache: bool = True) -> bytes:
    """One ``Span.attributes`` field (``cache``: remember it, for values that repeat)."""
    if not cache:
        return _field(0x4A, _field(0x0A, key.encode()) + _field(0x12, _any_value(value)))
    cache_key = (key, value)
    found = _ATTRIBUTE_CACHE.get(cache_key)
    if found is None:
        found = _field(0x4A, key_value(key, value))
        if len(_ATTRIBUTE_CACHE) >= _KV_CACHE_MAX:
            _ATTRIBUTE_CACHE.clear()
        _ATTRIBUTE_CACHE[cache_key] = found
    return found


def attributes(items: dict[str, Any]) -> bytes:
    """``items`` as repeated ``Span.attributes`` fields."""
    return b"".join(attribute(k, v) for k, v in items.items())


def span_head(trace_id: bytes, trace_state: str | None = None) -> bytes:
    """What every span of one trace starts with (for :func:`span_item`): the trace id,
    and the trace state when there is one (encoded before ``span_id``, which is fine:
    protobuf fields may come in any order)."""
    head = b"\x0a\x10" + trace_id
    if trace_state:
        head += _field(0x1A, trace_state.encode())
    return head


def span_item(
    head: bytes,
    span_id: bytes,
    parent_span_id: bytes | None,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attrs: bytes = b"",
    error: str | None = None,
) -> bytes:
    """One span as a ``ScopeSpans.spans`` field, from its trace's ``head``
    (:func:`span_head`): the spans' one encoder, a few µs cheaper per span than building
    it field by field (tests/unit/test_otlp_wire.py checks it against that)."""
    name_field = _NAME_CACHE.get(name)
    if name_field is None:
        name_field = _field(0x2A, name.encode())
        if len(_NAME_CACHE) >= _KV_CACHE_MAX:
            _NAME_CACHE.clear()
        _NAME_CACHE[name] = name_field
    body = b"".join(
        (
            head,
            b"\x12\x08",
            span_id,
            b"" if parent_span_id is None else b"\x22\x08" + parent_span_id,
            name_field,
            _KINDS[kind],
            _TIMES.pack(0x39, start_ns, 0x41, end_ns),
            attrs,
            b"" if error is None else _status(error),
        )
    )
    size = len(body)  # a span is seldom under 128 bytes: two varint bytes, inline
    if 0x80 <= size < 0x4000:
        return bytes((0x12, (size & 0x7F) | 0x80, size >> 7)) + body
    return b"\x12" + _varint(size) + body


def _status(error: str) -> bytes:
    return _field(0x7A, _field(0x12, error[:256].encode()) + b"\x18" + _varint(STATUS_ERROR))


def request(resource: bytes, scope: bytes, items: Iterable[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` from one resource and scope (``resource``:
    :func:`resource_bytes`; ``scope``: :func:`scope_bytes`) of ``items``, each from
    :func:`span_item` (a message's repeated fields concatenate)."""
    scope_spans = _field(0x0A, scope) + b"".join(items)
    resource_spans = _field(0x0A, resource) + _field(0x12, scope_spans)
    return _field(0x0A, resource_spans)


def resource_bytes(resource: Resource) -> bytes:
    """An encoded ``Resource`` (its attributes)."""
    return b"".join(_field(0x0A, key_value(k, v)) for k, v in resource.attributes.items())


def scope_bytes(name: str, version: str) -> bytes:
    """An encoded ``InstrumentationScope``."""
    return _field(0x0A, name.encode()) + _field(0x12, version.encode())


class EncodedSpans:
    """One call's finished spans (``data``: :func:`span_item` fields), as the batch
    processor queues them (it reads ``context`` to see that they were sampled)."""

    __slots__ = ("context", "data")

    def __init__(self, context: SpanContext, data: bytes) -> None:
        self.context = context
        self.data = data


class EncodedBatches:
    """What the exporters below need to wrap encoded spans in one request."""

    def __init__(self, resource: Resource, scope: tuple[str, str]) -> None:
        self.resource = resource_bytes(resource)
        self.scope = scope_bytes(*scope)

    def request(self, items: Sequence[EncodedSpans]) -> bytes:
        return request(self.resource, self.scope, (item.data for item in items))


def _request_bytes(batches: EncodedBatches, items: Sequence[Any]) -> bytes | None:
    """One ``ExportTraceServiceRequest`` for a batch holding encoded call spans, and
    SDK spans too (an operation's, a library's, queued in the same processor), or None
    when it holds none encoded (the SDK's own path). Concatenated protobuf messages
    merge (their ``resource_spans`` add up), so each half is encoded its own way."""
    encoded = [item for item in items if type(item) is EncodedSpans]
    if not encoded:
        return None
    data = batches.request(encoded)
    if len(encoded) < len(items):
        sdk = [item for item in items if type(item) is not EncodedSpans]
        data = encode_spans(sdk).SerializePartialToString() + data
    return data


class EncodedHttpExporter(HttpSpanExporter):
    """The SDK's OTLP/HTTP exporter, also taking :class:`EncodedSpans` as they are."""

    batches: EncodedBatches | None = None

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        data = None if self.batches is None else _request_bytes(self.batches, spans)
        if data is None:
            return super().export(spans)
        if self._shutdown:
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE


class EncodedGrpcExporter(GrpcSpanExporter):
    """The SDK's OTLP/gRPC exporter, also taking :class:`EncodedSpans` as they are."""

    batches: EncodedBatches | None = None

    def _translate_data(self, data: Sequence[Any]) -> ExportTraceServiceRequest:
        encoded = None if self.batches is None else _request_bytes(self.batches, data)
        if encoded is None:
            return super()._translate_data(data)
        request: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(encoded)
        return request
