"""Prometheus metrics: what the gateway counts and how `/metrics` shows it.

Recording is a dictionary lookup and an in-memory increment (no I/O, no lock
contention under asyncio), so it stays on the request path; exposition happens
only when a scraper asks.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# Tool calls range from sub-millisecond (a fast backend) to minutes (a long job).
_CALL_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)


class Metrics:
    """The gateway's metrics, in a registry of their own (tests run several apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.tool_calls = Counter(
            "mcpgw_tool_calls",
            "tools/call requests answered, by server, path (rest, sdk or direct) and outcome "
            "(ok, error or denied).",
            ["server", "route", "outcome"],
            registry=self.registry,
        )
        self.tool_call_seconds = Histogram(
            "mcpgw_tool_call_seconds",
            "Time from receiving a tools/call to answering it, by server.",
            ["server"],
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self.backend_in_flight = Gauge(
            "mcpgw_backend_in_flight",
            "Requests in flight to each backend server.",
            ["server"],
            registry=self.registry,
        )
        self.audit_queue_depth = Gauge(
            "mcpgw_audit_queue_depth",
            "Audit rows queued in this process, not written yet.",
            registry=self.registry,
        )
        self.audit_batch_seconds = Histogram(
            "mcpgw_audit_batch_seconds",
            "Time to write one batch of audit rows.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.audit_rows_total = Counter(
            "mcpgw_audit_rows",
            "Audit rows by what became of them: written, spilled (to the local file when the "
            "database could not take them) or reingested (from that file).",
            ["result"],
            registry=self.registry,
        )
        self.audit_write_failures_total = Counter(
            "mcpgw_audit_write_failures",
            "Attempts to write a batch of audit rows that failed (retried, then spilled).",
            registry=self.registry,
        )
        self.audit_waits_total = Counter(
            "mcpgw_audit_queue_waits",
            "Calls that waited for room in a full audit queue (timed_out: stopped waiting).",
            ["timed_out"],
            registry=self.registry,
        )
        self._calls: dict[tuple[str, str, str], Counter] = {}
        self._durations: dict[str, Histogram] = {}

    def record_call(self, server: str, route: str, seconds: float, outcome: str) -> None:
        """Count one answered `tools/call` (children cached: `labels()` costs µs).

        ``outcome`` is the call pipeline's: `ok` and `denied` are counted as such, every
        other (a tool error, a failure, a cancel) as `error`."""
        key = (server, route, outcome if outcome in ("ok", "denied") else "error")
        counter = self._calls.get(key)
        if counter is None:
            counter = self._calls[key] = self.tool_calls.labels(*key)
        counter.inc()
        histogram = self._durations.get(server)
        if histogram is None:
            histogram = self._durations[server] = self.tool_call_seconds.labels(server)
        histogram.observe(seconds)

    # --- the audit writer (gateway/audit/writer.py: WriterMetrics) ------------------------
    def audit_batch(self, rows: int, seconds: float) -> None:
        self.audit_batch_seconds.observe(seconds)

    def audit_rows(self, result: str, rows: int) -> None:
        self.audit_rows_total.labels(result).inc(rows)

    def audit_write_failed(self) -> None:
        self.audit_write_failures_total.inc()

    def audit_waited(self, timed_out: bool) -> None:
        self.audit_waits_total.labels(str(timed_out).lower()).inc()

    def audit_queue(self, depth: Callable[[], int]) -> None:
        self.audit_queue_depth.set_function(depth)

    def set_in_flight(self, counts: dict[str, int]) -> None:
        for server, count in counts.items():
            self.backend_in_flight.labels(server).set(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
