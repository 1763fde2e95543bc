"""The sandbox REST API on the `local` provider: shapes, streaming, audit, policies, access.

Runs on SQLite and PostgreSQL (the service's queries and batched writes on both).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.audit.models import AuditEvent
from gateway.db import utcnow
from gateway.observability.logging import JsonFormatter
from sandboxes.models import Sandbox
from tests.integration.sandboxes.conftest import Sandboxes, need_bwrap

SECRET = "s3cr3t-Value-0123456789"
TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def api(sbx_factory: Callable[..., Any]) -> Sandboxes:
    need_bwrap()
    return await sbx_factory(sandbox_output_max_bytes=4096, sandbox_max_per_user=3)  # type: ignore[no-any-return]


async def _user_key(h: Sandboxes, email: str, role: str = "developer") -> str:
    r = await h.client.post("/api/v1/users", json={"email": email, "role": role}, headers=h.auth())
    assert r.status_code == 201, r.text
    r = await h.client.post(
        "/api/v1/keys", json={"name": "t", "user_id": r.json()["id"]}, headers=h.auth()
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def test_create_shape_exec_and_files(api: Sandboxes) -> None:
    sb = await api.create(template="python", name="demo")
    assert {"id", "status", "provider", "template", "limits", "usage", "created_at"} <= set(sb)
    assert sb["provider"] == "local" and sb["limits"]["memory_mb"] == 256
    sid = sb["id"]
    r = await api.exec(sid, command="echo out; echo err >&2; exit 3")
    assert r == {
        "stdout": "out\n",
        "stderr": "err\n",
        "exit_code": 3,
        "duration_ms": r["duration_ms"],
        "timed_out": False,
        "truncated": False,
        "oom_killed": False,
        "error": None,
    }
    r = (
        await api.exec(
            sid,
            command=[
                "python3",
                "-c",
                "import os,sys; print(os.getcwd(), os.environ['A'], sys.stdin.read())",
            ],
            cwd="sub",
            env={"A": "x"},
            stdin="in",
        )
        if (await api.put(sid, "sub/keep", b"")).status_code == 200
        else {}
    )
    assert r["stdout"] == "/workspace/sub x in\n", r
    r = (
        await api.exec(sid, code="console.log(6*7)", language="node")
        if shutil.which("node")
        else {"stdout": "42\n"}
    )
    assert r["stdout"] == "42\n"
    big = await api.py(sid, "print('x' * 10000)")
    assert big["truncated"] is True and len(big["stdout"]) == 4096
    # files: write, read, list, delete; confined to the workspace
    w = await api.put(sid, "/workspace/a/b.txt", b"hello")
    assert w.status_code == 200 and w.json() == {"path": "a/b.txt", "size": 5}
    assert (await api.get(sid, "a/b.txt")).content == b"hello"
    listing = (await api.get(sid, "a")).json()
    assert listing["entries"][0] | {"modified": None} == {
        "name": "b.txt",
        "path": "a/b.txt",
        "type": "file",
        "size": 5,
        "modified": None,
    }
    for bad in ("../etc/passwd", "/etc/passwd", "a/../../x"):
        r2 = await api.get(sid, bad)
        assert r2.status_code == 422 and r2.json()["code"] == "sandbox_path_invalid", bad
    assert (await api.get(sid, "missing")).json()["code"] == "sandbox_file_not_found"
    d = await api.client.delete(
        f"/api/v1/sandboxes/{sid}/files", params={"path": "a"}, headers=api.auth()
    )
    assert d.status_code == 204 and (await api.get(sid, "a")).status_code == 404
    usage = (await api.client.get(f"/api/v1/sandboxes/{sid}/usage", headers=api.auth())).json()
    assert usage["exec_count"] >= 4 and usage["disk_bytes"] is not None
    assert usage["cpu_seconds"] is not None and usage["cpu_seconds"] > 0
    bad = await api.client.post(
        f"/api/v1/sandboxes/{sid}/exec", json={"code": "1"}, headers=api.auth()
    )
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"


async def test_exec_streams_server_sent_events(api: Sandboxes) -> None:
    sid = (await api.create())["id"]
    body = {
        "command": "for i in 1 2 3; do echo line$i; sleep 0.2; done; echo bye >&2",
        "stream": True,
    }
    events: list[tuple[str, dict[str, Any]]] = []
    async with api.client.stream(
        "POST", f"/api/v1/sandboxes/{sid}/exec", json=body, headers=api.auth()
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        name = ""
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    out = "".join(e["data"] for n, e in events if n == "stdout")
    assert out == "line1\nline2\nline3\n"
    assert sum(1 for n, _ in events if n == "stdout") >= 2  # arrived as it was printed
    assert ("stderr", {"data": "bye\n"}) in events
    name, last = events[-1]
    assert name == "exit" and last["exit_code"] == 0 and last["timed_out"] is False
    # Accept: text/event-stream works too; errors before any output are plain JSON
    r = await api.client.post(
        f"/api/v1/sandboxes/{sid}/exec",
        json={"command": "echo hi"},
        headers={**api.auth(), "Accept": "text/event-stream"},
    )
    assert "event: stdout" in r.text and "event: exit" in r.text
    r = await api.client.post(
        "/api/v1/sandboxes/nope/exec", json={"command": "echo", "stream": True}, headers=api.auth()
    )
    assert r.status_code == 404 and r.json()["code"] == "sandbox_not_found"


async def test_audit_masks_secrets_in_log_and_table(
    api: Sandboxes, caplog: pytest.LogCaptureFixture
) -> None:
    sid = (await api.create())["id"]
    caplog.set_level(logging.INFO, logger="sandboxes.audit")
    r = await api.exec(
        sid,
        command=f"echo $API_TOKEN $PLAIN; echo {SECRET} {TOKEN} password=hunter2xx",
        env={"PLAIN": "visible", "DB_PASSWORD": "pw-" + SECRET[:8] + "zz"},
        secret_env={"API_TOKEN": SECRET},
        secret=["PLAIN"],
    )
    assert r["stdout"].startswith(f"{SECRET} visible\n")  # the caller gets real output
    await api.put(sid, f"notes-{TOKEN}.txt", b"x")
    await api.service.flush()
    lines = [JsonFormatter().format(rec) for rec in caplog.records if rec.name == "sandboxes.audit"]
    assert any('"action": "exec"' in line or '"action":"exec"' in line for line in lines), lines
    await api.service.audit.flush()  # the platform's audit trail (gateway/audit/)
    async with api.service.db.session() as session:
        rows = (await session.scalars(select(AuditEvent).where(AuditEvent.target == sid))).all()
    stored = json.dumps([[e.action, e.arguments, e.detail, e.error] for e in rows])
    for text in [*lines, stored]:
        for secret in (SECRET, TOKEN, "hunter2xx", "visible", "pw-"):
            assert secret not in text, (secret, text)
    actions = sorted(e.action for e in rows)
    assert actions == ["sandbox.create", "sandbox.exec", "sandbox.write"]
    exec_row = next(e for e in rows if e.action == "sandbox.exec")
    assert "***" in json.loads(exec_row.arguments or "{}")["command"]
    detail = json.loads(exec_row.detail or "{}")
    assert detail["exit_code"] == 0 and exec_row.outcome == "ok"
    assert detail["env"] == ["API_TOKEN", "DB_PASSWORD", "PLAIN"]
    assert exec_row.latency_ms and exec_row.actor_user_id and exec_row.actor_email
    events = (await api.client.get(f"/api/v1/sandboxes/{sid}/events", headers=api.auth())).json()
    assert events["total"] == 3 and SECRET not in json.dumps(events)


async def test_ownership_admin_fleet_and_bulk(api: Sandboxes) -> None:
    dev = await _user_key(api, "dev@example.com")
    other = await _user_key(api, "other@example.com")
    mine = await api.create(key=dev)
    theirs = await api.create(key=other)
    r = await api.client.get(f"/api/v1/sandboxes/{theirs['id']}", headers=api.auth(dev))
    assert r.status_code == 404
    r = await api.client.post(
        f"/api/v1/sandboxes/{theirs['id']}/exec", json={"command": "id"}, headers=api.auth(dev)
    )
    assert r.status_code == 404
    listed = (await api.client.get("/api/v1/sandboxes", headers=api.auth(dev))).json()
    assert [s["id"] for s in listed["items"]] == [mine["id"]]
    assert (
        await api.client.get("/api/v1/sandboxes?all=true", headers=api.auth(dev))
    ).status_code == 403
    fleet = (await api.client.get("/api/v1/sandboxes?all=true", headers=api.auth())).json()
    assert {mine["id"], theirs["id"]} <= {s["id"] for s in fleet["items"]}
    viewer = await _user_key(api, "viewer@example.com", role="viewer")
    r = await api.client.post("/api/v1/sandboxes", json={}, headers=api.auth(viewer))
    assert r.status_code == 403
    bulk = await api.client.post(
        "/api/v1/sandboxes/bulk",
        json={"action": "stop", "ids": [mine["id"], theirs["id"], "missing"]},
        headers=api.auth(),
    )
    results = {x["id"]: x for x in bulk.json()["results"]}
    assert results[mine["id"]]["status"] == "stopped" and results["missing"]["ok"] is False
    bulk = await api.client.post(
        "/api/v1/sandboxes/bulk",
        json={"action": "destroy", "ids": [mine["id"], theirs["id"]]},
        headers=api.auth(),
    )
    assert all(x["status"] == "destroyed" for x in bulk.json()["results"])
    assert (await api.client.get("/api/v1/sandboxes", headers=api.auth(dev))).json()["total"] == 0


async def test_quotas_limits_and_network_policy(api: Sandboxes) -> None:
    dev = await _user_key(api, "q@example.com")
    for _ in range(3):
        await api.create(key=dev)
    r = await api.client.post("/api/v1/sandboxes", json={}, headers=api.auth(dev))
    assert r.status_code == 409 and r.json()["code"] == "sandbox_quota_exceeded"
    r = await api.client.post(
        "/api/v1/sandboxes", json={"limits": {"memory_mb": 100000}}, headers=api.auth(dev)
    )
    assert r.status_code == 403 and r.json()["code"] == "sandbox_limits_forbidden"
    r = await api.client.post("/api/v1/sandboxes", json={"network": "egress"}, headers=api.auth())
    assert r.status_code == 403 and r.json()["code"] == "sandbox_network_forbidden"
    small = await api.create(limits={"memory_mb": 64, "pids": 32, "disk_mb": 1})
    assert small["limits"] | {"cpus": 0} == {"cpus": 0, "memory_mb": 64, "pids": 32, "disk_mb": 1}
    r = await api.put(small["id"], "big.bin", b"x" * (2 * 1024 * 1024))
    assert r.status_code == 413 and r.json()["code"] == "sandbox_disk_full"
    r = await api.client.post("/api/v1/sandboxes", json={"template": "nope"}, headers=api.auth())
    assert r.status_code == 404 and r.json()["code"] == "template_not_found"


async def test_files_written_by_commands_count_toward_disk_limits(
    sbx_factory: Callable[..., Any],
) -> None:
    """A command stops at the sandbox's limit (ENOSPC: the workspace is a filesystem of
    that size); its files are measured after it (off the request path), the full
    workspace refuses uploads, and the user's total refuses new sandboxes."""
    need_bwrap()
    api: Sandboxes = await sbx_factory(sandbox_max_disk_mb_per_user=3)
    sb = await api.create(limits={"disk_mb": 2})
    ran = await api.exec(sb["id"], command="head -c 3145728 /dev/zero > big.bin")
    assert ran["exit_code"] != 0 and "No space left on device" in ran["stderr"], ran
    await api.service.activity.settle()
    got = (await api.client.get(f"/api/v1/sandboxes/{sb['id']}", headers=api.auth())).json()
    assert 1.5 * 1024 * 1024 <= got["usage"]["disk_bytes"] <= 2 * 1024 * 1024, got
    r = await api.put(sb["id"], "more.bin", b"x" * 256 * 1024)
    assert r.status_code == 413 and r.json()["code"] == "sandbox_disk_full"
    r = await api.client.post("/api/v1/sandboxes", json={}, headers=api.auth())
    assert r.status_code == 409 and r.json()["code"] == "sandbox_quota_exceeded"
    # Deleting the file frees the room again once measured.
    await api.exec(sb["id"], command="rm big.bin")
    await api.service.activity.settle()
    r = await api.put(sb["id"], "more.bin", b"x" * 256 * 1024)
    assert r.status_code in (200, 201, 204)


async def test_idle_reaper_and_session_affinity(api: Sandboxes) -> None:
    service = api.service
    sb = await api.create()
    await api.exec(sb["id"], command="echo x > kept")
    stopped, destroyed = await service.reap(utcnow() + timedelta(minutes=31))
    assert (stopped, destroyed) == (1, 0)
    got = (await api.client.get(f"/api/v1/sandboxes/{sb['id']}", headers=api.auth())).json()
    assert got["status"] == "stopped"
    stopped, destroyed = await service.reap(utcnow() + timedelta(days=8))
    assert (stopped, destroyed) == (0, 1)
    got = (await api.client.get(f"/api/v1/sandboxes/{sb['id']}", headers=api.auth())).json()
    assert got["status"] == "destroyed"
    # session affinity: the same agent session always gets the same sandbox
    principal = await _principal(api)
    first = await service.for_session(principal, "session-a")
    await service.stop(principal, first.id)
    again = await service.for_session(principal, "session-a")
    assert again.id == first.id and again.status == "running"
    other = await service.for_session(principal, "session-b")
    assert other.id != first.id


async def _principal(api: Sandboxes) -> Any:
    from gateway.auth.principal import Principal

    me = (await api.client.get("/api/v1/me", headers=api.auth())).json()
    return Principal(
        user_id=me["user"]["id"],
        email=me["user"]["email"],
        name="",
        role="admin",
        key_id=None,
        scopes=("*",),
    )


async def test_admin_templates(api: Sandboxes) -> None:
    t = {"name": "data", "description": "d", "languages": ["python", "sh"], "env": {"FOO": "bar"}}
    r = await api.client.put("/api/v1/sandboxes/templates/data", json=t, headers=api.auth())
    assert r.status_code == 200 and r.json()["builtin"] is False
    names = {
        x["name"]
        for x in (await api.client.get("/api/v1/sandboxes/templates", headers=api.auth())).json()
    }
    assert {"python", "node", "multi", "data"} <= names
    sb = await api.create(template="data")
    assert (await api.exec(sb["id"], command="echo $FOO"))["stdout"] == "bar\n"
    dev = await _user_key(api, "t@example.com")
    r = await api.client.put("/api/v1/sandboxes/templates/data", json=t, headers=api.auth(dev))
    assert r.status_code == 403


async def test_memory_is_measured_and_exported_while_running(api: Sandboxes) -> None:
    """A running sandbox's memory, as the provider last measured it, is stored and summed
    into `mcpgw_sandbox_memory_bytes`; a stopped one holds none."""

    async def stored() -> int | None:
        async with api.service.db.session() as session:
            row = await session.get(Sandbox, sid)
            return row.memory_bytes if row is not None else None

    async def exported() -> float:
        text = (await api.client.get("/metrics", headers=api.auth())).text
        prefix = 'mcpgw_sandbox_memory_bytes{provider="local"} '
        return float(
            next(line for line in text.splitlines() if line.startswith(prefix))[len(prefix) :]
        )

    sid = (await api.create())["id"]
    assert (await api.exec(sid, command="sleep 0.2"))["exit_code"] == 0
    usage = (await api.client.get(f"/api/v1/sandboxes/{sid}/usage", headers=api.auth())).json()
    assert usage["memory_bytes"] and usage["memory_bytes"] > 0, usage  # cgroup v2 measures it
    assert await stored() == usage["memory_bytes"]
    assert await exported() == float(usage["memory_bytes"] or 0)
    assert (await api.action(sid, "stop")).status_code == 200
    assert await stored() is None
    assert await exported() == 0.0
