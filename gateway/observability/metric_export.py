"""Optional OTLP export of the gateway's metrics: the families `/metrics` shows, pushed
every ``interval`` seconds to where the spans go (``export_metrics``).

The gateway counts with prometheus_client (and its own request-path families), so the
export reads the same registry a scrape reads and converts each family: counters to
cumulative monotonic sums, gauges to gauges, histograms to explicit-bucket histograms
(cumulative). One gateway's series keep their labels as attributes; the resource
names the service. The conversion and the export run off the event loop's hot path:
a task wakes once per interval, refreshes the scrape-time gauges, and exports in a
thread (an export waits on the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.registry import CollectorRegistry

from gateway import __version__
from gateway.observability.exporters import Target, grpc_insecure, sibling_endpoint

log = logging.getLogger("gateway.telemetry")
_SCOPE = InstrumentationScope("mcp-gateway", __version__)


def to_metrics_data(registry: CollectorRegistry, start_ns: int, resource: Resource) -> MetricsData:
    """The registry's families now, as OTLP metrics (counters since ``start_ns``)."""
    now = time.time_ns()
    metrics: list[Metric] = []
    for family in registry.collect():
        data = _convert(family.type, family.name, family.samples, start_ns, now)
        if data is not None and data.data_points:
            metrics.append(Metric(family.name, family.documentation, family.unit or None, data))
    scope = ScopeMetrics(_SCOPE, metrics, "")
    return MetricsData([ResourceMetrics(resource, [scope], "")])


def _convert(
    kind: str, name: str, samples: Iterable[Any], start: int, now: int
) -> Sum | Gauge | Histogram | None:
    if kind == "counter":
        points = [
            NumberDataPoint(dict(s.labels), start, now, s.value)
            for s in samples
            if s.name == name + "_total"
        ]
        return Sum(points, AggregationTemporality.CUMULATIVE, True)
    if kind == "gauge":
        return Gauge([NumberDataPoint(dict(s.labels), start, now, s.value) for s in samples])
    if kind == "histogram":
        return Histogram(_histogram_points(name, samples, start, now), _CUMULATIVE)
    return None  # summaries, info and untyped families: none here worth converting


_CUMULATIVE = AggregationTemporality.CUMULATIVE


def _histogram_points(
    name: str, samples: Iterable[Any], start: int, now: int
) -> list[HistogramDataPoint]:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample in samples:
        labels = dict(sample.labels)
        le = labels.pop("le", None)
        entry = series.setdefault(tuple(sorted(labels.items())), {"buckets": []})
        if sample.name == name + "_bucket" and le is not None:
            entry["buckets"].append((float(le), sample.value))
        elif sample.name == name + "_sum":
            entry["sum"] = sample.value
        elif sample.name == name + "_count":
            entry["count"] = sample.value
    points = []
    for key, entry in series.items():
        buckets = sorted(entry["buckets"])
        bounds = [le for le, _ in buckets if le != float("inf")]
        cumulative = [count for _, count in buckets]
        counts = [int(c - p) for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)]
        total = int(entry.get("count", cumulative[-1] if cumulative else 0))
        points.append(
            HistogramDataPoint(
                dict(key),
                start,
                now,
                total,
                entry.get("sum", 0.0),
                counts,
                bounds,
                float("nan"),
                float("nan"),
            )
        )
    return points


class MetricExport:
    """The metric export in force (at most one), replaced with the configuration."""

    def __init__(
        self, registry: CollectorRegistry, refresh: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.registry = registry
        self.refresh = refresh
        self.exporter: MetricExporter | None = None
        self.interval = 60.0
        self.description: str | None = None
        self.exports = 0  # successful exports, for tests and `mcpgw doctor`
        self._start_ns = time.time_ns()
        self._resource = Resource.create(
            {"service.name": "mcp-gateway", "service.version": __version__}
        )
        self._changed = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.exporter is not None

    def apply(
        self,
        exporter: MetricExporter | None,
        interval: float = 60.0,
        description: str | None = None,
    ) -> None:
        """Push to ``exporter`` every ``interval`` s from now on (None: stop pushing)."""
        old, self.exporter = self.exporter, exporter
        self.interval, self.description = interval, description
        if old is not None:
            threading.Thread(target=old.shutdown, name="otel-metrics-retire", daemon=True).start()
        self._changed.set()

    async def run(self) -> None:
        """Export once per interval while an exporter is set (until cancelled)."""
        while True:
            self._changed.clear()
            wait = self.interval if self.exporter is not None else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
            if self.exporter is not None and not self._changed.is_set():
                await self.export_now()

    async def export_now(self) -> bool:
        """Export the registry once (True when it went out)."""
        exporter = self.exporter
        if exporter is None:
            return False
        if self.refresh is not None:
            await self.refresh()
        data = to_metrics_data(self.registry, self._start_ns, self._resource)
        try:
            result = await asyncio.to_thread(exporter.export, data)
        except Exception as exc:
            log.warning("metric export failed", extra={"error": type(exc).__name__})
            return False
        ok = getattr(result, "name", "") == "SUCCESS"
        self.exports += ok
        return ok

    def shutdown(self) -> None:
        exporter, self.exporter = self.exporter, None
        if exporter is not None:
            exporter.shutdown()


def build_metric_exporter(target: Target, insecure: bool) -> MetricExporter:
    """The OTLP metric exporter beside ``target``'s span exporter."""
    endpoint, headers = sibling_endpoint(target, "metrics"), target.headers or None
    if target.protocol == "grpc":
        return GrpcMetricExporter(
            endpoint=endpoint, headers=headers, insecure=grpc_insecure(target, insecure)
        )
    return HttpMetricExporter(endpoint=endpoint, headers=headers, timeout=10)
