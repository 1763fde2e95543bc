"""Jobs in production mode: PostgreSQL, Redis (127.0.0.1:6379) as Celery's broker and
result backend and as the wake-up bus, `mcpgw worker` processes of their own, two
gateway processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import create_pg_database, drop_pg_database
from tests.integration.jobs.sse import assert_complete, read_events
from tests.integration.jobs.test_embedded import _client, _job, _status, _submit
from tests.support import BOOT, MCPGW, Server, wait_for

REDIS = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")


@pytest.fixture(scope="module")
def production() -> Iterator[dict[str, str]]:
    """The environment of a production deployment: a fresh PostgreSQL database and a
    Redis database picked at random (what Celery wrote there is deleted after)."""
    url = f"{REDIS.rstrip('/')}/{random.randint(1, 15)}"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is needed at {REDIS}: {exc}", pytrace=False)
    db_url = create_pg_database("mcpgw_jobs")
    yield {
        "MCPGW_DATABASE_URL": db_url,
        "MCPGW_AUTO_MIGRATE": "true",
        "MCPGW_REDIS_URL": url,
        "MCPGW_BOOTSTRAP_API_KEY": BOOT,
        "MCPGW_JOBS_HEARTBEAT_SECONDS": "0.2",
        "MCPGW_JOBS_STALE_SECONDS": "1.5",
        "MCPGW_JOBS_REAPER_INTERVAL_SECONDS": "0.3",
    }
    drop_pg_database(db_url)
    for pattern in ("jobs", "_kombu.*", "unacked*", "celery-task-meta-*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    client.close()


class Workers:
    """`mcpgw worker` processes (each in its own process group), stopped after the test."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env, self.procs = tmp_path, env, list[subprocess.Popen[bytes]]()

    def start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCPGW_")}
        env.update(self.env, MCPGW_DATA_DIR=str(self.tmp_path / "worker-data"))
        log = (self.tmp_path / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [MCPGW, "worker", "-c", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], production: dict[str, str]) -> Server:
    """One gateway for the module (each test makes jobs of its own)."""
    return _gateway(module_server_factory, production)


@pytest.fixture
def workers(tmp_path: Path, production: dict[str, str]) -> Iterator[Workers]:
    found = Workers(tmp_path, production)
    yield found
    found.stop()


def _gateway(server_factory: type[Server], env: dict[str, str], **extra: str) -> Server:
    server = server_factory(**env, **extra)
    server.wait_ready(timeout=60)
    return server


async def test_subscriber_on_another_gateway_is_woken_through_redis(
    gateway: Server, server_factory: type[Server], production: dict[str, str], workers: Workers
) -> None:
    """The second gateway polls only every 200 s: it sees the events in time only
    because Redis wakes it."""
    first = gateway
    second = _gateway(server_factory, production, MCPGW_JOBS_POLL_SECONDS="10")
    workers.start()
    async with _client(first) as a, _client(second) as b:
        job_id = await _submit(a, "sleep", seconds=1, steps=5)
        events = await read_events(b, job_id, {}, timeout=60)
    assert_complete(events)
    assert [e.event for e in events] == ["status", "status", *["progress"] * 5, "result"]
    assert events[-1].data["result"] == {"slept": 1.0, "steps": 5}


async def test_cancel_and_retry_on_redis(gateway: Server, workers: Workers) -> None:
    workers.start()
    async with _client(gateway) as client:
        job_id = await _submit(client, "sleep", seconds=30, steps=300)
        await wait_for(lambda: _status(client, job_id, "running"), timeout=60, what="running")
        r = await client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert r.json()["status"] == "cancelled", r.text
        events = await read_events(client, job_id, {}, timeout=10)
        assert events[-1].data == {"status": "cancelled", "by": "worker"}
        # a job that fails its first attempt on purpose is retried with backoff
        job_id = await _submit(client, "sleep", seconds=0.2, steps=2, flaky=1)
        events = await read_events(client, job_id, {}, timeout=60)
        job = await _job(client, job_id)
    assert job["status"] == "succeeded" and job["attempt"] == 2
    assert_complete(events)
    retry = next(e for e in events if e.data.get("attempt") == 2)
    assert retry.data["status"] == "pending" and "fails on purpose" in retry.data["reason"]


async def test_worker_killed_mid_job_is_requeued_for_another_worker(
    gateway: Server, workers: Workers
) -> None:
    doomed = workers.start()
    async with _client(gateway) as client:
        job_id = await _submit(client, "sleep", seconds=3, steps=30)
        await wait_for(lambda: _status(client, job_id, "running"), timeout=60, what="running")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)
        requeued: dict[str, Any] = await wait_for(
            lambda: _status(client, job_id, "pending"), timeout=30, what="the job re-queued"
        )
        assert requeued["attempt"] == 2
        workers.start()
        done = await wait_for(
            lambda: _status(client, job_id, "succeeded", "failed"), timeout=60, what="the end"
        )
    assert done["status"] == "succeeded" and done["attempt"] == 2
