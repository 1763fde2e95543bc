"""MCP tasks through a real gateway process: task-augmented `tools/call` and `tasks/*`
in both protocol eras, bad input as JSON-RPC errors, the call audited like any other.

No Python MCP client implements tasks (the official SDK and fastmcp have none), so
these speak JSON-RPC over Streamable HTTP themselves; the conformance suite's tasks-*
scenarios (tests/conformance) drive the same code with the suite's own client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import BOOT, Server

TASKS = "io.modelcontextprotocol/tasks"
MODERN = "2026-07-28"
SOURCE = """
import asyncio
from mcp.server.mcpserver import Context, MCPServer
server = MCPServer('worker')
OPTIONAL = {'io.modelcontextprotocol/tasks': {'taskSupport': 'optional'}}

@server.tool(meta=OPTIONAL)
async def crunch(seconds: float, ctx: Context) -> str:
    await asyncio.sleep(seconds)
    return f'crunched for {seconds}s'

@server.tool()
def echo(text: str) -> str:
    return text
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("tasks"), MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "worker", "type": "generated", "config": {"source": SOURCE}},
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    yield server
    server.stop()


def _reply(r: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC reply of a POST, sent as JSON or as one SSE event."""
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:] for line in r.text.splitlines() if line.startswith("data:")]
        replies = [json.loads(d) for d in data if d.strip()]
        return next(m for m in replies if "id" in m and ("result" in m or "error" in m))
    return dict(r.json())


def modern(
    gateway: Server, method: str, params: dict[str, Any], *, tasks: bool = True, key: str = BOOT
) -> dict[str, Any]:
    """One stateless 2026-07-28 request (declaring the tasks extension when ``tasks``)."""
    caps: dict[str, Any] = {"extensions": {TASKS: {}}} if tasks else {}
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": caps}  # fmt: skip
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if method == "tools/call":
        headers["Mcp-Name"] = params["name"]
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    return _reply(httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30))


class Session:
    """A 2025-11-25 session, opened with `initialize`."""

    def __init__(self, gateway: Server, capabilities: dict[str, Any] | None = None) -> None:
        self.url = f"{gateway.url}/mcp"
        self.headers = {"Authorization": f"Bearer {BOOT}",
                        "Accept": "application/json, text/event-stream"}  # fmt: skip
        self.ids = iter(range(1, 10_000))
        init = {"protocolVersion": "2025-11-25", "capabilities": capabilities or {},
                "clientInfo": {"name": "t", "version": "1"}}  # fmt: skip
        r = httpx.post(self.url, json=self.body("initialize", init), headers=self.headers)
        self.init = _reply(r)["result"]
        self.headers["Mcp-Session-Id"] = r.headers["mcp-session-id"]
        self.headers["MCP-Protocol-Version"] = "2025-11-25"
        httpx.post(self.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                   headers=self.headers)  # fmt: skip

    def body(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A request of this session (its next id)."""
        return {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        r = httpx.post(self.url, json=self.body(method, params), headers=self.headers, timeout=30)
        return _reply(r)


def _until(get: Any, done: Any, seconds: float = 20) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = get()
        if done(found):
            return found
        time.sleep(0.05)
    raise AssertionError(f"not reached: {found}")


def test_a_2026_task_runs_to_its_result_and_is_audited(gateway: Server) -> None:
    created = modern(
        gateway, "tools/call", {"name": "worker__crunch", "arguments": {"seconds": 0.3}}
    )
    task = created["result"]
    assert task["resultType"] == "task" and task["status"] == "working", task
    assert isinstance(task["ttlMs"], int) and task["pollIntervalMs"] > 0
    assert "task" not in task and "result" not in task  # flat, no result yet
    done = _until(
        lambda: modern(gateway, "tasks/get", {"taskId": task["taskId"]})["result"],
        lambda t: t["status"] != "working",
    )
    assert done["status"] == "completed" and done["resultType"] == "complete", done
    assert done["result"]["content"] == [{"type": "text", "text": "crunched for 0.3s"}]
    # A task is a job: the same call, read over REST.
    job = httpx.get(f"{gateway.url}/api/v1/jobs/{task['taskId']}",
                    headers={"Authorization": f"Bearer {BOOT}"}).json()  # fmt: skip
    assert job["kind"] == "tool_call" and job["status"] == "succeeded"

    def audited() -> list[dict[str, Any]]:
        params = {"action": "tools/call", "server": "worker"}
        auth = {"Authorization": f"Bearer {BOOT}"}
        found = httpx.get(f"{gateway.url}/api/v1/audit", params=params, headers=auth).json()
        return [i for i in found["items"] if i["target"] == "crunch"]

    rows = _until(audited, bool)
    assert (rows[0]["route"], rows[0]["outcome"]) == ("mcp", "ok")
    # A tool the backend does not run as a task stays synchronous.
    sync = modern(gateway, "tools/call", {"name": "worker__echo", "arguments": {"text": "hi"}})
    assert sync["result"]["resultType"] == "complete" and "taskId" not in sync["result"]


def test_a_2026_task_is_cancelled_at_once(gateway: Server) -> None:
    task = modern(gateway, "tools/call", {"name": "worker__crunch", "arguments": {"seconds": 30}})
    task_id = task["result"]["taskId"]
    ack = modern(gateway, "tasks/cancel", {"taskId": task_id})["result"]
    assert ack == {"resultType": "complete", "_meta": ack.get("_meta")} or set(ack) <= {
        "resultType", "_meta"}, ack  # fmt: skip
    after = modern(gateway, "tasks/get", {"taskId": task_id})["result"]
    assert after["status"] == "cancelled", after
    again = modern(gateway, "tasks/cancel", {"taskId": task_id})  # idempotent
    assert again["result"]["resultType"] == "complete"


def test_bad_task_requests_are_json_rpc_errors(gateway: Server, tmp_path: Any) -> None:
    unknown = modern(gateway, "tasks/get", {"taskId": "no-such-task"})
    assert unknown["error"]["code"] == -32602, unknown
    malformed = modern(gateway, "tasks/get", {"taskId": 42})
    assert malformed["error"]["code"] == -32602, malformed
    update = modern(gateway, "tasks/update", {"taskId": "no-such-task", "inputResponses": []})
    assert update["error"]["code"] == -32602, update
    gated = modern(gateway, "tasks/get", {"taskId": "no-such-task"}, tasks=False)
    assert gated["error"]["code"] == -32021, gated
    removed = modern(gateway, "tasks/list", {})
    assert removed["error"]["code"] == -32601, removed
    # Someone else's task is unknown to them, for reading and cancelling alike.
    task = modern(gateway, "tools/call", {"name": "worker__crunch", "arguments": {"seconds": 5}})
    task_id = task["result"]["taskId"]
    auth = {"Authorization": f"Bearer {BOOT}"}
    user = httpx.post(f"{gateway.url}/api/v1/users", headers=auth,
                      json={"email": "dev@example.com", "role": "developer"}).json()  # fmt: skip
    other = httpx.post(f"{gateway.url}/api/v1/keys", headers=auth,
                       json={"name": "dev", "user_id": user["id"]}).json()["key"]  # fmt: skip
    for method in ("tasks/get", "tasks/cancel"):
        answer = modern(gateway, method, {"taskId": task_id}, key=other)
        assert answer["error"]["code"] == -32602, answer
    assert modern(gateway, "tasks/get", {"taskId": task_id})["result"]["status"] == "working"
    modern(gateway, "tasks/cancel", {"taskId": task_id})


def test_2025_tasks_for_any_tool(gateway: Server) -> None:
    session = Session(gateway)
    assert session.init["capabilities"]["tasks"]["requests"] == {"tools": {"call": {}}}
    # A tool that declares no task support: the gateway runs it as a task when asked.
    created = session.request(
        "tools/call",
        {"name": "worker__echo", "arguments": {"text": "later"}, "task": {"ttl": 60000}},
    )
    task = created["result"]["task"]
    assert task["status"] == "working" and isinstance(task["ttl"], int), created
    result = session.request("tasks/result", {"taskId": task["taskId"]})["result"]
    assert result["content"] == [{"type": "text", "text": "later"}]
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
    got = session.request("tasks/get", {"taskId": task["taskId"]})["result"]
    assert got["status"] == "completed" and "ttl" in got and "ttlMs" not in got
    listed = session.request("tasks/list", {})["result"]["tasks"]
    assert task["taskId"] in [t["taskId"] for t in listed]
    ended = session.request("tasks/cancel", {"taskId": task["taskId"]})
    assert ended["error"]["code"] == -32602  # already terminal
    long = session.request(
        "tools/call", {"name": "worker__crunch", "arguments": {"seconds": 30}, "task": {}}
    )["result"]["task"]
    cancelled = session.request("tasks/cancel", {"taskId": long["taskId"]})["result"]
    assert cancelled["taskId"] == long["taskId"] and cancelled["status"] == "cancelled"
    assert session.request("tasks/get", {"taskId": "nope"})["error"]["code"] == -32602
    assert (
        session.request("tasks/update", {"taskId": "x", "inputResponses": {}})["error"]["code"]
        == -32601
    )


async def test_2025_task_status_is_notified_on_the_session(gateway: Server) -> None:
    """The session's GET stream gets `notifications/tasks/status` when a task ends."""
    import asyncio

    session = Session(gateway)  # opened (and initialized) synchronously
    headers = {**session.headers, "Accept": "text/event-stream"}
    seen: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=30) as client:

        async def listen() -> None:
            async with client.stream("GET", session.url, headers=headers) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data:"):
                        seen.append(json.loads(line[5:]))

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.3)  # the stream is open before the task can end
        params = {"name": "worker__crunch", "arguments": {"seconds": 0.2}, "task": {}}
        body = {"jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": params}
        r = await client.post(session.url, json=body, headers=session.headers)
        task_id = _reply(r)["result"]["task"]["taskId"]
        for _ in range(200):
            if any(m.get("method") == "notifications/tasks/status" for m in seen):
                break
            await asyncio.sleep(0.05)
        listener.cancel()
    notes = [m["params"] for m in seen if m.get("method") == "notifications/tasks/status"]
    assert [(n["taskId"], n["status"]) for n in notes] == [(task_id, "completed")], seen
