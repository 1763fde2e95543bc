"""The jobs part of a gateway process, built from the settings: the service, its event
hub, the Celery dispatcher, and (embedded mode) the worker process `serve` runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from gateway.audit.service import AuditLog
from gateway.config import Settings
from gateway.db import Database
from gateway.jobs.bus import CeleryDispatcher, Notifier, make_notifier
from gateway.jobs.celery_app import can_broadcast, create_celery
from gateway.jobs.hub import EventHub
from gateway.jobs.kinds import KindRegistry, builtin_kinds
from gateway.jobs.local import LocalJobs, LocalRuntime
from gateway.jobs.service import JobService
from gateway.jobs.worker import EmbeddedWorker
from gateway.jobs.writer import JobWriter

log = logging.getLogger("gateway.jobs")

# With Redis, wake-ups are pushed: the database poll is only a safety net.
_PUSHED_POLL_FACTOR = 20


@dataclass
class Jobs:
    """What the app holds of the jobs core, and its background tasks."""

    service: JobService
    hub: EventHub
    notifier: Notifier
    worker: EmbeddedWorker | None
    local: LocalJobs
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, settings: Settings) -> None:
        """Start the hub and the reaper (and the embedded worker if jobs are waiting)."""
        self.tasks = [
            asyncio.create_task(self.hub.run(), name="job-events"),
            asyncio.create_task(
                self.service.run_reaper(settings.jobs_reaper_interval_seconds), name="job-reaper"
            ),
        ]
        if self.worker is not None:
            interval = settings.jobs_reaper_interval_seconds
            self.tasks.append(
                asyncio.create_task(self._keep_worker(self.worker, interval), name="job-worker")
            )

    async def _keep_worker(self, worker: EmbeddedWorker, interval: float) -> None:
        # Jobs left waiting (by the last run, or re-queued after the worker died) get a
        # worker without waiting for a new submission.
        while True:
            try:
                if not worker.running and await self.service.unfinished():
                    worker.ensure_started()
                    await self.service.resend_pending()
            except Exception:  # next round
                log.exception("starting the embedded job worker failed")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Stop the background tasks and the embedded worker; release Redis."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.local.close()
        if self.worker is not None:
            await self.worker.stop()
        await self.notifier.close()


def build_jobs(
    settings: Settings,
    db: Database,
    *,
    serving: bool,
    kinds: KindRegistry | None = None,
    audit: AuditLog | None = None,
) -> Jobs:
    """The jobs core for this process. ``serving``: this is `mcpgw serve`, which runs
    an embedded worker when the settings ask for one (tests can force it with
    ``jobs_embedded_worker=True``)."""
    kinds = kinds or builtin_kinds()
    dispatcher = CeleryDispatcher(lambda: create_celery(settings), can_broadcast(settings))
    notifier = make_notifier(settings.redis_url)
    poll = settings.jobs_poll_seconds
    if settings.redis_url:
        poll *= _PUSHED_POLL_FACTOR
    hub = EventHub(db, poll, settings.redis_url)
    embedded = settings.runs_embedded_worker and (serving or settings.jobs_embedded_worker)
    worker = EmbeddedWorker(settings) if embedded else None
    writer = JobWriter(db, notifier)
    local = LocalJobs(LocalRuntime(settings, kinds, dispatcher, db, writer))
    service = JobService(
        db,
        kinds,
        dispatcher,
        writer,
        hub,
        cancel_grace=settings.jobs_cancel_grace_seconds,
        stale_after=settings.jobs_stale_seconds,
        result_ttl=settings.jobs_result_ttl_hours * 3600,
        on_submit=worker.ensure_started if worker is not None else None,
        sse_ping=settings.jobs_sse_ping_seconds,
        audit=audit,
        local=local,
    )
    return Jobs(service, hub, notifier, worker, local)
