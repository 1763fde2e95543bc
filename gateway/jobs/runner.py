"""What a worker process does with one job: claim it, run its kind's handler, report,
heartbeat, stop when cancelled, settle it.

The Celery task is synchronous; each pool process keeps one event loop and one
database engine of its own (made lazily, after the fork) and runs the async job on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import time
from typing import Any

from opentelemetry.trace import Span, SpanKind, StatusCode

from gateway.config import Settings
from gateway.db import Database, utcnow
from gateway.errors import AppError
from gateway.jobs import repository as repo
from gateway.jobs.bus import CeleryDispatcher, Dispatcher, make_notifier
from gateway.jobs.kinds import Handler, JobKind, KindRegistry, NeedsReview, RetryableError
from gateway.jobs.models import TERMINAL_EVENTS, Job
from gateway.jobs.tracing import WorkerTracing, job_span, step_event, task_carrier
from gateway.jobs.writer import JobWriter

log = logging.getLogger("gateway.jobs.worker")

# How often a running job looks at its cancel flag (seconds).
CANCEL_CHECK = 0.2


class WorkerRuntime:
    """The per-process state a worker's jobs share."""

    def __init__(self, settings: Settings, kinds: KindRegistry, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.kinds = kinds
        self.dispatcher = dispatcher
        self.loop = asyncio.new_event_loop()
        self.db = Database(settings.resolved_database_url)
        self.writer = JobWriter(self.db, make_notifier(settings.redis_url))
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.pid = os.getpid()
        self.tracing: WorkerTracing | None = WorkerTracing(settings, self.db)


_runtime: WorkerRuntime | None = None


def runtime(app: Any) -> WorkerRuntime:
    """This process's runtime (a forked pool process makes its own)."""
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        from gateway.jobs.celery_app import can_broadcast

        settings: Settings = app.mcpgw_settings
        dispatcher = CeleryDispatcher(app, can_broadcast(settings))
        _runtime = WorkerRuntime(settings, app.mcpgw_kinds, dispatcher)
    return _runtime


def run_task(task: Any, job_id: str, attempt: int) -> str:
    """The Celery task: run attempt ``attempt`` of job ``job_id``; how it ended."""
    rt = runtime(task.app)
    run = JobRun(rt, job_id, attempt, carrier=task_carrier(task.request))
    return rt.loop.run_until_complete(_run(rt, run))


async def _run(rt: WorkerRuntime, run: JobRun) -> str:
    if rt.tracing is not None:
        await rt.tracing.refresh()  # the exporter may have been switched meanwhile
    return await run.run()


def flush_tracing(**_: Any) -> None:
    """A pool process ends (Celery's ``worker_process_shutdown``): its spans go out."""
    if _runtime is not None and _runtime.pid == os.getpid() and _runtime.tracing is not None:
        _runtime.tracing.shutdown()


class _Context:
    """The :class:`~gateway.jobs.kinds.JobContext` a handler gets."""

    def __init__(self, run: JobRun, owner_id: str | None) -> None:
        self._run = run
        self.job_id = run.job_id
        self.attempt = run.attempt
        self.owner_id = owner_id
        self.settings = run.rt.settings
        self.db = run.rt.db

    async def progress(self, fraction: float, message: str | None = None) -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        data: dict[str, Any] = {"progress": fraction}
        if message is not None:
            data["message"] = message[:500]
        step_event(self._run.step, "progress", data)
        await self._run.event("progress", data, progress=fraction, message=data.get("message"))

    async def log(self, message: str, level: str = "info") -> None:
        await self._run.event("log", {"level": level, "message": message[:10_000]})

    async def emit(self, type: str, data: Any) -> None:
        if type in TERMINAL_EVENTS or type == "status":
            raise ValueError(f"a handler cannot emit {type!r} events: return or raise instead")
        await self._run.event(type, data)

    @property
    def cancel_requested(self) -> bool:
        return self._run.cancel_seen


class JobRun:
    """One attempt of one job in this worker."""

    def __init__(
        self,
        rt: WorkerRuntime,
        job_id: str,
        attempt: int,
        handler: Handler | None = None,
        *,
        carrier: dict[str, str] | None = None,
    ) -> None:
        self.rt = rt
        self.job_id = job_id
        self.attempt = attempt
        self.cancel_seen = False
        self.carrier = carrier  # the W3C context the task's message carried
        self.step: Span | None = None  # the `job.execute` span, while the handler runs
        # The work of a local job (kinds.JobKind.local); else the kind's handler.
        self.handler = handler
        self._work: asyncio.Task[Any] | None = None
        # Writes of this attempt hold only while it is the job's current, running one.
        self.mine = (Job.id == job_id, Job.status == "running", Job.attempt == attempt)

    async def event(self, type: str, data: Any, **changes: Any) -> None:
        """Append a non-terminal event while this attempt is the job's running one."""
        await self.rt.writer.append(self.job_id, type, data, only_if=self.mine, **changes)

    async def run(self) -> str:
        """Claim, run and settle the attempt; how it ended (``succeeded``, ``review``,
        ``failed``, ``timeout``, ``cancelled``, ``retrying``, ``skipped``)."""
        tracing = getattr(self.rt, "tracing", None)  # None: a local job (local.py)
        attributes = {"mcpgw.job.id": self.job_id, "mcpgw.job.attempt": self.attempt}
        with job_span(
            tracing, "job.run", attributes, carrier=self.carrier, kind=SpanKind.CONSUMER
        ) as span:
            outcome = await self._run(tracing)
            if span is not None and span.is_recording():
                span.set_attribute("mcpgw.job.outcome", outcome)
                if outcome in ("failed", "timeout"):
                    span.set_status(StatusCode.ERROR, outcome)
            return outcome

    async def _run(self, tracing: WorkerTracing | None) -> str:
        with job_span(tracing, "job.claim"):
            job, kind = await self._claim()
        if job is None or kind is None:
            return "skipped"
        with job_span(tracing, "job.execute", {"mcpgw.job.kind": kind.name}) as step:
            self.step = step
            return await self._execute(job, kind)

    async def _execute(self, job: Job, kind: JobKind) -> str:
        handler = self.handler or kind.handler
        # Made inside the `job.execute` span: the handler's own spans nest under it.
        task = self._work = asyncio.create_task(
            handler(_Context(self, job.owner_id), dict(job.input or {}))
        )
        if self.cancel_seen:  # stopped while it was being claimed
            task.cancel()
        # Outside every span: its cancel checks (five queries a second) are no step.
        watcher = asyncio.create_task(self._watch(task), context=contextvars.Context())
        try:
            async with asyncio.timeout(kind.soft_time_limit):
                result = await task
        except asyncio.CancelledError:
            if not self.cancel_seen:
                raise
            await self.rt.writer.cancelled(self.job_id, only_if=self.mine, by="worker")
            return "cancelled"
        except TimeoutError:
            limit = f"{kind.soft_time_limit:g}"
            await self.rt.writer.fail(
                self.job_id, "timeout", f"the job ran past its {limit} s limit", self.mine
            )
            return "timeout"
        except RetryableError as exc:
            return await self._retry_or_fail(job, kind, str(exc))
        except Exception as exc:
            log.info("job failed", extra={"job": self.job_id, "error": repr(exc)})
            # A kind's own errors keep their code (`bad_openapi`, `model_not_configured`…).
            code = exc.code if isinstance(exc, AppError) else "job_failed"
            message = exc.message if isinstance(exc, AppError) else str(exc) or repr(exc)
            await self.rt.writer.fail(self.job_id, code, message, self.mine)
            return "failed"
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        status = "succeeded"
        if isinstance(result, NeedsReview):
            status, result = "review", result.result
        await self.rt.writer.finish(
            self.job_id, status, {"result": result}, only_if=self.mine, result=result,
            progress=1.0,
        )  # fmt: skip
        return status

    def stop(self) -> None:
        """Stop the work now, as a cancel seen by :meth:`_watch` would (a local job
        cancelled in its own process need not wait for the next look)."""
        self.cancel_seen = True
        if self._work is not None:
            self._work.cancel()

    async def _claim(self) -> tuple[Job | None, JobKind | None]:
        """The job and its kind if this attempt may run now (and it is marked running)."""
        async with self.rt.db.session() as session:
            job = await repo.get(session, self.job_id)
        if job is None or job.attempt != self.attempt or job.status != "pending":
            return None, None  # settled, re-queued or unknown: a stale message
        pending = (Job.status == "pending", Job.attempt == self.attempt)
        kind = self.rt.kinds.get(job.kind)
        if kind is None:
            await self.rt.writer.fail(
                self.job_id, "unknown_kind", f"no worker knows kind {job.kind!r}", pending
            )
            return None, None
        if job.cancel_requested:
            await self.rt.writer.cancelled(self.job_id, only_if=pending, by="worker")
            return None, None
        now = utcnow()
        claimed = await self.rt.writer.append(
            self.job_id,
            "status",
            {"status": "running", "attempt": self.attempt, "worker": self.rt.name},
            only_if=pending,
            status="running",
            worker=self.rt.name,
            heartbeat_at=now,
            started_at=now,
        )
        return (job, kind) if claimed is not None else (None, None)

    async def _watch(self, task: asyncio.Task[Any]) -> None:
        """Heartbeat, and cancel ``task`` once a cancel is asked for."""
        beat = self.rt.settings.jobs_heartbeat_seconds
        next_beat = time.monotonic() + beat
        while not task.done():
            await asyncio.sleep(min(CANCEL_CHECK, beat))
            async with self.rt.db.session() as session:
                wanted = await repo.cancel_requested(session, self.job_id)
                if time.monotonic() >= next_beat:
                    await repo.heartbeat(session, self.job_id, self.rt.name)
                    next_beat = time.monotonic() + beat
            if wanted is None or wanted:
                # Cancelled, or settled by someone else (the gateway's cancel grace ran
                # out, the reaper): stop the work either way.
                self.cancel_seen = True
                task.cancel()
                return

    async def _retry_or_fail(self, job: Job, kind: JobKind, reason: str) -> str:
        if self.attempt < kind.max_attempts:
            job.attempt = self.attempt
            if await self.rt.writer.requeue(job, kind, self.rt.dispatcher, reason):
                return "retrying"
            return "skipped"
        await self.rt.writer.fail(
            self.job_id, "job_failed", f"{reason} (attempt {self.attempt} of {kind.max_attempts})",
            self.mine,
        )  # fmt: skip
        return "failed"
