"""The telemetry part of the gateway's settings (mixed into :class:`gateway.config.Settings`):
where spans go at start. ``PUT /api/v1/settings/telemetry`` replaces it at run time;
the standard ``OTEL_*`` variables are honoured too (gateway/observability/exporters.py)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from gateway.observability.exporters import Exporter, Preset


class TelemetrySettings(BaseModel):
    """Start-up tracing configuration (docs/observability.md)."""

    telemetry_exporter: Exporter = Field(
        "none",
        description="`otlp_http`, `otlp_grpc` or `none`. Unset with an OTEL_EXPORTER_OTLP_"
        "ENDPOINT in the environment: OTLP with OTEL_EXPORTER_OTLP_PROTOCOL.",
    )
    telemetry_preset: Preset = Field(
        "custom", description="Vendor preset filling endpoint and headers (custom: as given)."
    )
    telemetry_endpoint: str | None = Field(None, description="OTLP endpoint URL.")
    telemetry_headers: dict[str, str] = Field(
        default_factory=dict, description="Extra OTLP request headers (JSON object)."
    )
    telemetry_api_key: SecretStr | None = Field(None, description="The preset's ingest key.")
    telemetry_region: str | None = Field(None, description="The preset's region, site or realm.")
    telemetry_export_metrics: bool = Field(
        False,
        description="Also push the metrics /metrics shows as OTLP metrics to the same place "
        "as the spans (or OTEL_METRICS_EXPORTER=otlp).",
    )
    telemetry_metrics_interval_seconds: float = Field(
        60.0, ge=1, le=3600, description="How often OTLP metrics are pushed."
    )
    telemetry_export_logs: bool = Field(
        False,
        description="Also send log lines (masked, with trace ids) as OTLP logs to the same "
        "place as the spans (or OTEL_LOGS_EXPORTER=otlp).",
    )
    telemetry_sample_ratio: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Share of traces started at the gateway that are recorded (an agent's "
        "sampled trace is always followed).",
    )
