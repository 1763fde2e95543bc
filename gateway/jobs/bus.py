"""How job processes reach each other: dispatching a job to a worker (Celery), and
saying "job X has new events" (Redis pub/sub, or nothing: readers poll)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from gateway.observability.tracing import current_carrier

if TYPE_CHECKING:
    from celery import Celery

    from gateway.jobs.kinds import JobKind

log = logging.getLogger("gateway.jobs")

EVENTS_CHANNEL = "mcpgw:jobs:events"
TASK_NAME = "mcpgw.jobs.run"


class Dispatcher(Protocol):
    """Hands jobs to workers (blocking calls: run them in a thread from async code)."""

    def send(
        self,
        job_id: str,
        attempt: int,
        kind: JobKind,
        countdown: float = 0,
        trace: dict[str, str] | None = None,
    ) -> None:
        """Queue attempt ``attempt`` of the job for a worker of ``kind``'s queue (its
        spans under the current trace, else under ``trace``: the job's own)."""

    def revoke(self, job_id: str, attempt: int, terminate: bool = False) -> None:
        """Tell workers not to run (``terminate``: to kill) that attempt, where the broker
        can broadcast; a no-op otherwise (cancellation is cooperative anyway)."""


def task_id(job_id: str, attempt: int) -> str:
    """The Celery task id of one attempt of a job."""
    return f"{job_id}.{attempt}"


class CeleryDispatcher:
    """:class:`Dispatcher` over a Celery app, made on first use: importing Celery costs
    about half a second, which a gateway that runs no job should not pay at start."""

    def __init__(self, app: Celery | Callable[[], Celery], can_broadcast: bool) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.can_broadcast = can_broadcast

    @property
    def app(self) -> Celery:
        """The Celery app (made now if not yet)."""
        if callable(self._app) and not hasattr(self._app, "send_task"):
            with self._lock:
                if callable(self._app) and not hasattr(self._app, "send_task"):
                    self._app = self._app()
        return self._app

    def send(
        self,
        job_id: str,
        attempt: int,
        kind: JobKind,
        countdown: float = 0,
        trace: dict[str, str] | None = None,
    ) -> None:
        self.app.send_task(
            TASK_NAME,
            args=[job_id, attempt],
            task_id=task_id(job_id, attempt),
            queue=kind.queue,
            countdown=countdown or None,
            time_limit=kind.hard_time_limit,
            # The W3C context of what queued it (a request, or the attempt before), so
            # the worker's spans continue that trace (gateway/jobs/tracing.py). Called
            # in a thread of the request: the context came along (asyncio.to_thread).
            # Queued outside any trace (the reaper): the job's own, stored with it.
            headers=current_carrier() or trace,
        )

    def revoke(self, job_id: str, attempt: int, terminate: bool = False) -> None:
        if not self.can_broadcast:
            return
        try:
            self.app.control.revoke(task_id(job_id, attempt), terminate=terminate)
        except Exception as exc:  # the cooperative path and the reaper still stop it
            log.warning("revoke failed", extra={"job": job_id, "error": str(exc)})


class Notifier(Protocol):
    """Says that a job has new events, to every gateway process."""

    async def notify(self, job_id: str) -> None:
        """Publish a wake-up for ``job_id`` (best effort: readers also poll)."""

    async def close(self) -> None:
        """Release connections."""


class NullNotifier:
    """No wake-ups: readers poll the database (embedded mode, one machine)."""

    async def notify(self, job_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisNotifier:
    """Wake-ups over Redis pub/sub (one channel; the payload is the job id)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.client = aioredis.from_url(url)

    async def notify(self, job_id: str) -> None:
        try:
            await self.client.publish(EVENTS_CHANNEL, job_id)
        except Exception as exc:  # readers fall back to their slow poll
            log.warning("job wake-up not published", extra={"job": job_id, "error": str(exc)})

    async def close(self) -> None:
        await self.client.aclose()


def make_notifier(redis_url: str | None) -> Notifier:
    """Redis pub/sub with a Redis URL, else none."""
    return RedisNotifier(redis_url) if redis_url else NullNotifier()
