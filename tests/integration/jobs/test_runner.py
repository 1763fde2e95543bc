"""The worker's side of a job (gateway/jobs/runner.py), run in this process on both
databases: what ends a job and how. The broker is replaced by a recorder (no Celery
here); end-to-end runs through real workers are in test_embedded.py/test_redis.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.config import Settings
from gateway.db import Database
from gateway.jobs import repository as repo
from gateway.jobs.bus import NullNotifier
from gateway.jobs.hub import EventHub
from gateway.jobs.kinds import JobContext, JobKind, KindRegistry, RetryableError
from gateway.jobs.models import Job
from gateway.jobs.runner import JobRun, WorkerRuntime
from gateway.jobs.service import JobService
from gateway.jobs.writer import JobWriter


class _Recorded:
    """Stands in for the broker: records what would have been queued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, float]] = []

    def send(
        self, job_id: str, attempt: int, kind: Any, countdown: float = 0, trace: Any = None
    ) -> None:
        self.sent.append((job_id, attempt, countdown))

    def revoke(self, job_id: str, attempt: int, terminate: bool = False) -> None:
        return None


async def _slow(ctx: JobContext, data: dict[str, Any]) -> Any:
    await ctx.log("starting")
    await asyncio.sleep(float(data.get("seconds", 30)))
    return "done"


async def _flaky(ctx: JobContext, data: dict[str, Any]) -> Any:
    raise RetryableError("upstream busy")


async def _sneaky(ctx: JobContext, data: dict[str, Any]) -> Any:
    await ctx.emit("result", {"fake": True})


KINDS = [
    JobKind("slow", _slow, soft_time_limit=0.3, hard_time_limit=5),
    JobKind("flaky", _flaky, max_attempts=2, retry_backoff_seconds=0.5),
    JobKind("sneaky", _sneaky),
]


@pytest.fixture
def world(database: Database, db_url: str, tmp_path: Any) -> tuple[JobService, WorkerRuntime]:
    kinds = KindRegistry()
    for kind in KINDS:
        kinds.register(kind)
    recorded = _Recorded()
    settings = Settings(database_url=db_url, data_dir=tmp_path, jobs_heartbeat_seconds=0.1)
    service = JobService(
        database, kinds, recorded, JobWriter(database, NullNotifier()), EventHub(database, 0.05),
        cancel_grace=0.5,
    )  # fmt: skip
    runtime = WorkerRuntime(settings, kinds, recorded)
    runtime.db, runtime.writer = database, JobWriter(database, NullNotifier())
    return service, runtime


async def _types(db: Database, job_id: str) -> list[str]:
    async with db.session() as session:
        return [e.type for e in await repo.events_after(session, job_id, 0)]


async def _job(db: Database, job_id: str) -> Job:
    async with db.session() as session:
        job = await session.get(Job, job_id)
    assert job is not None
    return job


async def test_soft_time_limit_fails_the_job(world: tuple[JobService, WorkerRuntime]) -> None:
    service, rt = world
    job = await service.submit(None, "slow", {"seconds": 30})
    assert await JobRun(rt, job.id, 1).run() == "timeout"
    done = await _job(service.db, job.id)
    assert done.status == "failed" and done.error["code"] == "timeout"
    assert await _types(service.db, job.id) == ["status", "status", "log", "error"]


async def test_retry_then_give_up(world: tuple[JobService, WorkerRuntime]) -> None:
    service, rt = world
    job = await service.submit(None, "flaky", {})
    assert await JobRun(rt, job.id, 1).run() == "retrying"
    assert rt.dispatcher.sent[-1] == (job.id, 2, 0.5)  # type: ignore[attr-defined]
    # the first attempt's message, delivered again, is skipped
    assert await JobRun(rt, job.id, 1).run() == "skipped"
    assert await JobRun(rt, job.id, 2).run() == "failed"
    done = await _job(service.db, job.id)
    assert done.status == "failed" and "attempt 2 of 2" in done.error["message"]


async def test_handlers_cannot_fake_the_end(world: tuple[JobService, WorkerRuntime]) -> None:
    service, rt = world
    job = await service.submit(None, "sneaky", {})
    assert await JobRun(rt, job.id, 1).run() == "failed"
    assert (await _types(service.db, job.id))[-1] == "error"


async def test_cancel_reaches_a_running_job(world: tuple[JobService, WorkerRuntime]) -> None:
    service, rt = world
    job = await service.submit(None, "slow", {"seconds": 0.25})
    run = asyncio.create_task(JobRun(rt, job.id, 1).run())
    while (await _job(service.db, job.id)).status != "running":
        await asyncio.sleep(0.01)
    async with service.db.session() as session:
        await repo.request_cancel(session, job.id)
    assert await asyncio.wait_for(run, 5) == "cancelled"
    assert (await _job(service.db, job.id)).status == "cancelled"
    assert (await _types(service.db, job.id))[-1] == "cancelled"


async def test_unknown_kind_and_cancelled_before_start(
    world: tuple[JobService, WorkerRuntime],
) -> None:
    service, rt = world
    job = await service.submit(None, "slow", {})
    async with service.db.session() as session:
        await repo.request_cancel(session, job.id)
    assert await JobRun(rt, job.id, 1).run() == "skipped"
    assert (await _job(service.db, job.id)).status == "cancelled"
    other = await service.submit(None, "slow", {})
    rt.kinds = KindRegistry()  # a worker of an older release
    assert await JobRun(rt, other.id, 1).run() == "skipped"
    assert (await _job(service.db, other.id)).error["code"] == "unknown_kind"
