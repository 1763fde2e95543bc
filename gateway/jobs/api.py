"""`/api/v1/jobs`: list, show, submit (built-in kinds), cancel, and the event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway.auth.deps import CurrentPrincipal
from gateway.errors import ERROR_RESPONSES, InvalidInput, error_responses
from gateway.jobs.models import STATUSES
from gateway.jobs.schemas import JobAccepted, JobApprove, JobOut, JobPage, JobReject, JobSubmit
from gateway.jobs.service import JobService
from gateway.provided import provided

router = APIRouter(tags=["jobs"])


def _jobs(request: Request) -> JobService:
    return provided(request, "jobs", JobService)


Jobs = Annotated[JobService, Depends(_jobs)]


@router.get("/jobs", response_model=JobPage, responses=ERROR_RESPONSES)
async def list_jobs(
    jobs: Jobs,
    principal: CurrentPrincipal,
    status: Annotated[str | None, Query(description=" | ".join(STATUSES))] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[datetime | None, Query(description="Jobs created before this.")] = None,
    all: Annotated[bool, Query(description="Everybody's jobs (admins).")] = False,
) -> JobPage:
    """Your jobs, newest first (an admin's `all=true`: everybody's)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {list(STATUSES)}", code="bad_filter")
    items = await jobs.list(
        principal, status=status, kind=kind, limit=limit, before=before, everyone=all
    )
    next_before = items[-1].created_at if len(items) == limit else None
    return JobPage(items=[JobOut.of(j) for j in items], next_before=next_before)


@router.post("/jobs", status_code=202, response_model=JobAccepted, responses=error_responses(503))
async def submit_job(jobs: Jobs, principal: CurrentPrincipal, body: JobSubmit) -> JobAccepted:
    """Start a job of a built-in kind (`noop`, `echo`, `sleep`); needs `jobs:write`."""
    job = await jobs.submit_direct(principal, body.kind, body.input)
    return JobAccepted(job_id=job.id, status=job.status)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=ERROR_RESPONSES)
async def get_job(jobs: Jobs, principal: CurrentPrincipal, job_id: str) -> JobOut:
    """One job: `{id, kind, status, progress, result?, error?}` and its times."""
    return JobOut.of(await jobs.get(principal, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, responses=ERROR_RESPONSES)
async def cancel_job(jobs: Jobs, principal: CurrentPrincipal, job_id: str) -> JobOut:
    """Cancel a job: it is `cancelled` when this returns (a settled job is unchanged)."""
    return JobOut.of(await jobs.cancel(principal, job_id))


@router.post("/jobs/{job_id}/approve", response_model=JobOut, responses=error_responses(409))
async def approve_job(
    jobs: Jobs, principal: CurrentPrincipal, job_id: str, body: JobApprove | None = None
) -> JobOut:
    """Approve a draft waiting in `review` (a generated server: register it with the
    chosen `tools`); the job is then `succeeded`. `409 job_not_in_review` otherwise."""
    choice = body.model_dump(exclude_none=True) if body is not None else {}
    return JobOut.of(await jobs.reviews.approve(principal, job_id, choice))


@router.post("/jobs/{job_id}/reject", response_model=JobOut, responses=error_responses(409))
async def reject_job(
    jobs: Jobs, principal: CurrentPrincipal, job_id: str, body: JobReject | None = None
) -> JobOut:
    """Turn down a draft waiting in `review`: the job is `cancelled` (by `reviewer`). With
    `feedback`, a model-made draft is made again by a new job: `result.rejected.next_job_id`."""
    feedback = body.feedback if body is not None else None
    return JobOut.of(await jobs.reviews.reject(principal, job_id, feedback))


@router.get(
    "/jobs/{job_id}/events",
    responses={**ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}}}},
)
async def job_events(
    jobs: Jobs,
    principal: CurrentPrincipal,
    job_id: str,
    last_event_id: Annotated[
        str | None, Header(description="Resume after this event (SSE reconnection).")
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Resume after this event (when no header).")
    ] = None,
) -> EventSourceResponse:
    """The job's events as Server-Sent Events: from the start (or after `Last-Event-ID`),
    then live, ending with `result`, `error` or `cancelled`. Each event's `id` is its
    sequence number, `event` its type and `data` its JSON."""
    start = after or 0
    if last_event_id:
        if not last_event_id.isdigit():
            raise InvalidInput("Last-Event-ID must be an event's id", code="bad_event_id")
        start = int(last_event_id)
    events = await jobs.events(principal, job_id, start)
    ping = jobs.sse_ping

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield ServerSentEvent(
                data=orjson.dumps(event.data).decode(),
                event=event.type,
                id=str(event.seq),
            )

    return EventSourceResponse(stream(), ping=ping)
