"""The jobs part of the gateway's settings (mixed into :class:`gateway.config.Settings`):
Redis, the Celery broker and workers, job events and the reaper."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator


class JobSettings(BaseModel):
    """Settings of long-running jobs (gateway/jobs/)."""

    redis_url: str | None = Field(
        None,
        description="Redis (`redis://host:6379/0`): the Celery broker and result backend, and "
        "job-event wake-ups across replicas. Unset: the embedded broker (a SQLite file in "
        "data_dir) and a short database poll.",
    )
    jobs_embedded_worker: bool | None = Field(
        None,
        description="Let `mcpgw serve` run one Celery worker process itself (started with the "
        "first job, or at start when jobs are waiting; stopped with the gateway). Unset: on "
        "without MCPGW_REDIS_URL, off with it (run `mcpgw worker`).",
    )
    jobs_worker_concurrency: int = Field(
        1, ge=1, le=256, description="Jobs one worker process runs at once (`mcpgw worker -c`)."
    )
    jobs_heartbeat_seconds: float = Field(
        5.0, gt=0, le=600, description="How often a running job's worker says it is alive."
    )
    jobs_stale_seconds: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="A running job whose worker has been silent this long is lost: the reaper "
        "fails it, or re-queues it when its kind is safe to repeat.",
    )
    jobs_reaper_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often the reaper looks for lost and old jobs."
    )
    jobs_poll_seconds: float = Field(
        0.05,
        gt=0,
        le=10,
        description="Embedded mode: how often new job events, and the embedded broker's queue, "
        "are looked for. With Redis, wake-ups are pushed and this is only a safety net (x20).",
    )
    jobs_sse_ping_seconds: float = Field(
        15.0, gt=0, le=600, description="Heartbeat comment interval of job event streams."
    )
    jobs_cancel_grace_seconds: float = Field(
        1.5,
        ge=0,
        le=60,
        description="How long a cancel waits for the worker to stop the job before the "
        "gateway marks it cancelled itself (and terminates it where the broker allows).",
    )
    jobs_result_ttl_hours: float = Field(
        168.0,
        gt=0,
        description="Finished jobs, their results and events are deleted this long after "
        "they finish.",
    )

    image_build_ca_file: Path | None = Field(
        None,
        description="A PEM bundle the sandbox image generator trusts while it installs pip "
        "and npm packages (a proxy that re-signs TLS); removed before the image is finished.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def runs_embedded_worker(self) -> bool:
        """Does `mcpgw serve` run a worker process itself?"""
        if self.jobs_embedded_worker is None:
            return self.redis_url is None
        return self.jobs_embedded_worker
