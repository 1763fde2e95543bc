"""Where spans go: OTLP over HTTP or gRPC, with presets for the usual vendors.

A :class:`TelemetryConfig` says which exporter, which preset and its fields (an API
key, a region), the sample ratio; :func:`resolve` turns it into the endpoint and
headers the OTLP exporter gets, and :func:`build_exporter` into the exporter itself.
Configuration comes from the environment at start (``MCPGW_TELEMETRY_*`` or the
standard ``OTEL_*`` variables, :func:`from_environment`) and may be replaced at run
time (``PUT /api/v1/settings/telemetry``). Credentials (``api_key``, ``headers``)
are write-only: stored sealed, never returned (:meth:`TelemetryConfig.public`).
"""

from __future__ import annotations

import base64
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.observability.otlp import EncodedGrpcExporter, EncodedHttpExporter

Exporter = Literal["none", "otlp_http", "otlp_grpc"]
Preset = Literal[
    "custom",
    "collector",
    "datadog",
    "grafana_cloud",
    "honeycomb",
    "new_relic",
    "azure_monitor",
    "google_cloud",
    "aws_adot",
    "splunk",
]
LOCAL_HTTP = "http://localhost:4318"
LOCAL_GRPC = "http://localhost:4317"


class TelemetryConfig(BaseModel):
    """The tracing configuration (the body of ``PUT /api/v1/settings/telemetry``)."""

    model_config = ConfigDict(extra="forbid")

    exporter: Exporter = Field(
        "none", description="`otlp_http` (OTLP/HTTP protobuf), `otlp_grpc`, or `none` (off)."
    )
    preset: Preset = Field(
        "custom", description="Fills endpoint and headers for a vendor; `custom`: as given."
    )
    endpoint: str | None = Field(
        None,
        description="OTLP endpoint (`https://host:4318`; `/v1/traces` is added for HTTP). "
        "Presets fill it; set it to override.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers (write-only: may hold keys)."
    )
    api_key: str | None = Field(
        None, description="The vendor's ingest key or token (write-only), for presets."
    )
    region: str | None = Field(
        None,
        description="Vendor region or site: Datadog site (`datadoghq.eu`), Honeycomb/New "
        "Relic `eu`, Grafana Cloud zone (`prod-eu-west-2`), Splunk realm (`us1`).",
    )
    instance_id: str | None = Field(
        None, description="Grafana Cloud OTLP instance id (the Basic auth user)."
    )
    sample_ratio: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Share of traces started here that are recorded; an agent's sampled "
        "trace is always followed (parent-based).",
    )
    insecure: bool = Field(False, description="gRPC without TLS (a local Collector).")
    capture_payloads: bool = Field(
        False,
        description="Put each recorded call's arguments (and, on the SDK and REST paths, its "
        "result) on its span, masked as in the audit trail and cut to capture_max_bytes.",
    )
    capture_max_bytes: int = Field(
        2048, ge=64, le=65536, description="Bytes of each captured payload, at most."
    )
    export_metrics: bool = Field(
        False,
        description="Also push the gateway's metrics (the families /metrics shows) as OTLP "
        "metrics, every metrics_interval_seconds, to the same place as the spans.",
    )
    metrics_interval_seconds: float = Field(
        60.0, ge=1, le=3600, description="How often metrics are pushed (export_metrics)."
    )
    export_logs: bool = Field(
        False,
        description="Also send the gateway's log lines (INFO and above, masked, with the "
        "trace and span ids of the call they were written in) as OTLP logs, to the same "
        "place as the spans.",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not name or any(c in name for c in " :\r\n") or any(c in item for c in "\r\n"):
                raise ValueError(f"invalid header {name!r}")
        return value

    def public(self) -> dict[str, Any]:
        """What may be shown: everything but credentials (their names only)."""
        data = self.model_dump(exclude={"api_key", "headers"})
        data["api_key_set"] = self.api_key is not None
        data["header_names"] = sorted(self.headers)
        return data

    def secrets(self) -> dict[str, dict[str, str]]:
        """The write-only fields, in the shape the secret box seals."""
        sealed = {"headers": dict(self.headers)}
        if self.api_key is not None:
            sealed["api_key"] = {"value": self.api_key}
        return sealed


@dataclass(frozen=True)
class Target:
    """Where an exporter sends: protocol, endpoint (None: the exporter's own default,
    from ``OTEL_*``) and headers."""

    protocol: Literal["http", "grpc"]
    endpoint: str | None
    headers: dict[str, str]
    description: str


def problems(config: TelemetryConfig) -> list[tuple[str, str]]:
    """What ``config`` lacks for its preset, as (field, message): empty when complete."""
    if config.exporter == "none":
        return []
    found = []
    keyed = ("grafana_cloud", "honeycomb", "new_relic", "splunk")
    if config.preset in keyed and not config.api_key:
        found.append(("api_key", f"the {config.preset} preset needs an ingest key"))
    if config.preset == "grafana_cloud":
        if not config.instance_id:
            found.append(("instance_id", "the grafana_cloud preset needs the OTLP instance id"))
        if not config.region:
            found.append(("region", "the grafana_cloud preset needs the zone (prod-eu-west-2)"))
    if config.preset == "splunk" and not config.region:
        found.append(("region", "the splunk preset needs the realm (e.g. us1)"))
    for field, wanted in (
        ("export_logs", config.export_logs),
        ("export_metrics", config.export_metrics),
    ):
        if config.preset == "splunk" and wanted:
            found.append((field, "the splunk preset takes traces only; use a Collector for more"))
    if config.preset == "custom" and config.endpoint is None and not _otel_endpoint_set():
        found.append(("endpoint", "the custom preset needs an endpoint"))
    return found


def _otel_endpoint_set() -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _preset(config: TelemetryConfig) -> tuple[str | None, dict[str, str]]:
    """The preset's endpoint and headers (before the config's own override them)."""
    key, region, grpc = config.api_key or "", config.region, config.exporter == "otlp_grpc"
    match config.preset:
        case "datadog":  # the Datadog Agent's OTLP receiver; agentless with an API key
            if key:
                return f"https://otlp.{region or 'datadoghq.com'}", {"dd-api-key": key}
            return (LOCAL_GRPC if grpc else LOCAL_HTTP), {}
        case "grafana_cloud":
            token = base64.b64encode(f"{config.instance_id}:{key}".encode()).decode()
            return (
                f"https://otlp-gateway-{region}.grafana.net/otlp",
                {"Authorization": f"Basic {token}"},
            )
        case "honeycomb":
            host = "api.eu1.honeycomb.io" if region == "eu" else "api.honeycomb.io"
            return f"https://{host}:443", {"x-honeycomb-team": key}
        case "new_relic":
            host = "otlp.eu01.nr-data.net" if region == "eu" else "otlp.nr-data.net"
            return f"https://{host}:{4317 if grpc else 4318}", {"api-key": key}
        case "splunk":
            return f"https://ingest.{region}.signalfx.com/v2/trace/otlp", {"X-SF-Token": key}
        case "azure_monitor" | "google_cloud" | "aws_adot" | "collector":
            # Through a local Collector (Azure Monitor exporter, Google Cloud exporter,
            # ADOT): those back ends authenticate with cloud credentials, which a Collector
            # holds; the gateway speaks plain OTLP to it.
            headers = (
                {"x-goog-user-project": key} if config.preset == "google_cloud" and key else {}
            )
            return (LOCAL_GRPC if grpc else LOCAL_HTTP), headers
        case _:
            return None, {}


def resolve(config: TelemetryConfig) -> Target | None:
    """Where ``config`` sends spans (None: tracing off)."""
    if config.exporter == "none":
        return None
    endpoint, headers = _preset(config)
    endpoint = config.endpoint or endpoint
    headers = {**headers, **config.headers}
    protocol: Literal["http", "grpc"] = "grpc" if config.exporter == "otlp_grpc" else "http"
    if (
        protocol == "http"
        and endpoint is not None
        and config.preset != "splunk"
        and not endpoint.rstrip("/").endswith("/v1/traces")
    ):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return Target(protocol, endpoint, headers, f"{config.preset} ({config.exporter})")


def sibling_endpoint(target: Target, signal: str) -> str | None:
    """Where ``target``'s logs or metrics go (``signal``: ``logs``, ``metrics``): over
    HTTP its ``/v1/traces`` becomes ``/v1/{signal}``; gRPC has one endpoint for all."""
    endpoint = target.endpoint
    if target.protocol == "grpc" or endpoint is None:
        return endpoint
    base = endpoint.rstrip("/")
    base = base[: -len("/v1/traces")] if base.endswith("/v1/traces") else base
    return f"{base}/v1/{signal}"


def grpc_insecure(target: Target, insecure: bool) -> bool | None:
    """gRPC without TLS: asked for, or implied by an ``http://`` endpoint."""
    endpoint = target.endpoint
    return (insecure or (endpoint is not None and endpoint.startswith("http://"))) or None


def build_exporter(target: Target, insecure: bool = False) -> SpanExporter:
    """The OTLP span exporter for ``target`` (unset fields: the ``OTEL_*`` defaults)."""
    if target.protocol == "grpc":
        return EncodedGrpcExporter(
            endpoint=target.endpoint,
            headers=target.headers or None,
            insecure=grpc_insecure(target, insecure),
        )
    return EncodedHttpExporter(endpoint=target.endpoint, headers=target.headers or None, timeout=10)


def from_environment(env: Mapping[str, str], settings: Any) -> TelemetryConfig:
    """The start-up configuration: ``MCPGW_TELEMETRY_*`` settings, else the standard
    ``OTEL_*`` variables (an OTLP endpoint set turns tracing on; ``OTEL_SDK_DISABLED``,
    ``OTEL_TRACES_EXPORTER=none`` keep it off; ``OTEL_TRACES_SAMPLER_ARG`` is the ratio
    for the ratio samplers)."""
    ratio = settings.telemetry_sample_ratio
    if env.get("OTEL_TRACES_SAMPLER", "").endswith("traceidratio"):
        with contextlib.suppress(ValueError):
            ratio = min(1.0, max(0.0, float(env.get("OTEL_TRACES_SAMPLER_ARG", ratio))))
    exporter = settings.telemetry_exporter
    if (
        env.get("OTEL_SDK_DISABLED", "").lower() == "true"
        or env.get("OTEL_TRACES_EXPORTER") == "none"
    ):
        exporter = "none"
    elif exporter == "none" and _otel_endpoint_set():
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        exporter = "otlp_grpc" if protocol == "grpc" else "otlp_http"
    return TelemetryConfig(
        exporter=exporter,
        preset=settings.telemetry_preset,
        endpoint=settings.telemetry_endpoint,
        headers=dict(settings.telemetry_headers),
        api_key=(
            settings.telemetry_api_key.get_secret_value() if settings.telemetry_api_key else None
        ),
        region=settings.telemetry_region,
        sample_ratio=ratio,
        export_logs=settings.telemetry_export_logs or env.get("OTEL_LOGS_EXPORTER") == "otlp",
        export_metrics=(
            settings.telemetry_export_metrics or env.get("OTEL_METRICS_EXPORTER") == "otlp"
        ),
        metrics_interval_seconds=settings.telemetry_metrics_interval_seconds,
    )
