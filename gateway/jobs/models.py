"""Tables of long-running jobs: one row per job, and its ordered, durable event log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime, new_id, utcnow

STATUSES = ("pending", "running", "review", "succeeded", "failed", "cancelled")
# A job in one of these never changes again (``review`` waits for a person, see #19).
TERMINAL = frozenset({"review", "succeeded", "failed", "cancelled"})
EVENT_TYPES = (
    "status",
    "progress",
    "log",
    "thinking",
    "token",
    "artifact",
    "result",
    "error",
    "cancelled",
    # A running MCP task's question for its agent, and the agent's answer
    # (gateway/servers/tasks.py): events, so that any replica can serve them.
    "input",
    "answer",
)
# The last event of every job's stream: exactly one of these ends it.
TERMINAL_EVENTS = frozenset({"result", "error", "cancelled"})


class Job(Base):
    """One job: what it is, whose, where it stands, and what came of it.

    ``last_seq`` is the sequence number of the job's newest event: an event is
    appended by incrementing it in the same transaction (the row lock orders the
    writers), so a job's events are numbered 1, 2, 3… with no gaps, in commit order.
    ``worker``/``heartbeat_at`` tell the reaper whether a running job's worker lives.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_owner_created", "owner_id", "created_at"),
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
        Index("ix_jobs_finished", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    team_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str | None] = mapped_column(String(500), nullable=True)
    input: Mapped[Any] = mapped_column(JSON, nullable=True)
    input_summary: Mapped[str | None] = mapped_column(String(500), nullable=True)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    result_ref: Mapped[str | None] = mapped_column(String(512), nullable=True)
    error: Mapped[Any] = mapped_column(JSON, nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    max_attempts: Mapped[int] = mapped_column(Integer, default=1)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The W3C context (traceparent, tracestate) of the request that created the job:
    # an attempt queued outside any trace (the reaper's) still continues its trace.
    trace: Mapped[Any] = mapped_column(JSON, nullable=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class JobEvent(Base):
    """One event of a job: ``seq`` counts from 1 per job (the SSE event id)."""

    __tablename__ = "job_events"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    ts: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
