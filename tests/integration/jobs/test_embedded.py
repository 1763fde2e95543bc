"""Jobs in the embedded default, end to end: real `mcpgw serve` processes on SQLite,
the Celery worker `serve` starts itself, the embedded SQLite broker, SSE over HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.jobs.sse import assert_complete, read_events
from tests.support import BOOT, MCPGW, Server, wait_for

AUTH = {"Authorization": f"Bearer {BOOT}"}


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server]) -> Server:
    server = module_server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_LOG_FORMAT="console")
    server.wait_ready()
    return server


def _client(server: Server) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    return httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=30, limits=limits)


async def _submit(client: httpx.AsyncClient, kind: str, **data: Any) -> str:
    r = await client.post("/api/v1/jobs", json={"kind": kind, "input": data})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def _job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    r = await client.get(f"/api/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _status(client: httpx.AsyncClient, job_id: str, *wanted: str) -> dict[str, Any] | None:
    job = await _job(client, job_id)
    return job if job["status"] in wanted else None


async def test_reconnect_with_last_event_id_gets_every_event_once(gateway: Server) -> None:
    async with _client(gateway) as client:
        job_id = await _submit(client, "sleep", seconds=1.5, steps=10)
        first = await read_events(client, job_id, {}, stop_after=4)
        assert [e.id for e in first] == [1, 2, 3, 4]
        rest = await read_events(client, job_id, {}, last_event_id=first[-1].id)
    events = first + rest
    assert_complete(events)
    assert [e.event for e in events[:2]] == ["status", "status"]
    assert [e.data["progress"] for e in events if e.event == "progress"] == [
        (i + 1) / 10 for i in range(10)
    ]
    assert events[-1].event == "result"
    assert events[-1].data == {"status": "succeeded", "result": {"slept": 1.5, "steps": 10}}


async def test_hundred_subscribers_get_every_event(gateway: Server) -> None:
    async with _client(gateway) as client:
        job_id = await _submit(client, "sleep", seconds=1.5, steps=5)
        streams = await asyncio.gather(
            *(read_events(client, job_id, {}, timeout=60) for _ in range(100))
        )
    for events in streams:
        assert_complete(events)
        assert [(e.id, e.event, e.data) for e in events] == [
            (e.id, e.event, e.data) for e in streams[0]
        ]
    assert [e.event for e in streams[0]].count("progress") == 5


async def test_cancel_stops_a_running_job(gateway: Server) -> None:
    async with _client(gateway) as client:
        job_id = await _submit(client, "sleep", seconds=30, steps=300)
        await wait_for(lambda: _status(client, job_id, "running"), what="the job to run")
        r = await client.post(f"/api/v1/jobs/{job_id}/cancel")
        assert r.status_code == 200, r.text
        # the cancel returns once the job is cancelled (at most the 1.5 s grace later)
        assert r.json()["status"] == "cancelled", r.json()
        events = await read_events(client, job_id, {}, timeout=5)
        assert_complete(events)
        assert events[-1].event == "cancelled"
        assert events[-1].data == {"status": "cancelled", "by": "worker"}  # not the fallback
        # the worker is free again: the next job runs
        job_id = await _submit(client, "echo", value=7)
        events = await read_events(client, job_id, {})
        assert events[-1].data == {"status": "succeeded", "result": {"value": 7}}


async def test_failure_is_an_error_event(gateway: Server) -> None:
    async with _client(gateway) as client:
        job_id = await _submit(client, "echo", fail="the backend said no")
        events = await read_events(client, job_id, {})
        job = await _job(client, job_id)
    assert events[-1].event == "error"
    assert events[-1].data["error"] == {"code": "job_failed", "message": "the backend said no"}
    assert job["status"] == "failed" and job["error"]["code"] == "job_failed"


async def test_second_gateway_follows_a_job_run_by_the_first(
    gateway: Server, module_server_factory: type[Server]
) -> None:
    """Both gateways use one data directory; only the first runs a worker."""
    other = module_server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_JOBS_EMBEDDED_WORKER="false")
    other.wait_ready()
    async with _client(gateway) as first, _client(other) as second:
        job_id = await _submit(first, "sleep", seconds=1, steps=4)
        events = await read_events(second, job_id, {})
    assert_complete(events)
    assert events[-1].event == "result" and len(events) == 7
    assert "worker" in events[1].data
    other.stop()


def _cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MCPGW_URL": server.url, "MCPGW_API_KEY": BOOT, "COLUMNS": "120"}
    return subprocess.run(
        [MCPGW, "jobs", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_submit_watch_show_list_cancel(gateway: Server) -> None:
    done = _cli(gateway, "submit", "sleep", "--input", '{"seconds": 0.5, "steps": 5}')
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    watched = _cli(gateway, "watch", job_id)
    assert watched.returncode == 0, watched.stderr
    assert '"slept": 0.5' in watched.stdout and "100%" in watched.stdout
    shown = _cli(gateway, "show", job_id)
    assert '"status": "succeeded"' in shown.stdout
    listed = _cli(gateway, "list", "--kind", "sleep")
    assert job_id in listed.stdout and "succeeded" in listed.stdout
    long = _cli(gateway, "submit", "sleep", "--input", '{"seconds": 30}').stdout.strip()
    cancelled = _cli(gateway, "cancel", long)
    assert cancelled.stdout.strip() == f"{long} cancelled", cancelled.stderr
    assert _cli(gateway, "watch", long).returncode == 1
    missing = _cli(gateway, "show", "no-such-job")
    assert missing.returncode == 1 and "job_not_found" in missing.stderr


async def test_worker_killed_mid_job_is_noticed_and_the_job_retried(
    server_factory: type[Server], tmp_path: Path
) -> None:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_JOBS_HEARTBEAT_SECONDS="0.2",
        MCPGW_JOBS_STALE_SECONDS="1",
        MCPGW_JOBS_REAPER_INTERVAL_SECONDS="0.3",
    )
    server.wait_ready()
    async with _client(server) as client:
        job_id = await _submit(client, "sleep", seconds=3, steps=30)
        job = await wait_for(lambda: _status(client, job_id, "running"), what="the job to run")
        # The whole worker: its main process and the pool process running the job.
        pool_pid = int(job["worker"].rsplit(":", 1)[1])
        os.killpg(os.getpgid(pool_pid), signal.SIGKILL)
        done = await wait_for(
            lambda: _status(client, job_id, "succeeded", "failed", "cancelled"),
            timeout=60,
            what="the job to be settled",
        )
        events = await read_events(client, job_id, {})
    assert done["status"] == "succeeded" and done["attempt"] == 2, done
    assert_complete(events)
    retried = [e for e in events if e.event == "status" and e.data.get("attempt") == 2]
    assert retried[0].data["status"] == "pending"
    assert "stopped answering" in retried[0].data["reason"]
