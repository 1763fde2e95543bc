"""Queries over jobs and their events (async sessions; returns model objects).

Every change of a job's state goes through :func:`append_event`, so the event log
and the row never disagree: the row is updated and the event inserted in one
transaction, and a change guarded by a status (``only_if``) that no longer holds
writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import utcnow
from gateway.jobs.models import Job, JobEvent

# Statuses a worker may still change (the rest are settled).
ACTIVE = ("pending", "running")


async def append_event(
    session: AsyncSession,
    job_id: str,
    type: str,
    data: Any = None,
    *,
    only_if: Iterable[ColumnElement[bool]] = (),
    **changes: Any,
) -> JobEvent | None:
    """Apply ``changes`` to the job and append one event, atomically.

    ``only_if``: further WHERE terms (e.g. ``Job.status.in_(ACTIVE)``); when they do
    not hold, nothing is written and None is returned. The caller commits.
    """
    now = utcnow()
    stmt = (
        update(Job)
        .where(Job.id == job_id, *only_if)
        .values(last_seq=Job.last_seq + 1, updated_at=now, **changes)
        .returning(Job.last_seq)
    )
    seq = (await session.execute(stmt)).scalar_one_or_none()
    if seq is None:
        return None
    event = JobEvent(job_id=job_id, seq=seq, type=type, data=data, ts=now)
    session.add(event)
    await session.flush()
    return event


async def get(session: AsyncSession, job_id: str) -> Job | None:
    """The job, or None."""
    return await session.get(Job, job_id)


async def page(
    session: AsyncSession,
    *,
    owner_id: str | None,
    status: str | None,
    kind: str | None,
    limit: int,
    before: datetime | None,
) -> Sequence[Job]:
    """Jobs newest first; ``owner_id`` None: everybody's."""
    stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if owner_id is not None:
        stmt = stmt.where(Job.owner_id == owner_id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    if before is not None:
        stmt = stmt.where(Job.created_at < before)
    return (await session.scalars(stmt)).all()


async def events_after(
    session: AsyncSession, job_id: str, after: int, limit: int = 500
) -> Sequence[JobEvent]:
    """The job's events with ``seq > after``, in order."""
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.seq > after)
        .order_by(JobEvent.seq)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()


async def events_of(session: AsyncSession, job_id: str, types: Sequence[str]) -> Sequence[JobEvent]:
    """The job's events of ``types``, in order."""
    stmt = (
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.type.in_(list(types)))
        .order_by(JobEvent.seq)
    )
    return (await session.scalars(stmt)).all()


async def last_seqs(session: AsyncSession, job_ids: Iterable[str]) -> dict[str, int]:
    """``job id → last_seq`` of the jobs that exist among ``job_ids``."""
    rows = await session.execute(select(Job.id, Job.last_seq).where(Job.id.in_(list(job_ids))))
    return {job_id: seq for job_id, seq in rows.tuples()}


async def stale_running(session: AsyncSession, cutoff: datetime, limit: int = 100) -> Sequence[Job]:
    """Running jobs whose worker has not said it is alive since ``cutoff``."""
    stmt = (
        select(Job)
        .where(Job.status == "running", Job.heartbeat_at < cutoff)
        .order_by(Job.heartbeat_at)
        .limit(limit)
    )
    return (await session.scalars(stmt)).all()


async def pending(session: AsyncSession, limit: int = 1000) -> Sequence[Job]:
    """Jobs waiting for a worker, oldest first."""
    stmt = select(Job).where(Job.status == "pending").order_by(Job.created_at).limit(limit)
    return (await session.scalars(stmt)).all()


async def cancel_requested(session: AsyncSession, job_id: str) -> bool | None:
    """Has a cancel been asked for (None: the job is gone or no longer active)?"""
    row = (
        await session.execute(select(Job.cancel_requested, Job.status).where(Job.id == job_id))
    ).first()
    if row is None or row[1] not in ACTIVE:
        return None
    return bool(row[0])


async def heartbeat(session: AsyncSession, job_id: str, worker: str) -> None:
    """``worker`` still runs the job (only while it is the job's worker)."""
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "running", Job.worker == worker)
        .values(heartbeat_at=utcnow())
    )


async def request_cancel(session: AsyncSession, job_id: str) -> None:
    """Ask the job's worker to stop it (it looks every 0.2 s)."""
    await session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE)).values(cancel_requested=True)
    )


async def prune_finished(session: AsyncSession, cutoff: datetime, limit: int = 500) -> int:
    """Delete jobs (and, by cascade or here, their events) finished before ``cutoff``."""
    ids = (
        await session.scalars(
            select(Job.id).where(Job.finished_at < cutoff, Job.status.not_in(ACTIVE)).limit(limit)
        )
    ).all()
    if not ids:
        return 0
    # Explicitly: SQLite enforces ON DELETE CASCADE only with foreign keys on.
    await session.execute(delete(JobEvent).where(JobEvent.job_id.in_(ids)))
    await session.execute(delete(Job).where(Job.id.in_(ids)))
    return len(ids)


async def unfinished_count(session: AsyncSession, but: Sequence[str] = ()) -> int:
    """How many jobs wait or run (to start an embedded worker for them); ``but``:
    kinds not to count."""
    from sqlalchemy import func

    stmt = select(func.count()).select_from(Job).where(Job.status.in_(ACTIVE))
    if but:
        stmt = stmt.where(Job.kind.not_in(list(but)))
    return int((await session.execute(stmt)).scalar_one())
