"""Backends that run tasks themselves, behind a real gateway process: their tasks are
followed to the end (runtimes/backend_tasks.py), whatever the entry point, and an
agent's MCP task is backed by the backend's own.

Two real backends, one per era of tasks:
- 2026-07-28: FastMCP with `fastmcp-tasks` (SEP-2663, PyPI), tests/fixtures/tasks_backend.py,
  in a venv of its own (it needs a newer FastMCP than the gateway's);
- 2025-11-25: `@modelcontextprotocol/server-everything` (npm), whose
  `simulate-research-query` requires task augmentation (SEP-1686).

No Python MCP client implements tasks, so the agents here speak JSON-RPC over
Streamable HTTP themselves (the helpers of test_tasks.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.conftest import create_pg_database, drop_pg_database
from tests.integration.mcp.test_tasks import Session, _until, modern
from tests.interop.backends import cached_venv
from tests.support import BOOT, Server, free_port, spawn_http

ROOT = Path(__file__).resolve().parents[3]
EVERYTHING = {"package": "@modelcontextprotocol/server-everything", "version": "2026.8.31",
              "args": ["stdio"]}  # fmt: skip
AUTH = {"Authorization": f"Bearer {BOOT}"}


@pytest.fixture(scope="module")
def marks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the 2026 backend leaves a file for each piece of work it finished."""
    return tmp_path_factory.mktemp("marks")


@pytest.fixture(scope="module")
def backend(marks: Path) -> Iterator[str]:
    python = cached_venv("fastmcp-tasks==4.1.8")
    port = free_port()
    script = ROOT / "tests" / "fixtures" / "tasks_backend.py"
    proc = spawn_http([str(python), str(script), str(port), str(marks)], port, timeout=60)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    server = Server(
        tmp_path_factory.mktemp("backend-tasks"),
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
    )
    server.wait_ready()
    for body in (
        {"name": "tw", "type": "remote", "config": {"url": backend}},
        {"name": "ev", "type": "npx", "config": EVERYTHING},
    ):
        r = httpx.post(f"{server.url}/api/v1/servers", params={"wait": True}, json=body,
                       headers=AUTH, timeout=300)  # fmt: skip
        assert r.status_code == 201, r.text
    yield server
    server.stop()


def execute(gateway: Server, tool: str, arguments: dict[str, Any], **extra: Any) -> Any:
    r = httpx.post(
        f"{gateway.url}/api/v1/tools/execute",
        json={"tool": tool, "arguments": arguments, **extra},
        headers=AUTH,
        timeout=120,
    )
    assert r.status_code in (200, 202), r.text
    return r.json()


def _text(result: dict[str, Any]) -> str:
    return "\n".join(c.get("text", "") for c in result.get("content", []))


def _task(gateway: Server, task_id: str, *, until: tuple[str, ...]) -> dict[str, Any]:
    """Poll the gateway's 2026 `tasks/get` until the task's status is one of ``until``."""
    found: dict[str, Any] = _until(
        lambda: modern(gateway, "tasks/get", {"taskId": task_id}),
        lambda reply: reply.get("result", {}).get("status") in until,
        60,
    )["result"]
    return found


# --- a 2026-07-28 backend (fastmcp-tasks) -----------------------------------------------
def test_a_tool_the_backend_must_task_answers_every_entry_point(
    gateway: Server, marks: Path
) -> None:
    """`crunch` refuses a plain call (-32021); through the gateway every caller gets its
    result: REST, a 2025-11-25 agent, a 2026-07-28 agent that does not do tasks."""
    rest = execute(gateway, "tw__crunch", {"seconds": 0.2, "label": "rest"})
    assert rest["isError"] is False, rest
    assert _text(rest) == "crunched rest for 0.2s"
    session = Session(gateway)
    legacy = session.request(
        "tools/call", {"name": "tw__crunch", "arguments": {"seconds": 0.1, "label": "2025"}}
    )
    assert _text(legacy["result"]) == "crunched 2025 for 0.1s", legacy
    plain = modern(gateway, "tools/call",
                   {"name": "tw__crunch", "arguments": {"seconds": 0.1, "label": "2026"}},
                   tasks=False)  # fmt: skip
    assert _text(plain["result"]) == "crunched 2026 for 0.1s", plain
    assert {p.name for p in marks.iterdir()} >= {"rest", "2025", "2026"}


def test_an_agents_task_is_the_backends_followed_and_its_questions_passed_on(
    gateway: Server, marks: Path
) -> None:
    """A 2026 agent's task on a backend task: the agent gets the gateway's task id (the
    backend's never leaves the gateway), the backend's `input_required` reaches it, its
    `tasks/update` goes back, and the result is the backend's."""
    created = modern(gateway, "tools/call",
                     {"name": "tw__confirm", "arguments": {"action": "launch"}})["result"]  # fmt: skip
    assert created["resultType"] == "task", created
    task_id = created["taskId"]
    asking = _task(gateway, task_id, until=("input_required", "completed", "failed"))
    assert asking["status"] == "input_required", asking
    [(key, request)] = asking["inputRequests"].items()
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "Really launch?"
    answer = {key: {"action": "accept", "content": {"ok": True}}}
    assert "error" not in modern(gateway, "tasks/update",
                                 {"taskId": task_id, "inputResponses": answer})  # fmt: skip
    done = _task(gateway, task_id, until=("completed", "failed", "cancelled"))
    assert done["status"] == "completed", done
    assert _text(done["result"]) == "launch: done"
    assert (marks / "launch").read_text() == "accepted"


def test_a_failed_backend_task_is_the_calls_error(gateway: Server) -> None:
    result = execute(gateway, "tw__broken", {"reason": "disk full"})
    assert result["isError"] is True
    assert "broken: disk full" in _text(result)


def test_a_question_with_nobody_to_ask_is_a_clear_tool_error(gateway: Server) -> None:
    """A synchronous REST call cannot answer a task's question: the call says why."""
    result = execute(gateway, "tw__confirm", {"action": "reboot"})
    assert result["isError"] is True
    assert "asked for input (elicitation/create)" in _text(result)


def test_cancelling_the_agents_task_cancels_the_backends(gateway: Server, marks: Path) -> None:
    created = modern(gateway, "tools/call",
                     {"name": "tw__crunch", "arguments": {"seconds": 4, "label": "stopped"}})  # fmt: skip
    task_id = created["result"]["taskId"]
    time.sleep(0.5)
    assert "error" not in modern(gateway, "tasks/cancel", {"taskId": task_id})
    assert _task(gateway, task_id, until=("cancelled",))["status"] == "cancelled"
    time.sleep(5)  # past the work's end: a task left running would have left its mark
    assert not (marks / "stopped").exists()


def test_ordinary_tools_stay_ordinary(gateway: Server) -> None:
    """A plain call to a tool the backend runs at once is one round trip, whatever the
    agent declares; no backend task id ever reaches the agent."""
    result = execute(gateway, "tw__plain", {"text": "hello"})
    assert _text(result) == "hello"
    plain = modern(gateway, "tools/call", {"name": "tw__plain", "arguments": {"text": "hi"}},
                   tasks=False)  # fmt: skip
    assert _text(plain["result"]) == "hi"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_backend_tasks_question_reaches_an_agent_waiting_on_its_call(
    gateway: Server, marks: Path, mode: str
) -> None:
    """The official SDK client, which knows no tasks, calls a tool its backend runs as a
    task that asks for confirmation: the question reaches it as any elicitation does (on
    its 2025-11-25 session, or as a 2026-07-28 `input_required` round) and its answer
    goes back to the backend's task."""
    asked: list[str] = []

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"ok": True})

    http = create_mcp_http_client(headers=AUTH)
    transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
    async with http, Client(transport, cache=None, mode=mode,
                            elicitation_callback=elicitation) as client:  # type: ignore[arg-type]  # fmt: skip
        result = await client.call_tool("tw__confirm", {"action": f"ship-{mode}"})
    assert asked == [f"Really ship-{mode}?"]
    assert result.is_error is False, result
    assert result.content[0].text == f"ship-{mode}: done"  # type: ignore[union-attr]
    assert (marks / f"ship-{mode}").read_text() == "accepted"


def test_a_2025_agents_task_is_asked_through_tasks_result(gateway: Server, marks: Path) -> None:
    """A 2025-11-25 task whose backend asks for input: `tasks/get` says `input_required`,
    and `tasks/result` carries the question to the agent (related to the task), whose
    answer goes back to the backend's task (SEP-1686's way)."""
    session = Session(gateway, capabilities={"elicitation": {}})
    created = session.request("tools/call", {"name": "tw__confirm", "task": {"ttl": 60_000},
                                             "arguments": {"action": "migrate"}})  # fmt: skip
    task_id = created["result"]["task"]["taskId"]
    _until(lambda: session.request("tasks/get", {"taskId": task_id})["result"]["status"],
           lambda status: status == "input_required")  # fmt: skip
    body = session.body("tasks/result", {"taskId": task_id})
    asked: list[dict[str, Any]] = []
    with httpx.stream("POST", session.url, json=body, headers=session.headers,
                      timeout=60) as stream:  # fmt: skip
        for line in stream.iter_lines():
            if not line.startswith("data:") or not line[5:].strip():
                continue
            message = json.loads(line[5:])
            if message.get("method") == "elicitation/create":
                asked.append(message["params"])
                reply = {"jsonrpc": "2.0", "id": message["id"],
                         "result": {"action": "accept", "content": {"ok": True}}}  # fmt: skip
                httpx.post(session.url, json=reply, headers=session.headers, timeout=30)
            elif message.get("id") == body["id"]:
                result = message["result"]
                break
    [question] = asked
    assert question["message"] == "Really migrate?"
    assert question["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task_id}
    assert _text(result) == "migrate: done"
    assert (marks / "migrate").read_text() == "accepted"


# --- a 2025-11-25 backend (server-everything) -------------------------------------------
def test_a_2025_backend_task_answers_a_plain_call_and_an_agents_task(gateway: Server) -> None:
    """server-everything refuses `simulate-research-query` without task augmentation;
    the gateway runs it as one and follows it to its report."""
    rest = execute(gateway, "ev__simulate-research-query", {"topic": "tides"})
    assert rest["isError"] is False, rest
    assert "# Research Report: tides" in _text(rest)
    session = Session(gateway)
    created = session.request("tools/call", {"name": "ev__simulate-research-query",
                                             "arguments": {"topic": "owls"},
                                             "task": {"ttl": 60_000}})  # fmt: skip
    task_id = created["result"]["task"]["taskId"]
    result = session.request("tasks/result", {"taskId": task_id})["result"]
    assert "# Research Report: owls" in _text(result)
    assert "io.modelcontextprotocol/related-task" in result["_meta"]
    assert result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == task_id


def test_a_backend_tasks_status_messages_are_the_jobs_progress(gateway: Server) -> None:
    """An async REST call of a task tool: the backend's status messages (its research
    stages) are the job's progress events."""
    job_id = execute(gateway, "ev__simulate-research-query", {"topic": "moss"}, **{"async": True})[
        "job_id"
    ]
    with httpx.stream("GET", f"{gateway.url}/api/v1/jobs/{job_id}/events", headers=AUTH,
                      timeout=60) as stream:  # fmt: skip
        text = "".join(stream.iter_text())
    assert "Gathering sources" in text and "Generating report" in text, text
    job = httpx.get(f"{gateway.url}/api/v1/jobs/{job_id}", headers=AUTH).json()
    assert job["status"] == "succeeded", job
    assert "# Research Report: moss" in _text(job["result"])


# --- two gateway replicas ---------------------------------------------------------------
@pytest.fixture
def replicas(tmp_path: Path, backend: str) -> Iterator[tuple[Server, Server]]:
    """Two gateway processes on one PostgreSQL database and one Redis (production)."""
    redis_url = os.environ.get("MCPGW_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    db_url = create_pg_database("mcpgw_tasks")
    env = {"MCPGW_DATABASE_URL": db_url, "MCPGW_AUTO_MIGRATE": "true",
           "MCPGW_REDIS_URL": f"{redis_url.rstrip('/')}/3", "MCPGW_BOOTSTRAP_API_KEY": BOOT,
           "MCPGW_ALLOW_PRIVATE_URLS": "true"}  # fmt: skip
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    first = Server(tmp_path / "a", **env)
    first.wait_ready()
    r = httpx.post(f"{first.url}/api/v1/servers", params={"wait": True}, headers=AUTH,
                   json={"name": "tw", "type": "remote", "config": {"url": backend}})  # fmt: skip
    assert r.status_code == 201, r.text
    second = Server(tmp_path / "b", **env)  # loads the server from the database
    second.wait_ready()
    yield first, second
    second.stop()
    first.stop()
    drop_pg_database(db_url)


def test_a_task_asked_on_one_replica_is_answered_through_another(
    replicas: tuple[Server, Server], marks: Path
) -> None:
    """The call runs on the replica that took the agent's `tools/call`; its question is
    seen, and answered, through the other (as behind a load balancer)."""
    runs, other = replicas
    created = modern(runs, "tools/call",
                     {"name": "tw__confirm", "arguments": {"action": "deploy"}})["result"]  # fmt: skip
    task_id = created["taskId"]
    asking = _task(other, task_id, until=("input_required", "completed", "failed"))
    assert asking["status"] == "input_required", asking
    [key] = asking["inputRequests"]
    answer = {key: {"action": "accept", "content": {"ok": True}}}
    assert "error" not in modern(other, "tasks/update",
                                 {"taskId": task_id, "inputResponses": answer})  # fmt: skip
    done = _task(other, task_id, until=("completed", "failed", "cancelled"))
    assert _text(done["result"]) == "deploy: done", done
    assert (marks / "deploy").read_text() == "accepted"
    assert _task(runs, task_id, until=("completed",))["result"] == done["result"]
