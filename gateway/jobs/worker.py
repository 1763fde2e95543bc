"""Celery worker processes: `mcpgw worker` itself, and the one `mcpgw serve` runs in
embedded mode (started with the first job, stopped with the gateway)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from pydantic import SecretStr

from gateway.config import Settings
from gateway.jobs.celery_app import create_celery, register_task
from gateway.jobs.kinds import KindRegistry

log = logging.getLogger("gateway.jobs")

# Settings an embedded worker must share with its gateway (passed in its environment).
_SHARED = (
    "data_dir", "database_url", "redis_url", "log_level", "log_format", "secret_key",
    "allow_private_urls",
)  # fmt: skip


def run_worker(
    settings: Settings,
    kinds: KindRegistry,
    *,
    concurrency: int,
    queues: list[str],
    loglevel: str = "INFO",
    parent_pid: int | None = None,
) -> None:
    """Run a Celery worker in this process until it is told to stop (blocks)."""
    app = create_celery(settings)
    app.mcpgw_settings = settings  # read by the runner
    app.mcpgw_kinds = kinds
    register_task(app)
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--queues={','.join(queues)}",
        f"--loglevel={loglevel}",
        f"--hostname=mcpgw.{os.getpid()}@%h",
        "--pool=prefork",
        # Gossip and mingle talk to the other workers at start: a second's delay for
        # nothing the jobs need (their state is in the database).
        "--without-gossip",
        "--without-mingle",
    ]
    app.worker_main(argv=argv)


def _exit_with_parent(parent_pid: int) -> None:
    """An embedded worker stops when its gateway is gone, even if killed outright."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment of an embedded worker: the gateway's, and its settings."""
    env = dict(os.environ)
    # telemetry_: the worker exports its jobs' spans where the gateway does, until a
    # configuration stored through the settings API replaces it (jobs/tracing.py).
    prefixes = ("jobs_", "llm_", "generate_", "telemetry_")
    names = [*_SHARED, *(n for n in Settings.model_fields if n.startswith(prefixes))]
    for name in names:
        value: Any = getattr(settings, name)
        key = f"MCPGW_{name.upper()}"
        if value is None:
            env.pop(key, None)
        elif isinstance(value, SecretStr):
            env[key] = value.get_secret_value()
        elif isinstance(value, dict | list):
            env[key] = json.dumps(value)  # as pydantic-settings reads complex values
        else:
            env[key] = str(value)
    return env


class EmbeddedWorker:
    """The worker process `mcpgw serve` runs for itself (one, with its own session so
    its pool processes stop with it)."""

    def __init__(self, settings: Settings, stop_timeout: float = 3.0) -> None:
        self.settings = settings
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Is the worker process alive?"""
        return self.proc is not None and self.proc.poll() is None

    def ensure_started(self) -> bool:
        """Start the worker unless it runs (cheap when it does; restarts a dead one).
        True when a process was started."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                return False
            if self.proc is not None:
                log.warning("the embedded job worker exited; starting another",
                            extra={"code": self.proc.returncode})  # fmt: skip
            command = [
                sys.executable, "-m", "gateway.cli", "worker",
                "--concurrency", str(self.settings.jobs_worker_concurrency),
                "--embedded-parent", str(os.getpid()),
            ]  # fmt: skip
            self.proc = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
                command, env=worker_env(self.settings), start_new_session=True
            )
            log.info("started the embedded job worker", extra={"pid": self.proc.pid})
            return True

    async def stop(self) -> None:
        """Warm shutdown, then, after ``stop_timeout`` seconds, kill its process group
        (a job cut short is settled by the reaper: failed, or re-queued per its kind)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # the main process stops its pool itself
        try:
            await asyncio.to_thread(proc.wait, self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
