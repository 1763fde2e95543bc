"""The Celery application of the gateway's jobs, configured from the settings.

Production (``MCPGW_REDIS_URL``): Redis is the broker and the result backend. Embedded
default: the SQLite broker of :mod:`gateway.jobs.broker` in the data directory. Either
way the same single task runs every job: ``mcpgw.jobs.run(job_id, attempt)``; the job's
kind, input and state live in the database, never in the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.jobs.bus import TASK_NAME

if TYPE_CHECKING:
    from celery import Celery

    from gateway.config import Settings

BROKER_FILE = "jobs-broker.db"


def broker_settings(settings: Settings) -> dict[str, Any]:
    """The Celery settings that name the broker and result backend."""
    if settings.redis_url:
        return {
            "broker_url": settings.redis_url,
            "result_backend": settings.redis_url,
            "result_expires": 86_400,
            # A message taken by a worker that dies comes back after this long; the
            # reaper has settled the job by then, and the runner skips settled jobs.
            "broker_transport_options": {"visibility_timeout": 3600},
        }
    path = Path(settings.data_dir).resolve() / BROKER_FILE
    return {
        "broker_url": f"sqlite:///{path}",
        "broker_transport": "gateway.jobs.broker:Transport",
        "broker_transport_options": {"polling_interval": settings.jobs_poll_seconds},
        "task_ignore_result": True,
    }


def create_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings`` (the task is registered by the worker only)."""
    from celery import Celery

    app = Celery("mcpgw", set_as_current=False)
    app.conf.update(
        broker_settings(settings),
        task_default_queue="jobs",
        task_serializer="json",
        accept_content=["json"],
        # A job is acknowledged once it ran, and handed back if its process is lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=5,
    )
    return app


def can_broadcast(settings: Settings) -> bool:
    """Does the broker carry Celery's remote control (revoke)? Redis does; SQLite not."""
    return settings.redis_url is not None


def register_task(app: Celery) -> None:
    """Register the one task (in the worker: it imports the runner)."""
    from celery.signals import worker_process_shutdown

    from gateway.jobs.runner import flush_tracing, run_task

    app.task(name=TASK_NAME, bind=True, acks_late=True, ignore_result=False)(run_task)
    worker_process_shutdown.connect(flush_tracing, weak=False)
