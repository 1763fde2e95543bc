"""Local jobs: jobs whose work runs in the gateway process that submitted them.

A tool call made as a job (an async REST call, an MCP task) needs what only that
process holds: the pooled backend sessions (stdio children, in-process generated
servers, the agent's relay). A Celery worker cannot reach them, so such a kind is
marked ``local`` and its work is handed to :meth:`JobService.submit` as a coroutine
function. Everything else is the jobs core's as for any job: the row and its ordered
events, the result and its TTL, cancellation, the SSE stream, the reaper. The work
runs under the same :class:`~gateway.jobs.runner.JobRun` a worker uses (claim,
heartbeat, cancel checks, settle), so a local job and a worker's job look alike to
every reader; only where the work runs differs.

If the gateway process dies mid-job, its heartbeat stops and the reaper of any
replica settles the job (``worker_lost``; local kinds are never retried elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

from gateway.config import Settings
from gateway.db import Database
from gateway.jobs.bus import Dispatcher
from gateway.jobs.kinds import Handler, KindRegistry
from gateway.jobs.models import Job
from gateway.jobs.runner import JobRun, WorkerRuntime
from gateway.jobs.writer import JobWriter

log = logging.getLogger("gateway.jobs")


class LocalRuntime(WorkerRuntime):
    """A :class:`WorkerRuntime` on the gateway's own loop, database and writer."""

    def __init__(
        self,
        settings: Settings,
        kinds: KindRegistry,
        dispatcher: Dispatcher,
        db: Database,
        writer: JobWriter,
    ) -> None:
        # Not WorkerRuntime.__init__: it makes a loop and a database of its own.
        self.settings = settings
        self.kinds = kinds
        self.dispatcher = dispatcher
        self.db = db
        self.writer = writer
        self.pid = os.getpid()
        self.name = f"{socket.gethostname()}:{self.pid}/gateway"


class LocalJobs:
    """The local jobs this process runs, by id."""

    def __init__(self, rt: LocalRuntime) -> None:
        self.rt = rt
        self._runs: dict[str, tuple[JobRun, asyncio.Task[str]]] = {}

    def start(self, job_id: str, work: Handler) -> None:
        """Run ``work`` as attempt 1 of the (pending) job ``job_id``, in the background."""
        run = JobRun(self.rt, job_id, 1, work)
        task = asyncio.create_task(run.run(), name=f"job-{job_id}")
        self._runs[job_id] = (run, task)
        task.add_done_callback(lambda _: self._runs.pop(job_id, None))

    def stop(self, job_id: str) -> bool:
        """Stop the job's work at once if it runs here (True); it settles ``cancelled``."""
        found = self._runs.get(job_id)
        if found is None:
            return False
        found[0].stop()
        return True

    async def wait(self, job_id: str) -> None:
        """Until the job's run here has ended (at once if none runs)."""
        found = self._runs.get(job_id)
        if found is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(found[1])

    async def close(self) -> None:
        """The gateway stops: end every local job (settled as failed: its process goes)."""
        runs = list(self._runs.items())
        for _, (_, task) in runs:
            task.cancel()
        for job_id, (run, task) in runs:
            with contextlib.suppress(BaseException):
                await task
            await self.rt.writer.fail(
                job_id,
                "worker_lost",
                "the gateway process running this job stopped",
                only_if=(Job.status.in_(("pending", "running")), Job.attempt == run.attempt),
            )
