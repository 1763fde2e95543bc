"""Call spans over OTLP/gRPC: the gateway's gRPC exporter against a gRPC receiver on
loopback (a stand-in for a Collector's OTLP gRPC port: no Collector can be installed
here), which decodes the real `ExportTraceServiceRequest` messages. The pipeline runs
in process; payload capture is checked here too (masked, cut)."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from gateway.observability.exporters import TelemetryConfig, build_exporter, resolve
from gateway.observability.masking import SecretMask
from gateway.observability.tracing import Telemetry
from gateway.servers.calls import CallTarget
from gateway.servers.pipeline import Authorize, Call, Pipeline
from gateway.servers.tracing import CallTracer
from tests.support import free_port


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.metadata: list[dict[str, str]] = []

    def Export(self, request: Any, context: Any) -> Any:
        self.metadata.append(dict(context.invocation_metadata()))
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                self.spans.extend(scope_spans.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


class _Principal:
    user_id, key_id = "u", "k"

    def can(self, permission: str) -> bool:
        return True


class _Spec:
    secrets = SecretMask(("server-secret-value",))


class _Runtime:
    spec = _Spec()


async def _one_call(receiver: _Receiver, capture: bool = False, **arguments: Any) -> Call:
    """One call through a traced pipeline that exports over gRPC to ``receiver``."""
    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    telemetry = Telemetry()
    try:
        config = TelemetryConfig(
            exporter="otlp_grpc",
            endpoint=f"http://127.0.0.1:{port}",
            headers={"x-tenant": "t1"},
            sample_ratio=1.0,
        )
        target = resolve(config)
        assert target is not None
        telemetry.configure(
            build_exporter(target), sample_ratio=1.0, capture_bytes=200 if capture else 0
        )
        pipeline = Pipeline({"authorize": Authorize()})
        pipeline.trace(CallTracer(telemetry))
        target_ = CallTarget("srv", "echo", _Runtime())  # type: ignore[arg-type]
        call = Call(_Principal(), target_, arguments, "rest")  # type: ignore[arg-type]
        entered = await pipeline.enter(call)
        call.outcome = "ok"
        pipeline.leave(call, entered, None)
        assert telemetry.flush()
    finally:
        telemetry.shutdown()
        server.stop(None)
    return call


def _server_span(receiver: _Receiver) -> Any:
    return next(s for s in receiver.spans if s.name == "tools/call srv__echo")


async def test_call_spans_arrive_over_grpc() -> None:
    receiver = _Receiver()
    call = await _one_call(receiver, text="hello")
    names = sorted(s.name for s in receiver.spans)
    assert names == ["authorize", "tools/call echo", "tools/call srv__echo"]
    assert len({s.trace_id for s in receiver.spans}) == 1
    assert call.trace is not None and receiver.spans[0].trace_id.hex() == call.trace.trace_id
    assert receiver.metadata[0]["x-tenant"] == "t1"
    # Payloads are not captured unless asked for.
    assert "mcpgw.request.arguments" not in {a.key for a in _server_span(receiver).attributes}


async def test_captured_payloads_are_masked_and_cut() -> None:
    receiver = _Receiver()
    await _one_call(
        receiver, capture=True, password="hunter22", note="server-secret-value", zz="x" * 500
    )
    attributes = {a.key: a.value.string_value for a in _server_span(receiver).attributes}
    captured = attributes["mcpgw.request.arguments"]
    assert len(captured) == 200
    assert "hunter22" not in captured and "server-secret-value" not in captured
    assert '"password":"***"' in captured and '"note":"***"' in captured
