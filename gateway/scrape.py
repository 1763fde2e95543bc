"""What `/metrics` reads when scraped: gauges of state that lives elsewhere.

Backend health (the session pool, in memory), open agent sessions (the MCP front),
sandboxes and jobs (the database: two grouped counts per scrape, not per request).
Registered by the composition root on :attr:`Metrics.on_scrape`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import func, select

from gateway.jobs.models import Job
from gateway.observability.metrics import Metrics
from gateway.policy.engine import CONDITION_ERRORS
from sandboxes.models import Sandbox

if TYPE_CHECKING:
    from gateway.mcp.front import McpFront
    from gateway.state import GatewayState


def register_collectors(state: GatewayState, front: McpFront) -> None:
    """Install the scrape-time collectors for ``state`` and ``front``."""

    async def backends(metrics: Metrics) -> None:
        runtimes = state.servers.pool.runtimes()
        metrics.set_in_flight({name: r.health.in_flight for name, r in runtimes.items()})
        metrics.set_backends(
            {
                name: (r.health.status, r.health.latency_ms, r.health.restarts)
                for name, r in runtimes.items()
            }
        )

    async def replicas(metrics: Metrics) -> None:
        metrics.replica_up.clear()
        for name, runtime in state.servers.pool.runtimes().items():
            for replica in runtime.health.replicas() or ():
                label = str(replica["replica"])
                metrics.replica_up.labels(name, label).set(replica["status"] != "ejected")
                metrics.replica_requests.set_total((name, label), replica["calls"])

    async def sessions(metrics: Metrics) -> None:
        # /mcp 2025-11-25 sessions and legacy /sse streams; 2026-07-28 holds none.
        metrics.mcp_sessions.labels("2025-11-25").set(len(front.sessions))

    async def stored(metrics: Metrics) -> None:
        async with state.db.session() as session:
            boxes = await session.execute(
                select(
                    Sandbox.provider,
                    Sandbox.status,
                    func.count(),
                    func.coalesce(func.sum(Sandbox.cpu_seconds), 0.0),
                    func.coalesce(func.sum(Sandbox.disk_bytes), 0),
                    func.coalesce(func.sum(Sandbox.memory_bytes), 0),
                )
                .where(Sandbox.status != "destroyed")
                .group_by(Sandbox.provider, Sandbox.status)
            )
            jobs = await session.execute(
                select(Job.kind, Job.status, func.count()).group_by(Job.kind, Job.status)
            )
        metrics.sandboxes.clear()
        cpu: dict[str, float] = {}
        disk: dict[str, int] = {}
        memory: dict[str, int] = {}
        for provider, status, count, cpu_seconds, disk_bytes, memory_bytes in boxes:
            metrics.sandboxes.labels(provider, status).set(count)
            cpu[provider] = cpu.get(provider, 0.0) + float(cpu_seconds)
            disk[provider] = disk.get(provider, 0) + int(disk_bytes)
            memory[provider] = memory.get(provider, 0) + int(memory_bytes or 0)
        for gauge in (metrics.sandbox_cpu_seconds, metrics.sandbox_disk_bytes,
                      metrics.sandbox_memory_bytes):  # fmt: skip
            gauge.clear()  # a provider with no sandbox left reports none
        for provider, value in cpu.items():
            metrics.sandbox_cpu_seconds.labels(provider).set(value)
        for provider, size in disk.items():
            metrics.sandbox_disk_bytes.labels(provider).set(size)
        for provider, size in memory.items():
            metrics.sandbox_memory_bytes.labels(provider).set(size)
        metrics.jobs.clear()
        for kind, status, count in jobs:
            metrics.jobs.labels(kind, status).set(count)

    async def policy(metrics: Metrics) -> None:
        limiter = state.servers.limiter
        if limiter is not None:
            metrics.limit_storage_failures.set_total((limiter.kind,), limiter.failures)
            metrics.limit_round_trips.set_total((limiter.kind,), limiter.counts.round_trips)
        for rule, count in CONDITION_ERRORS.items():
            metrics.policy_condition_errors.set_total((rule,), count)

    async def breakers(metrics: Metrics) -> None:
        resilience = state.servers.resilience
        if resilience is None:
            return
        metrics.breaker_state.clear()
        for server, tool, breaker, retries, rejected in resilience.series():
            metrics.breaker_state.labels(server, tool).set(breaker)
            if not tool:
                metrics.call_retries.set_total((server,), retries)
                metrics.breaker_rejected.set_total((server,), rejected)

    state.metrics.on_scrape[:] = [backends, replicas, sessions, stored, policy, breakers]
