"""Applying a :class:`TelemetryConfig` to the gateway's :class:`Telemetry`, and the test
span ``mcpgw telemetry test`` sends."""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind

from gateway.observability.exporters import TelemetryConfig, build_exporter, resolve
from gateway.observability.log_export import build_log_exporter
from gateway.observability.metric_export import build_metric_exporter
from gateway.observability.tracing import Telemetry

log = logging.getLogger("gateway.telemetry")


def start_telemetry(telemetry: Telemetry, config: TelemetryConfig) -> None:
    """Export as ``config`` says from now on (``exporter: none``: tracing off; log lines
    too when ``export_logs``)."""
    target = resolve(config)
    if target is None or not config.export_logs:
        if telemetry.logs.enabled:
            telemetry.logs.apply(None)
    else:
        telemetry.logs.apply(build_log_exporter(target, config.insecure), target.description)
    metrics = telemetry.metric_export
    if metrics is not None:
        if target is None or not config.export_metrics:
            if metrics.enabled:
                metrics.apply(None)
        else:
            metrics.apply(
                build_metric_exporter(target, config.insecure),
                config.metrics_interval_seconds,
                target.description,
            )
    if target is None:
        if telemetry.enabled:
            telemetry.configure(None)
        return
    telemetry.configure(
        build_exporter(target, config.insecure),
        sample_ratio=config.sample_ratio,
        description=target.description,
        capture_bytes=config.capture_max_bytes if config.capture_payloads else 0,
    )


def send_test_span(config: TelemetryConfig) -> tuple[bool, str]:
    """Export one span to where ``config`` points, synchronously: (delivered, what)."""
    target = resolve(config)
    if target is None:
        return False, "tracing is off (exporter: none)"
    exporter = build_exporter(target, config.insecure)
    results: list[SpanExportResult] = []

    class Recording(SimpleSpanProcessor):
        def on_end(self, span: object) -> None:
            results.append(self.span_exporter.export((span,)))  # type: ignore[arg-type]

    provider = TracerProvider()
    provider.add_span_processor(Recording(exporter))
    with provider.get_tracer("mcp-gateway").start_as_current_span(
        "mcpgw telemetry test", kind=SpanKind.INTERNAL, attributes={"mcpgw.test": True}
    ) as span:
        trace_id = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    where = target.endpoint or "the OTEL_EXPORTER_OTLP_* endpoint"
    if results and results[0] is SpanExportResult.SUCCESS:
        return True, f"test span {trace_id} delivered to {where} ({target.description})"
    return False, f"could not deliver a test span to {where} ({target.description})"
