"""Request and response shapes of `/api/v1/jobs`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.jobs.models import Job


class JobError(BaseModel):
    code: str
    message: str


class JobOut(BaseModel):
    """A job as the API shows it: `{id, kind, status, progress, result?, error?}` and more."""

    id: str
    kind: str
    status: str = Field(description="pending | running | review | succeeded | failed | cancelled")
    progress: float | None = Field(None, description="0.0 to 1.0, when the job reports it.")
    message: str | None = Field(None, description="The latest progress text.")
    result: Any = None
    result_ref: str | None = None
    error: JobError | None = None
    owner_id: str | None = None
    team_id: str | None = None
    input_summary: str | None = None
    attempt: int
    max_attempts: int
    worker: str | None = Field(None, description="`host:pid` of the process running it.")
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    last_event: int = Field(description="Sequence number of the job's newest event.")

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            progress=job.progress,
            message=job.message,
            result=job.result,
            result_ref=job.result_ref,
            error=JobError.model_validate(job.error) if job.error else None,
            owner_id=job.owner_id,
            team_id=job.team_id,
            input_summary=job.input_summary,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            worker=job.worker,
            cancel_requested=job.cancel_requested,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            updated_at=job.updated_at,
            last_event=job.last_seq,
        )


class JobPage(BaseModel):
    items: list[JobOut]
    next_before: datetime | None = Field(
        None, description="Pass as `before` for older jobs (absent: no more)."
    )


class JobSubmit(BaseModel):
    """A job of a kind that may be submitted directly (the built-in `noop`, `echo`,
    `sleep`); generators have endpoints of their own."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(max_length=64)
    input: dict[str, Any] = Field(default_factory=dict)


class JobAccepted(BaseModel):
    job_id: str
    status: str


class JobApprove(BaseModel):
    """Approve a draft; what a reviewer may choose depends on the job's kind (a
    generated server: `tools`, `name`, `base_url`; a generated skill: nothing, it is
    stored under the name it was generated with)."""

    model_config = ConfigDict(extra="forbid")

    tools: list[str] | None = Field(
        None, max_length=5000, description="Only these tools (default: those marked include)."
    )
    name: str | None = Field(None, max_length=63, description="Register under this name.")
    base_url: str | None = Field(None, max_length=2048, description="Call the API here.")


class JobReject(BaseModel):
    """Reject a draft; with feedback, a model-made draft is made again."""

    model_config = ConfigDict(extra="forbid")

    feedback: str | None = Field(None, max_length=4000)
