"""Writing a job's state: one event per change, committed, then announced.

Shared by the gateway (submit, cancel, the reaper) and the worker (claim, progress,
result), so every change takes the same path: :func:`repository.append_event` in its
own transaction, then a wake-up for the readers of the job's events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement

from gateway.db import Database, utcnow
from gateway.jobs import repository as repo
from gateway.jobs.bus import Dispatcher, Notifier
from gateway.jobs.kinds import JobKind
from gateway.jobs.models import Job, JobEvent

log = logging.getLogger("gateway.jobs")


def error_body(code: str, message: str) -> dict[str, str]:
    """The ``error`` of a failed job (as the API's errors: a code and a message)."""
    return {"code": code, "message": message[:2000]}


class JobWriter:
    """Appends events to jobs and wakes their readers."""

    def __init__(self, db: Database, notifier: Notifier) -> None:
        self.db = db
        self.notifier = notifier

    async def append(
        self,
        job_id: str,
        type: str,
        data: Any = None,
        *,
        only_if: Iterable[ColumnElement[bool]] = (),
        **changes: Any,
    ) -> JobEvent | None:
        """One event (and the row's ``changes``) if ``only_if`` holds; None if not."""
        async with self.db.session() as session:
            event = await repo.append_event(session, job_id, type, data, only_if=only_if, **changes)
        if event is not None:
            await self.notifier.notify(job_id)
        return event

    async def finish(
        self,
        job_id: str,
        status: str,
        data: dict[str, Any],
        *,
        only_if: Iterable[ColumnElement[bool]],
        **changes: Any,
    ) -> JobEvent | None:
        """Settle the job: its terminal event (``result``/``error``/``cancelled``)."""
        type = {"succeeded": "result", "review": "result", "failed": "error"}.get(status, status)
        return await self.append(
            job_id,
            type,
            {"status": status, **data},
            only_if=only_if,
            status=status,
            finished_at=utcnow(),
            **changes,
        )

    async def fail(
        self, job_id: str, code: str, message: str, only_if: Iterable[ColumnElement[bool]]
    ) -> JobEvent | None:
        """Settle the job as failed with ``{code, message}``."""
        body = error_body(code, message)
        return await self.finish(job_id, "failed", {"error": body}, only_if=only_if, error=body)

    async def cancelled(
        self, job_id: str, only_if: Iterable[ColumnElement[bool]], by: str
    ) -> JobEvent | None:
        """``by``: who stopped it: ``worker`` (cooperatively), ``gateway`` (before it
        ran, or after the grace ran out) or ``reaper`` (its worker was lost); the job
        service's reject says ``reviewer`` (a draft turned down)."""
        return await self.finish(job_id, "cancelled", {"by": by}, only_if=only_if)

    async def requeue(self, job: Job, kind: JobKind, dispatcher: Dispatcher, reason: str) -> bool:
        """Queue the job's next attempt after a backoff, if this attempt is still current
        and running; False if it was not (someone else settled or re-queued it)."""
        nxt = job.attempt + 1
        backoff = kind.retry_backoff_seconds * 2 ** (job.attempt - 1)
        event = await self.append(
            job.id,
            "status",
            {"status": "pending", "attempt": nxt, "retry_in": backoff, "reason": reason},
            only_if=(Job.status == "running", Job.attempt == job.attempt),
            status="pending",
            attempt=nxt,
            worker=None,
            heartbeat_at=None,
            progress=None,  # the next attempt starts over
            message=None,
        )
        if event is None:
            return False
        try:
            await asyncio.to_thread(dispatcher.send, job.id, nxt, kind, backoff, job.trace)
        except Exception as exc:
            log.exception("re-queueing a job failed", extra={"job": job.id})
            await self.fail(
                job.id,
                "broker_unavailable",
                f"could not queue attempt {nxt}: {exc}",
                only_if=(Job.status == "pending", Job.attempt == nxt),
            )
        return True
