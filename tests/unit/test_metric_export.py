"""Prometheus families converted to OTLP metrics (observability/metric_export.py):
counters as cumulative monotonic sums, gauges, histograms with per-bucket counts."""

from __future__ import annotations

from opentelemetry.sdk.metrics.export import Gauge, Histogram, Sum
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, Counter
from prometheus_client import Gauge as PromGauge

from gateway.observability.families import TimingFamily
from gateway.observability.metric_export import to_metrics_data


def test_families_convert_to_otlp_metrics() -> None:
    registry = CollectorRegistry()
    Counter("t_calls", "Calls.", ["server"], registry=registry).labels("a").inc(3)
    PromGauge("t_depth", "Depth.", registry=registry).set(7)
    PromGauge("t_empty", "No samples.", ["x"], registry=registry)
    timing = TimingFamily("t_seconds", "Time.", ["server"], [0.1, 1.0], registry)
    for seconds in (0.05, 0.5, 0.7, 5.0):
        timing.observe(("a",), seconds)
    data = to_metrics_data(registry, 1, Resource.create({"service.name": "t"}))
    metrics = {m.name: m.data for m in data.resource_metrics[0].scope_metrics[0].metrics}
    assert set(metrics) == {"t_calls", "t_depth", "t_seconds"}  # no empty family
    calls = metrics["t_calls"]
    assert isinstance(calls, Sum) and calls.is_monotonic
    [point] = calls.data_points
    assert (dict(point.attributes or {}), point.value) == ({"server": "a"}, 3.0)
    depth = metrics["t_depth"]
    assert isinstance(depth, Gauge) and depth.data_points[0].value == 7.0
    seconds = metrics["t_seconds"]
    assert isinstance(seconds, Histogram)
    [bucketed] = seconds.data_points
    assert list(bucketed.explicit_bounds) == [0.1, 1.0]
    assert list(bucketed.bucket_counts) == [1, 2, 1]  # per bucket, +Inf last
    assert (bucketed.count, bucketed.sum) == (4, 6.25)
