"""The OTLP log bridge (observability/log_export.py) masks what it sends as the JSON log
line is masked, and sends nothing of the exporters' own loggers. In-memory exporter:
a unit test (the real OTLP path is tests/integration/observability/test_tracing.py)."""

from __future__ import annotations

import logging

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

from gateway.observability.log_export import LogExport


def test_records_are_masked_and_the_exporters_own_are_not_sent() -> None:
    exporter = InMemoryLogRecordExporter()
    export = LogExport()
    export.apply(exporter, "test")
    try:
        logger = logging.getLogger("gateway.test_log_export")
        logger.setLevel(logging.INFO)
        logger.info(
            "calling with Bearer abc.def.ghi and %s",
            "mgw_live_0123456789abcdef",
            extra={"note": "password=hunter22"},
        )
        logging.getLogger("opentelemetry.exporter").warning("export failed")
        assert export.flush()
    finally:
        export.shutdown()
    [record] = [r.log_record for r in exporter.get_finished_logs()]
    body = str(record.body)
    assert "abc.def.ghi" not in body and "mgw_live_0123456789abcdef" not in body
    assert "***" in body
    assert record.attributes is not None and "hunter22" not in str(record.attributes["note"])
    assert logging.getLogger().handlers.count(export.handler) == 0  # type: ignore[arg-type]
