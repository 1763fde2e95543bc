"""Async tool calls (`POST /api/v1/tools/execute {"async": true}`) in-process, on both
databases, against a real in-process (`generated`) MCP server: the call runs as a
local job of the gateway (gateway/jobs/local.py) through the one call pipeline."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import AppHarness
from tests.integration.jobs.sse import assert_complete, read_events

SOURCE = """
import asyncio
from mcp.server.mcpserver import Context, MCPServer
server = MCPServer('slowpoke')
STATE = {'started': 0, 'cancelled': 0}

@server.tool()
async def slow(seconds: float, steps: int, ctx: Context) -> str:
    STATE['started'] += 1
    try:
        for step in range(steps):
            await asyncio.sleep(seconds / steps)
            await ctx.report_progress(step + 1, steps, f'step {step + 1}')
    except asyncio.CancelledError:
        STATE['cancelled'] += 1
        raise
    return f'slept {seconds}'

@server.tool()
def state() -> str:
    return f"{STATE['started']} {STATE['cancelled']}"
"""


async def _register(h: AppHarness) -> None:
    config = {"source": SOURCE}
    r = await h.client.post(
        "/api/v1/servers",
        params={"wait": True},
        json={"name": "slowpoke", "type": "generated", "config": config},
        headers=h.auth(),
        timeout=60,
    )
    assert r.status_code == 201, r.text


async def _start(
    h: AppHarness, tool: str, arguments: dict[str, Any], key: str | None = None
) -> str:
    body = {"tool": tool, "arguments": arguments, "async": True}
    r = await h.client.post(
        "/api/v1/tools/execute", json=body, headers=h.auth(*([key] if key else []))
    )
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def _state(h: AppHarness) -> tuple[int, int]:
    r = await h.client.post(
        "/api/v1/tools/execute", json={"tool": "slowpoke__state"}, headers=h.auth()
    )
    started, cancelled = r.json()["content"][0]["text"].split()
    return int(started), int(cancelled)


async def _poll(h: AppHarness, job_id: str, until: set[str]) -> dict[str, Any]:
    for _ in range(400):
        r = await h.client.get(f"/api/v1/jobs/{job_id}", headers=h.auth())
        assert r.status_code == 200, r.text
        if r.json()["status"] in until:
            return dict(r.json())
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {until}: {r.json()}")


async def test_an_async_call_returns_its_result_later(harness: AppHarness) -> None:
    h = harness
    await _register(h)
    job_id = await _start(h, "slowpoke__slow", {"seconds": 0.4, "steps": 4})
    job = await _poll(h, job_id, {"succeeded", "failed", "cancelled"})
    assert job["kind"] == "tool_call" and job["status"] == "succeeded", job
    assert job["result"]["content"] == [{"type": "text", "text": "slept 0.4"}]
    assert job["result"]["isError"] is False and job["progress"] == 1.0
    assert job["input_summary"] == "tool='slowpoke__slow'"  # never the arguments
    events = await read_events(h.client, job_id, h.auth())
    assert_complete(events)
    progress = [e.data for e in events if e.event == "progress"]
    assert [p["progress"] for p in progress] == [0.25, 0.5, 0.75, 1.0]
    assert progress[0]["message"] == "step 1"
    assert events[-1].event == "result"
    assert events[-1].data["result"]["content"][0]["text"] == "slept 0.4"
    # The call itself is audited like a synchronous REST call, by the pipeline.
    for _ in range(100):
        r = await h.client.get(
            "/api/v1/audit", params={"action": "tools/call", "server": "slowpoke"}, headers=h.auth()
        )
        rows = [i for i in r.json()["items"] if i["target"] == "slow"]
        if rows:
            break
        await asyncio.sleep(0.05)
    assert [(i["route"], i["outcome"]) for i in rows] == [("rest", "ok")]


async def test_cancel_stops_the_backend_call(harness: AppHarness) -> None:
    h = harness
    await _register(h)
    job_id = await _start(h, "slowpoke__slow", {"seconds": 30, "steps": 30})
    await _poll(h, job_id, {"running"})
    for _ in range(100):
        if (await _state(h))[0] == 1:
            break
        await asyncio.sleep(0.05)
    r = await h.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=h.auth())
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    events = await read_events(h.client, job_id, h.auth())
    assert events[-1].event == "cancelled"
    for _ in range(100):  # notifications/cancelled reached the backend, which stopped
        if (await _state(h))[1] == 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the backend never saw the cancellation: {await _state(h)}")


async def test_bad_async_calls_are_json_errors(harness: AppHarness) -> None:
    h = harness
    body = {"tool": "nothere__tool", "arguments": {}, "async": True}
    r = await h.client.post("/api/v1/tools/execute", json=body, headers=h.auth())
    assert r.status_code == 404 and r.json()["code"] == "tool_not_found", r.text
    r = await h.client.post(
        "/api/v1/tools/execute", json={**body, "async": "maybe"}, headers=h.auth()
    )
    assert r.status_code == 422, r.text
    await _register(h)
    job_id = await _start(h, "slowpoke__state", {})
    job = await _poll(h, job_id, {"succeeded"})
    assert job["result"]["content"][0]["text"] == "0 0"
    # Someone else's job: not found, for reading and cancelling alike.
    r = await h.client.post("/api/v1/users", json={"email": "o@example.com", "role": "developer"},
                            headers=h.auth())  # fmt: skip
    r = await h.client.post(
        "/api/v1/keys", json={"name": "o", "user_id": r.json()["id"]}, headers=h.auth()
    )
    other = h.auth(r.json()["key"])
    for response in (
        await h.client.get(f"/api/v1/jobs/{job_id}", headers=other),
        await h.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=other),
    ):
        assert response.status_code == 404 and response.json()["code"] == "job_not_found"


async def test_an_async_call_the_pipeline_refuses_fails_with_its_code(
    harness: AppHarness,
) -> None:
    """The authorize stage runs for async calls as for any other: inside the job."""
    h = harness
    await _register(h)
    r = await h.client.post(
        "/api/v1/keys", json={"name": "reader", "scopes": ["tools:read", "jobs:read"]},
        headers=h.auth(),
    )  # fmt: skip
    reader = r.json()["key"]
    job_id = await _start(h, "slowpoke__state", {}, key=reader)
    for _ in range(400):
        r = await h.client.get(f"/api/v1/jobs/{job_id}", headers=h.auth(reader))
        if r.json()["status"] not in ("pending", "running"):
            break
        await asyncio.sleep(0.05)
    job = r.json()
    assert job["status"] == "failed" and job["error"]["code"] == "call_denied", job
    assert (await _state(h)) == (0, 0)  # nothing reached the backend
