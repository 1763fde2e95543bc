"""An OTLP/HTTP trace and log receiver on loopback: a stand-in for an OpenTelemetry
Collector.

No Collector binary can be installed here, so tests point the gateway (and traced
backends) at this receiver. It speaks the real wire format: each `POST /v1/traces`
body is decoded as an `ExportTraceServiceRequest`, each `POST /v1/logs` body as an
`ExportLogsServiceRequest`, with `opentelemetry-proto` (the protobuf messages a
Collector decodes); the spans and log records in them are kept for the test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass
class ReceivedSpan:
    """One span as it arrived."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    headers: dict[str, str] = field(default_factory=dict)  # of the export request


@dataclass
class ReceivedLog:
    """One log record as it arrived."""

    service: str
    body: str
    severity: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass
class ReceivedMetric:
    """One metric of one export: its kind (``sum``, ``gauge``, ``histogram``) and its
    points as (attributes, value; a histogram point's value is its count)."""

    service: str
    name: str
    kind: str
    monotonic: bool
    points: list[tuple[dict[str, Any], float]]


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """``with OtlpReceiver() as r:`` … ``r.url`` … ``r.wait_for(predicate)``."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.logs: list[ReceivedLog] = []
        self.metrics: list[ReceivedMetric] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.path == "/v1/metrics":
                    metrics = ExportMetricsServiceRequest()
                    metrics.ParseFromString(body)
                    receiver._keep_metrics(metrics)
                    reply = ExportMetricsServiceResponse().SerializeToString()
                elif self.path == "/v1/logs":
                    logs = ExportLogsServiceRequest()
                    logs.ParseFromString(body)
                    receiver._keep_logs(logs)
                    reply = ExportLogsServiceResponse().SerializeToString()
                elif self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver._keep(request, dict(self.headers.items()))
                    reply = ExportTraceServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _keep(self, request: ExportTraceServiceRequest, headers: dict[str, str]) -> None:
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            headers={k.lower(): v for k, v in headers.items()},
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(found)

    def _keep_logs(self, request: ExportLogsServiceRequest) -> None:
        found = []
        for resource_logs in request.resource_logs:
            resource = {a.key: _value(a.value) for a in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    found.append(
                        ReceivedLog(
                            service=str(resource.get("service.name")),
                            body=str(_value(record.body)),
                            severity=record.severity_text,
                            trace_id=record.trace_id.hex(),
                            span_id=record.span_id.hex(),
                            attributes={a.key: _value(a.value) for a in record.attributes},
                        )
                    )
        with self._lock:
            self.logs.extend(found)

    def _keep_metrics(self, request: ExportMetricsServiceRequest) -> None:
        found = []
        for resource_metrics in request.resource_metrics:
            resource = {a.key: _value(a.value) for a in resource_metrics.resource.attributes}
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    data = getattr(metric, kind)
                    points = [
                        (
                            {a.key: _value(a.value) for a in p.attributes},
                            float(p.count)
                            if kind == "histogram"
                            else float(getattr(p, p.WhichOneof("value") or "as_double")),
                        )
                        for p in data.data_points
                    ]
                    found.append(
                        ReceivedMetric(
                            service=str(resource.get("service.name")),
                            name=metric.name,
                            kind=kind,
                            monotonic=bool(getattr(data, "is_monotonic", False)),
                            points=points,
                        )
                    )
        with self._lock:
            self.metrics.extend(found)

    def wait_for_metrics(
        self, predicate: Callable[[list[ReceivedMetric]], bool], timeout: float = 20.0
    ) -> list[ReceivedMetric]:
        """The metrics received, once ``predicate`` holds for them (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                metrics = list(self.metrics)
            if predicate(metrics) or time.monotonic() > deadline:
                return metrics
            time.sleep(0.05)

    def wait_for_logs(
        self, predicate: Callable[[list[ReceivedLog]], bool], timeout: float = 20.0
    ) -> list[ReceivedLog]:
        """The log records received, once ``predicate`` holds for them (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                logs = list(self.logs)
            if predicate(logs) or time.monotonic() > deadline:
                return logs
            time.sleep(0.05)

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 20.0
    ) -> list[ReceivedSpan]:
        """The spans received, once ``predicate`` holds for them (bounded wait)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans) or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)
