"""The request path's counters and histograms (observability/families.py): what a scrape
shows matches what was recorded, exemplars ride on their bucket, and a runaway label
value cannot grow memory past the cap."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from gateway.observability import families
from gateway.observability.families import CountFamily, TimingFamily


def test_counts_and_timings_scrape_as_prometheus_families() -> None:
    registry = CollectorRegistry()
    calls = CountFamily("t_calls", "Calls.", ["server", "outcome"], registry)
    timing = TimingFamily("t_seconds", "Time.", ["server"], [0.001, 0.01, 1], registry)
    for _ in range(3):
        calls.inc(("a", "ok"))
    calls.inc(("a", "error"), 2)
    for seconds in (0.0005, 0.001, 0.005, 2.0):
        timing.observe(("a",), seconds)
    timing.observe(("a",), 0.5, {"trace_id": "0af7651916cd43dd8448eb211c80319c"})
    text = generate_latest(registry).decode()
    assert 't_calls_total{outcome="ok",server="a"} 3.0' in text
    assert 't_calls_total{outcome="error",server="a"} 2.0' in text
    assert 't_seconds_bucket{le="0.001",server="a"} 2.0' in text  # le is inclusive
    assert 't_seconds_bucket{le="0.01",server="a"} 3.0' in text
    assert 't_seconds_bucket{le="1.0",server="a"} 4.0' in text
    assert 't_seconds_bucket{le="+Inf",server="a"} 5.0' in text
    assert 't_seconds_count{server="a"} 5.0' in text
    assert 't_seconds_sum{server="a"} 2.5065' in text
    open_text = openmetrics_latest(registry).decode()  # type: ignore[no-untyped-call]
    assert '# {trace_id="0af7651916cd43dd8448eb211c80319c"} 0.5' in open_text


def test_label_sets_past_the_cap_are_counted_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(families, "MAX_SERIES", 3)  # the cap, made small for the test
    calls = CountFamily("t_calls", "Calls.", ["tool"], CollectorRegistry())
    for i in range(10):
        calls.inc((f"tool{i}",))
    assert len(calls.values) == 4
    assert calls.get(("_other",)) == 7
