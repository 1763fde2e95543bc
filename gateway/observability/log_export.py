"""Optional OTLP export of the gateway's log lines, beside its spans.

When the telemetry configuration asks for it (``export_logs``), every log record of
level INFO and above also goes, as an OTLP log record, to where the spans go (the same
endpoint, headers and preset; ``/v1/logs`` instead of ``/v1/traces`` over HTTP). A
record inside a traced call or request carries its trace and span ids (the SDK's
handler reads the current span). The text is masked exactly as the JSON log line is
(observability/logging.py), and records of the exporter's own libraries are not sent
(a failing export would otherwise log about itself, forever).

Switched at run time with the rest of the configuration: the old provider is flushed
and shut down in a thread, off the event loop.
"""

from __future__ import annotations

import logging
import threading
from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)

from gateway import __version__
from gateway.observability.exporters import Target, grpc_insecure, sibling_endpoint
from gateway.observability.masking import mask_text

log = logging.getLogger("gateway.telemetry")

# Loggers whose records are never exported: the exporters' own (and the HTTP client
# they use), which would report a failing export by exporting again.
_QUIET = ("opentelemetry", "urllib3", "grpc")


class MaskedHandler(LoggingHandler):
    """The SDK's logging bridge, fed masked text (the same masking as the JSON lines)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_QUIET):
            return
        masked = logging.makeLogRecord(record.__dict__)
        masked.msg, masked.args = mask_text(record.getMessage()), None
        masked.exc_info = masked.exc_text = None
        if record.exc_info:
            formatter = logging.Formatter()
            masked.msg += "\n" + mask_text(formatter.formatException(record.exc_info))
        for key, value in record.__dict__.items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(masked, key, mask_text(value))
        token = _request_context()
        try:
            super().emit(masked)
        finally:
            if token is not None:
                otel_context.detach(token)


def _request_context() -> Token[Context] | None:
    """Outside a call's span but inside a traced request (the access line is written
    after the call ended): the request's ids made current, as its JSON line has them."""
    if get_current_span().get_span_context().is_valid:
        return None
    from gateway.observability.tracing import current_ids  # tracing imports this module

    ids = current_ids()
    if ids is None:
        return None
    context = SpanContext(int(ids[0], 16), int(ids[1], 16), True, TraceFlags(TraceFlags.SAMPLED))
    return otel_context.attach(set_span_in_context(NonRecordingSpan(context)))


_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class LogExport:
    """The log bridge in force (at most one), replaced when the configuration is."""

    def __init__(self) -> None:
        self.provider: LoggerProvider | None = None
        self.handler: MaskedHandler | None = None
        self.description: str | None = None

    @property
    def enabled(self) -> bool:
        return self.handler is not None

    def apply(self, exporter: LogRecordExporter | None, description: str | None = None) -> None:
        """Send log records to ``exporter`` from now on (None: stop sending them)."""
        old_provider, old_handler = self.provider, self.handler
        self.provider = self.handler = None
        if exporter is not None:
            provider = LoggerProvider(
                resource=Resource.create(
                    {"service.name": "mcp-gateway", "service.version": __version__}
                )
            )
            provider.add_log_record_processor(
                BatchLogRecordProcessor(exporter, schedule_delay_millis=1000)
            )
            self.provider = provider
            self.handler = MaskedHandler(level=logging.INFO, logger_provider=provider)
            logging.getLogger().addHandler(self.handler)
        self.description = description if exporter is not None else None
        if old_handler is not None:
            logging.getLogger().removeHandler(old_handler)
        if old_provider is not None:
            _shut_down(old_provider)
        if exporter is not None or old_handler is not None:
            log.info("log export", extra={"exporter": self.description})

    def flush(self, timeout_ms: int = 5000) -> bool:
        provider = self.provider
        return provider is None or bool(provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        """Stop exporting and flush what is queued (blocking: the app's end)."""
        provider, handler = self.provider, self.handler
        self.provider = self.handler = None
        if handler is not None:
            logging.getLogger().removeHandler(handler)
        if provider is not None:
            provider.shutdown()


def _shut_down(provider: LoggerProvider) -> None:
    # Flushing waits on the network: never on the event loop.
    threading.Thread(target=provider.shutdown, name="otel-logs-retire", daemon=True).start()


def build_log_exporter(target: Target, insecure: bool) -> LogRecordExporter:
    """The OTLP log exporter beside ``target``'s span exporter (unset fields: the
    ``OTEL_*`` defaults)."""
    endpoint, headers = sibling_endpoint(target, "logs"), target.headers or None
    if target.protocol == "grpc":
        return GrpcLogExporter(
            endpoint=endpoint, headers=headers, insecure=grpc_insecure(target, insecure)
        )
    return HttpLogExporter(endpoint=endpoint, headers=headers, timeout=10)
