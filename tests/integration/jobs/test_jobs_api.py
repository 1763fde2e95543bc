"""`/api/v1/jobs` in-process on both databases, without a worker: submit, read, who
sees what, bad input as JSON errors, cancelling a pending job; and the reaper, driven
directly, on jobs whose worker went silent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.db import utcnow
from gateway.jobs import repository as repo
from gateway.jobs.models import Job
from gateway.jobs.service import JobService
from tests.conftest import AppHarness


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["code"], str) and isinstance(body["message"], str), body
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


async def _user_key(h: AppHarness, email: str, role: str) -> str:
    r = await h.client.post("/api/v1/users", json={"email": email, "role": role}, headers=h.auth())
    assert r.status_code == 201, r.text
    r = await h.client.post(
        "/api/v1/keys", json={"name": "t", "user_id": r.json()["id"]}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def _submit(h: AppHarness, kind: str = "echo", key: str | None = None, **data: Any) -> str:
    r = await h.client.post(
        "/api/v1/jobs", json={"kind": kind, "input": data}, headers=h.auth(*([key] if key else []))
    )
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "pending"
    return str(r.json()["job_id"])


async def test_submit_show_list(harness: AppHarness) -> None:
    job_id = await _submit(harness, value={"a": 1})
    r = await harness.client.get(f"/api/v1/jobs/{job_id}", headers=harness.auth())
    assert r.status_code == 200, r.text
    job = r.json()
    assert {k: job[k] for k in ("id", "kind", "status", "progress", "result", "error")} == {
        "id": job_id, "kind": "echo", "status": "pending", "progress": None, "result": None,
        "error": None,
    }  # fmt: skip
    assert job["last_event"] == 1 and job["input_summary"] == "value={'a': 1}"
    r = await harness.client.get("/api/v1/jobs", headers=harness.auth())
    assert [j["id"] for j in r.json()["items"]] == [job_id]
    r = await harness.client.get("/api/v1/jobs?status=running", headers=harness.auth())
    assert r.json()["items"] == []


async def test_bad_input_is_a_json_error(harness: AppHarness) -> None:
    h, auth = harness, harness.auth()
    _error(await h.client.get("/api/v1/jobs/no-such-job", headers=auth), 404, "job_not_found")
    _error(await h.client.post("/api/v1/jobs/no-such/cancel", headers=auth), 404, "job_not_found")
    _error(await h.client.get("/api/v1/jobs/no-such/events", headers=auth), 404, "job_not_found")
    bad_kind = {"kind": "mine-bitcoin", "input": {}}
    _error(
        await h.client.post("/api/v1/jobs", json=bad_kind, headers=auth), 422, "unknown_job_kind"
    )
    bad_input = {"kind": "sleep", "input": {"seconds": 1e9}}
    _error(await h.client.post("/api/v1/jobs", json=bad_input, headers=auth), 422, "bad_job_input")
    _error(await h.client.get("/api/v1/jobs?status=nope", headers=auth), 422, "bad_filter")
    job_id = await _submit(h)
    headers = {**auth, "Last-Event-ID": "x1"}
    r = await h.client.get(f"/api/v1/jobs/{job_id}/events", headers=headers)
    _error(r, 422, "bad_event_id")
    _error(await h.client.get(f"/api/v1/jobs/{job_id}"), 401)


async def test_someone_elses_job_is_not_found(harness: AppHarness) -> None:
    h = harness
    operator = await _user_key(h, "op@example.com", "operator")
    other = await _user_key(h, "other@example.com", "operator")
    job_id = await _submit(h, key=operator)
    for response in (
        await h.client.get(f"/api/v1/jobs/{job_id}", headers=h.auth(other)),
        await h.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=h.auth(other)),
        await h.client.get(f"/api/v1/jobs/{job_id}/events", headers=h.auth(other)),
    ):
        _error(response, 404, "job_not_found")
    r = await h.client.get("/api/v1/jobs", headers=h.auth(other))
    assert r.json()["items"] == []
    # the admin sees everybody's with all=true, only their own without
    r = await h.client.get("/api/v1/jobs", headers=h.auth())
    assert r.json()["items"] == []
    r = await h.client.get("/api/v1/jobs?all=true", headers=h.auth())
    assert [j["id"] for j in r.json()["items"]] == [job_id]
    assert (await h.client.get(f"/api/v1/jobs/{job_id}", headers=h.auth())).status_code == 200
    # permissions: a viewer cannot read jobs, a developer cannot start built-in ones
    viewer = await _user_key(h, "viewer@example.com", "viewer")
    _error(await h.client.get("/api/v1/jobs", headers=h.auth(viewer)), 403)
    developer = await _user_key(h, "dev@example.com", "developer")
    body = {"kind": "echo", "input": {}}
    _error(await h.client.post("/api/v1/jobs", json=body, headers=h.auth(developer)), 403)


async def test_cancel_pending_job_at_once_and_stream_ends(harness: AppHarness) -> None:
    h = harness
    job_id = await _submit(h, "sleep", seconds=5)
    r = await h.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=h.auth())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["finished_at"]
    # settled jobs stay as they are
    r = await h.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=h.auth())
    assert r.json()["status"] == "cancelled" and r.json()["last_event"] == 2
    r = await h.client.get(f"/api/v1/jobs/{job_id}/events", headers=h.auth())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    text = r.text.replace("\r\n", "\n")
    assert 'id: 1\nevent: status\ndata: {"status":"pending"}' in text
    assert 'id: 2\nevent: cancelled\ndata: {"status":"cancelled","by":"gateway"}' in text
    r = await h.client.get(f"/api/v1/jobs/{job_id}/events?after=1", headers=h.auth())
    assert "id: 1\n" not in r.text.replace("\r\n", "\n") and "event: cancelled" in r.text
    # starting and cancelling are changes: audited
    r = await h.client.get("/api/v1/audit?action=job.*", headers=h.auth())
    rows = [(row["action"], row["target"]) for row in r.json()["items"]]
    assert rows == [("job.cancel", job_id), ("job.create", job_id)]


class _Recorded:
    """Stands in for the Celery broker in reaper tests (no worker runs here): records
    what would have been queued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, float]] = []

    def send(
        self, job_id: str, attempt: int, kind: Any, countdown: float = 0, trace: Any = None
    ) -> None:
        self.sent.append((job_id, attempt, countdown))

    def revoke(self, job_id: str, attempt: int, terminate: bool = False) -> None:
        return None


async def _running(service: JobService, kind: str, silent_for: float) -> str:
    job = await service.submit(None, kind, {})
    async with service.db.session() as session:
        await repo.append_event(
            session, job.id, "status", {"status": "running"}, status="running",
            worker="lost-host:1", heartbeat_at=utcnow() - timedelta(seconds=silent_for),
        )  # fmt: skip
    return job.id


async def test_reaper_fails_or_requeues_jobs_of_a_lost_worker(harness: AppHarness) -> None:
    service: JobService = harness.app.state.jobs  # type: ignore[attr-defined]
    service.dispatcher = recorded = _Recorded()
    lost_echo = await _running(service, "echo", 120)  # one attempt only: fails
    lost_sleep = await _running(service, "sleep", 120)  # safe to repeat: re-queued
    alive = await _running(service, "sleep", 0)
    assert await service.reap() == 2
    async with service.db.session() as session:
        echo, sleep, fresh = [await session.get(Job, i) for i in (lost_echo, lost_sleep, alive)]
        events = await repo.events_after(session, lost_sleep, 0)
    assert echo is not None and sleep is not None and fresh is not None
    assert echo.status == "failed" and echo.error["code"] == "worker_lost"
    assert sleep.status == "pending" and sleep.attempt == 2 and sleep.worker is None
    assert sleep.progress is None
    assert (lost_sleep, 2, 0.2) in recorded.sent
    assert [e.type for e in events] == ["status", "status", "status"]
    assert events[-1].data["attempt"] == 2
    assert fresh.status == "running"
    assert await service.reap() == 0  # nothing twice
    # a new embedded worker gets the pending jobs again (a dead one may have held them)
    assert await service.resend_pending() == 1
    assert recorded.sent[-1] == (lost_sleep, 2, 0)
    # finished jobs go once their results' time is up, with their events
    service.result_ttl = 0
    await service.reap()
    async with service.db.session() as session:
        assert await session.get(Job, lost_echo) is None
        assert list(await repo.events_after(session, lost_echo, 0)) == []
        assert await session.get(Job, lost_sleep) is not None  # not finished
