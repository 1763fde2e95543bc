"""Prometheus metrics: what the gateway counts and how `/metrics` shows it.

Recording is a dictionary lookup and an in-memory increment (no I/O, no lock
contention under asyncio), so it stays on the request path; exposition happens
only when a scraper asks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from gateway.observability.families import CountFamily, TimingFamily

log = logging.getLogger("gateway.metrics")
_STATUSES = ("healthy", "degraded", "unhealthy", "stopped")
_STATUS = {code: str(code) for code in (200, 201, 202, 204, 400, 401, 403, 404, 409, 422, 500)}

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
        self.tool_calls = CountFamily(
            "mcpgw_tool_calls",
            "tools/call requests answered, by server, tool, path (rest, sdk or direct) and "
            "outcome (ok, error or denied).",
            ["server", "tool", "route", "outcome"],
            registry=self.registry,
        )
        self.tool_call_seconds = TimingFamily(
            "mcpgw_tool_call_seconds",
            "Time from receiving a tools/call to answering it, by server, tool and path "
            "(exemplars: the trace id of traced calls).",
            ["server", "tool", "route"],
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self.calls_refused = Counter(
            "mcpgw_calls_refused",
            "Calls a pipeline stage refused, by server and reason (call_denied: policy or "
            "permission; rate_limited: a rate, quota or budget).",
            ["server", "reason"],
            registry=self.registry,
        )
        self.http_requests = CountFamily(
            "mcpgw_http_requests",
            "HTTP requests answered, by method, route template (ids not expanded) and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_request_seconds = TimingFamily(
            "mcpgw_http_request_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self.backend_status = Gauge(
            "mcpgw_backend_status",
            "1 for each backend server's current health status (healthy, degraded, "
            "unhealthy, stopped), 0 for the others.",
            ["server", "status"],
            registry=self.registry,
        )
        self.backend_latency = Gauge(
            "mcpgw_backend_ping_seconds",
            "Each backend's last health-check round trip.",
            ["server"],
            registry=self.registry,
        )
        self.backend_restarts = Gauge(
            "mcpgw_backend_restarts",
            "Times each backend's session was re-established.",
            ["server"],
            registry=self.registry,
        )
        self.mcp_sessions = Gauge(
            "mcpgw_mcp_sessions",
            "Agent sessions open, by protocol era (2026-07-28 is stateless: none to hold).",
            ["era"],
            registry=self.registry,
        )
        self.sandboxes = Gauge(
            "mcpgw_sandboxes",
            "Sandboxes not destroyed, by provider and status.",
            ["provider", "status"],
            registry=self.registry,
        )
        self.sandbox_cpu_seconds = Gauge(
            "mcpgw_sandbox_cpu_seconds",
            "CPU seconds used by the sandboxes not destroyed, by provider.",
            ["provider"],
            registry=self.registry,
        )
        self.sandbox_disk_bytes = Gauge(
            "mcpgw_sandbox_disk_bytes",
            "Disk used by the sandboxes not destroyed, by provider.",
            ["provider"],
            registry=self.registry,
        )
        self.sandbox_memory_bytes = Gauge(
            "mcpgw_sandbox_memory_bytes",
            "Memory held by the running sandboxes when each was last measured, by provider.",
            ["provider"],
            registry=self.registry,
        )
        self.jobs = Gauge(
            "mcpgw_jobs",
            "Jobs by kind and status (pending: the queue).",
            ["kind", "status"],
            registry=self.registry,
        )
        self.result_tokens = CountFamily(
            "mcpgw_tool_result_tokens",
            "Estimated tokens (bytes / 4) of tool results sent to agents, by server.",
            ["server"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        # Refreshed when scraped (gauges of state kept elsewhere: sessions, sandboxes, jobs).
        self.on_scrape: list[Callable[[Metrics], Awaitable[None]]] = []
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
        self.limit_storage_failures = CountFamily(
            "mcpgw_limit_storage_failures",
            "Limit counts that could not be read or written (the limit storage, Redis, "
            "unreachable): calls allowed or refused by MCPGW_RATE_LIMIT_FAILURE_MODE.",
            ["storage"],
            registry=self.registry,
        )
        self.limit_round_trips = CountFamily(
            "mcpgw_limit_round_trips",
            "Round trips to the shared limit storage (Redis) for calls' rates and quotas; "
            "calls admitted from this replica's shares need none.",
            ["storage"],
            registry=self.registry,
        )
        self.policy_condition_errors = CountFamily(
            "mcpgw_policy_condition_errors",
            "Policy rule conditions that failed to evaluate (the rule denied: fail closed), "
            "by rule id.",
            ["rule"],
            registry=self.registry,
        )
        self.breaker_state = Gauge(
            "mcpgw_breaker_state",
            "Each circuit breaker's state: 0 closed, 1 half-open, 2 open (tool empty: the "
            "server's own breaker; tools shown once theirs has opened).",
            ["server", "tool"],
            registry=self.registry,
        )
        self.call_retries = CountFamily(
            "mcpgw_call_retries",
            "Backend calls repeated (retry-safe tools only: docs/resilience.md).",
            ["server"],
            registry=self.registry,
        )
        self.replica_up = Gauge(
            "mcpgw_replica_up",
            "Each replica of a replicated server: 1 taking requests, 0 ejected after a "
            "failure (docs/resilience.md#replicas).",
            ["server", "replica"],
            registry=self.registry,
        )
        self.replica_requests = CountFamily(
            "mcpgw_replica_requests",
            "Requests sent to each replica of a replicated server (this process).",
            ["server", "replica"],
            registry=self.registry,
        )
        self.breaker_rejected = CountFamily(
            "mcpgw_breaker_rejected",
            "Calls answered `unavailable` at once because a circuit breaker was open.",
            ["server"],
            registry=self.registry,
        )
        self.audit_waits_total = Counter(
            "mcpgw_audit_queue_waits",
            "Calls that waited for room in a full audit queue (timed_out: stopped waiting).",
            ["timed_out"],
            registry=self.registry,
        )

    def record_call(
        self,
        server: str,
        tool: str,
        route: str,
        seconds: float,
        outcome: str,
        trace_id: str | None = None,
        result_bytes: int | None = None,
    ) -> None:
        """Count one answered `tools/call`.

        ``outcome`` is the call pipeline's: `ok` and `denied` are counted as such, every
        other (a tool error, a failure, a cancel) as `error`. A traced call's id becomes
        the duration's exemplar (shown in the OpenMetrics exposition)."""
        self.tool_calls.inc(
            (server, tool, route, outcome if outcome in ("ok", "denied") else "error")
        )
        self.tool_call_seconds.observe(
            (server, tool, route), seconds, None if trace_id is None else {"trace_id": trace_id}
        )
        if result_bytes:
            self.result_tokens.inc((server,), -(-result_bytes // 4))

    def refused(self, server: str, reason: str) -> None:
        self.calls_refused.labels(server, reason).inc()

    def record_http(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered HTTP request under its route template."""
        self.http_requests.inc((method, route, _STATUS.get(status) or str(status)))
        self.http_request_seconds.observe((method, route), seconds)

    def set_backends(self, health: dict[str, tuple[str, float | None, int]]) -> None:
        """Each backend's (status, last ping ms, restarts), as gauges."""
        for server, (status, latency_ms, restarts) in health.items():
            for name in _STATUSES:
                self.backend_status.labels(server, name).set(1 if name == status else 0)
            if latency_ms is not None:
                self.backend_latency.labels(server).set(latency_ms / 1000)
            self.backend_restarts.labels(server).set(restarts)

    async def refresh(self) -> None:
        """Run the scrape-time collectors (their failures leave old values)."""
        for collect in list(self.on_scrape):
            try:
                await collect(self)
            except Exception:
                log.warning("a metrics collector failed", exc_info=True)

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

    def render(self, openmetrics: bool = False) -> tuple[bytes, str]:
        """The exposition of every metric and its content type: Prometheus text, or
        OpenMetrics (with exemplars) when the scraper asks for it."""
        if openmetrics:
            return openmetrics_latest(self.registry), OPENMETRICS_CONTENT_TYPE  # type: ignore[no-untyped-call]
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
