"""The jobs use cases: submit, get, list, cancel, follow events; and the reaper.

Who sees what: a caller sees their own jobs; an admin sees everybody's. Someone
else's job is answered as if it did not exist (404), so job ids reveal nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from opentelemetry.trace import SpanKind

from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from gateway.db import Database, new_id, utcnow
from gateway.errors import AppError, InvalidInput, NotFound
from gateway.jobs import repository as repo
from gateway.jobs.bus import Dispatcher
from gateway.jobs.hub import EventHub
from gateway.jobs.kinds import Handler, JobKind, KindRegistry
from gateway.jobs.local import LocalJobs
from gateway.jobs.models import TERMINAL, TERMINAL_EVENTS, Job, JobEvent
from gateway.jobs.repository import ACTIVE
from gateway.jobs.review import JobReviews
from gateway.jobs.writer import JobWriter
from gateway.observability.tracing import current_carrier, operation

log = logging.getLogger("gateway.jobs")


class JobsUnavailable(AppError):
    """The broker cannot take the job now."""

    status_code = 503
    code = "jobs_unavailable"


class JobService:
    """Jobs of this gateway: the only place that combines the table, the broker and
    the event hub."""

    def __init__(
        self,
        db: Database,
        kinds: KindRegistry,
        dispatcher: Dispatcher,
        writer: JobWriter,
        hub: EventHub,
        *,
        cancel_grace: float = 1.5,
        stale_after: float = 30.0,
        result_ttl: float = 168 * 3600.0,
        on_submit: Callable[[], bool] | None = None,
        sse_ping: float = 15.0,
        audit: AuditLog | None = None,
        local: LocalJobs | None = None,
    ) -> None:
        self.db = db
        self.kinds = kinds
        self.dispatcher = dispatcher
        self.writer = writer
        self.hub = hub
        self.cancel_grace = cancel_grace
        self.stale_after = stale_after
        self.result_ttl = result_ttl
        self.on_submit = on_submit
        self.sse_ping = sse_ping
        self.audit = audit
        self.local = local
        self.reviews = JobReviews(self)

    # --- submit -------------------------------------------------------------------
    async def submit(
        self,
        principal: Principal | None,
        kind_name: str,
        data: dict[str, Any],
        work: Handler | None = None,
    ) -> Job:
        """Record a job of ``kind_name`` and queue it; the job as recorded (pending).

        ``principal``: whose job it is (None: the system's). Pillars call this for
        their job kinds; ``POST /api/v1/jobs`` only for ``submittable`` kinds. A
        ``local`` kind's job runs ``work`` in this process instead (local.py); it is
        recorded before this returns, so it can be read at once.
        """
        kind = self.kind(kind_name)
        if kind.local != (work is not None) or (kind.local and self.local is None):
            raise ValueError(f"a {kind.name!r} job needs work given exactly when it is local")
        data = kind.validate(data)
        job = Job(
            id=new_id(),
            kind=kind.name,
            owner_id=principal.user_id if principal else None,
            team_id=principal.team_ids[0] if principal and principal.team_ids else None,
            status="pending",
            input=data,
            input_summary=kind.summary(data),
            attempt=1,
            max_attempts=kind.max_attempts,
            last_seq=0,
            trace=current_carrier(),
        )
        async with self.db.session() as session:
            session.add(job)
            await session.flush()
            await repo.append_event(session, job.id, "status", {"status": "pending"})
        if work is not None and self.local is not None:
            self.local.start(job.id, work)
        else:
            await self._queue(job, kind)
        self.hub.wake()
        if self.audit is not None:
            new = {"kind": job.kind, "input": job.input_summary}
            self.audit.change("job.create", principal, job.id, new=new)
        return job

    async def _queue(self, job: Job, kind: JobKind) -> None:
        """Hand the recorded job to the broker (:class:`JobsUnavailable` if it cannot)."""
        if self.on_submit is not None and self.on_submit():
            # A fresh worker: messages a dead one had taken are gone.
            await self.resend_pending(but=job.id)
        attributes = {
            "mcpgw.job.id": job.id,
            "mcpgw.job.kind": kind.name,
            "messaging.system": "celery",
            "messaging.destination.name": kind.queue,
        }
        try:
            # A PRODUCER span under the request's; its context rides in the message.
            with operation("job.submit", attributes, kind=SpanKind.PRODUCER):
                await asyncio.to_thread(self.dispatcher.send, job.id, 1, kind)
        except Exception as exc:
            log.exception("queueing a job failed", extra={"job": job.id})
            await self.writer.fail(
                job.id, "broker_unavailable", f"the job could not be queued: {exc}",
                only_if=(Job.status == "pending",),
            )  # fmt: skip
            raise JobsUnavailable("the job broker is unavailable; try again later") from exc

    async def submit_direct(
        self, principal: Principal, kind_name: str, data: dict[str, Any]
    ) -> Job:
        """``POST /api/v1/jobs``: a job of a ``submittable`` kind (needs ``jobs:write``)."""
        principal.require("jobs:write")
        if not self.kind(kind_name).submittable:
            raise InvalidInput(
                f"jobs of kind {kind_name!r} are started by their own endpoint",
                code="job_kind_not_submittable",
            )
        return await self.submit(principal, kind_name, data)

    def kind(self, name: str) -> JobKind:
        """The kind called ``name``; :class:`InvalidInput` naming the known ones if none."""
        found = self.kinds.get(name)
        if found is None:
            raise InvalidInput(
                f"unknown job kind {name!r}; known: {self.kinds.names()}", code="unknown_job_kind"
            )
        return found

    # --- read ---------------------------------------------------------------------
    async def get(self, principal: Principal, job_id: str) -> Job:
        """The job, if ``principal`` may see it; :class:`NotFound` otherwise."""
        principal.require("jobs:read")
        return await self.own(principal, job_id)

    async def own(self, principal: Principal, job_id: str, kind: str | None = None) -> Job:
        """The job (of ``kind``, if given) if ``principal`` may see it, needing no
        scope: a pillar's own view of the jobs its callers started (an MCP task)."""
        async with self.db.session() as session:
            job = await repo.get(session, job_id)
        if job is None or not _visible(principal, job) or kind not in (None, job.kind):
            raise NotFound(f"no job {job_id!r}", code="job_not_found")
        return job

    async def list(
        self,
        principal: Principal,
        *,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        before: datetime | None = None,
        everyone: bool = False,
        check: bool = True,
    ) -> list[Job]:
        """Newest first: the caller's jobs (an admin's ``everyone``: all jobs).
        ``check=False``: a pillar listing its callers' own jobs (no scope needed)."""
        if check:
            principal.require("jobs:read")
        owner = None if everyone and principal.is_admin else principal.user_id
        async with self.db.session() as session:
            rows = await repo.page(
                session, owner_id=owner, status=status, kind=kind, limit=limit, before=before
            )
        return list(rows)

    async def events(
        self, principal: Principal, job_id: str, after: int = 0
    ) -> AsyncIterator[JobEvent]:
        """The job's events after ``after``, then live ones, ending with its terminal
        event. Checks access before the first event."""
        await self.get(principal, job_id)
        return self._events(job_id, after)

    async def events_of(self, job_id: str, types: Sequence[str]) -> Sequence[JobEvent]:
        """The job's events of ``types`` so far, in order (no access check: callers
        check it)."""
        async with self.db.session() as session:
            return await repo.events_of(session, job_id, types)

    async def note(self, job_id: str, type: str, data: Any) -> bool:
        """Append an event to a job still running (wherever it runs), waking whoever
        follows it; False when the job has ended."""
        active = [Job.status.in_(ACTIVE)]
        if await self.writer.append(job_id, type, data, only_if=active) is None:
            return False
        self.hub.wake()
        return True

    async def _events(self, job_id: str, after: int) -> AsyncIterator[JobEvent]:
        async for event in self.hub.follow(job_id, after):
            yield event
            if event.type in TERMINAL_EVENTS and not await self._reviewed(job_id, event):
                return

    async def _reviewed(self, job_id: str, event: JobEvent) -> bool:
        """Is ``event`` the ``result`` that put the job in review, and has a reviewer
        settled it since? (Then the stream goes on to the approval or rejection.)"""
        if event.type != "result" or (event.data or {}).get("status") != "review":
            return False
        async with self.db.session() as session:
            job = await repo.get(session, job_id)
        return job is not None and job.status != "review"

    # --- cancel -------------------------------------------------------------------
    async def cancel(self, principal: Principal, job_id: str, *, check: bool = True) -> Job:
        """Stop the job: a pending one at once; a running one cooperatively, and after
        ``cancel_grace`` seconds by force. A settled job is returned as it is.
        ``check=False``: the caller has checked access itself (:meth:`own`)."""
        job = await (self.get(principal, job_id) if check else self._reload(job_id))
        if job.status in TERMINAL:
            return job
        if self.audit is not None:
            self.audit.change("job.cancel", principal, job_id, old={"status": job.status})
        pending = (Job.status == "pending",)
        if await self.writer.cancelled(job_id, only_if=pending, by="gateway") is not None:
            self.hub.wake()
            await asyncio.to_thread(self.dispatcher.revoke, job.id, job.attempt)
            return await self._reload(job_id)
        async with self.db.session() as session:
            await repo.request_cancel(session, job_id)
        if self.local is not None and self.local.stop(job_id):
            await self.local.wait(job_id)  # settled here, at once
        deadline = time.monotonic() + self.cancel_grace
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            job = await self._reload(job_id)
            if job.status not in ACTIVE:
                return job
        # The worker did not stop it in time (blocked, or gone): settle it here, and
        # have the broker kill the attempt where it can.
        active = (Job.status.in_(ACTIVE),)
        if await self.writer.cancelled(job_id, only_if=active, by="gateway") is not None:
            self.hub.wake()
            await asyncio.to_thread(self.dispatcher.revoke, job.id, job.attempt, True)
        return await self._reload(job_id)

    async def _reload(self, job_id: str) -> Job:
        async with self.db.session() as session:
            job = await repo.get(session, job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", code="job_not_found")
        return job

    # --- reaper -------------------------------------------------------------------
    async def reap(self) -> int:
        """Settle running jobs whose worker went silent (re-queue those whose kind may
        repeat, fail the rest) and delete jobs finished longer ago than the TTL.
        Safe on every replica at once: each change is guarded by the state it saw."""
        now = utcnow()
        async with self.db.session() as session:
            lost = await repo.stale_running(session, now - timedelta(seconds=self.stale_after))
        settled = 0
        for job in lost:
            settled += await self._settle_lost(job)
        async with self.db.session() as session:
            pruned = await repo.prune_finished(session, now - timedelta(seconds=self.result_ttl))
        if settled or pruned:
            self.hub.wake()
            log.info("job reaper", extra={"lost": settled, "pruned": pruned})
        return settled

    async def _settle_lost(self, job: Job) -> int:
        same = (Job.status == "running", Job.attempt == job.attempt, Job.worker == job.worker)
        kind = self.kinds.get(job.kind)
        if job.cancel_requested:
            return int(await self.writer.cancelled(job.id, only_if=same, by="reaper") is not None)
        what = f"its worker {job.worker} stopped answering during attempt {job.attempt}"
        if kind is not None and job.attempt < kind.max_attempts:
            return int(await self.writer.requeue(job, kind, self.dispatcher, what))
        return int(await self.writer.fail(job.id, "worker_lost", what, only_if=same) is not None)

    async def run_reaper(self, interval: float) -> None:
        """Reap every ``interval`` seconds (a background task of the app)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except Exception:  # next round
                log.exception("job reaper failed")

    async def resend_pending(self, but: str | None = None) -> int:
        """Queue every pending job's current attempt again (when a new embedded worker
        starts: the embedded broker does not return messages a killed worker had taken).
        A job whose message was not lost gets two; the second is skipped by the claim."""
        async with self.db.session() as session:
            pending = await repo.pending(session)
        sent = 0
        for job in pending:
            kind = self.kinds.get(job.kind)
            if kind is not None and not kind.local and job.id != but:
                await asyncio.to_thread(
                    self.dispatcher.send, job.id, job.attempt, kind, 0, job.trace
                )
                sent += 1
        return sent

    async def unfinished(self) -> int:
        """How many jobs wait for or run on a worker (local jobs need none)."""
        local = [k for k in self.kinds.names() if (kind := self.kinds.get(k)) and kind.local]
        async with self.db.session() as session:
            return await repo.unfinished_count(session, but=local)


def _visible(principal: Principal, job: Job) -> bool:
    return principal.is_admin or (job.owner_id is not None and job.owner_id == principal.user_id)
