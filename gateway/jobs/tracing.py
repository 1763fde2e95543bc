"""Tracing of jobs: the job's trace goes on from the request that created it.

The gateway puts the W3C context of what queued a job (the REST request's span, an
MCP call's, the attempt before a retry) in the Celery task's headers
(:class:`gateway.jobs.bus.CeleryDispatcher`). A worker process exports spans as the
gateway does: it applies the stored telemetry settings (else the environment's) and
looks again before each job (one primary-key read), so an exporter switched through
``PUT /api/v1/settings/telemetry`` reaches the workers without a restart.

A job's spans: ``job.run`` (CONSUMER, under the carried context, else a new trace at
the root ratio), and inside it the steps ``job.claim`` and ``job.execute`` (the
kind's handler; its progress reports are events of that span), with the SQL, Redis
and HTTP spans of the instrumentation packages under them. A local job (run in the
gateway process that submitted it) gets the same spans under its request's trace.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.trace import Span, SpanKind

from gateway.config import Settings
from gateway.db import Database
from gateway.observability.tracing import (
    TRACEPARENT,
    TRACESTATE,
    Telemetry,
    detached,
    operation,
)

log = logging.getLogger("gateway.jobs")


class WorkerTracing:
    """A worker process's tracing: its own :class:`Telemetry`, kept in step with the
    gateway's stored configuration."""

    def __init__(self, settings: Settings, db: Database) -> None:
        # Imported here: the settings service pulls in the exporters and the audit
        # types, which a worker that never runs a job need not load.
        from gateway.crypto import secret_box
        from gateway.observability import instruments
        from gateway.observability.settings import TelemetryService

        self.settings = settings
        self.telemetry = Telemetry()
        self.service = TelemetryService(db, secret_box(settings), self.telemetry)
        self._started = False
        instruments.follow(self.telemetry)  # SQL, Redis and HTTP spans inside jobs

    async def refresh(self) -> None:
        """Apply the configuration in force (first: stored or environment; then: a
        change stored since). A failure leaves tracing as it was: jobs still run."""
        from gateway.observability.exporters import from_environment

        try:
            if not self._started:
                await self.service.start(from_environment(os.environ, self.settings))
                self._started = True
            else:
                await self.service.follow()
        except Exception:
            log.warning("could not apply the telemetry settings", exc_info=True)

    def shutdown(self) -> None:
        """Flush and stop (the worker process ends)."""
        self.telemetry.shutdown()


def task_carrier(request: Any) -> dict[str, str] | None:
    """The W3C context in a Celery task's headers (they become request attributes)."""
    parent = request.get(TRACEPARENT) if request is not None else None
    if not isinstance(parent, str):
        return None
    carrier = {TRACEPARENT: parent}
    state = request.get(TRACESTATE)
    if isinstance(state, str):
        carrier[TRACESTATE] = state
    return carrier


def job_span(
    tracing: WorkerTracing | None,
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    carrier: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[Span | None]:
    """A job's span: on a worker, under ``carrier`` or the current span; for a local
    job (no worker tracing), under the request that submitted it."""
    if tracing is None:
        return operation(name, attributes, kind=kind)
    return detached(tracing.telemetry, name, attributes, carrier=carrier, kind=kind)


def step_event(span: Span | None, name: str, attributes: Mapping[str, Any]) -> None:
    """An event (a progress report) on a recorded step span."""
    if span is not None and span.is_recording():
        span.add_event(name, dict(attributes))
