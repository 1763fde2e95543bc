"""The skill generator end to end: a real `mcpgw serve` (SQLite, the worker it starts
itself) with a real linked MCP server (the fixture `http_backend`, over Streamable
HTTP), the draft over SSE, review, and the stored skill. The model path runs against
the scripted OpenAI-compatible stand-in (no LLM endpoint is reachable here), with the
scripts it writes run in real `local` (bubblewrap) sandboxes by the worker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.llm_standin import ScriptedModel, tool_call
from tests.integration.generate.support import error, until_settled
from tests.integration.jobs.test_redis import Workers, production  # noqa: F401  (fixture)
from tests.support import BOOT, MCPGW, Server, free_port, spawn_http

AUTH = {"Authorization": f"Bearer {BOOT}"}
BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "http_backend.py"
INTENT = "Echo a customer's message back to them and report whether the gateway heard it."
SCRIPT = "import sys\nprint('checked', len(sys.argv))\n"
FAILING = "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)\n"


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    """A real MCP server (tools echo, whoami, sleep…) on loopback."""
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


def _start(factory: type[Server], backend: str, **env: str) -> Server:
    server = factory(**{"MCPGW_BOOTSTRAP_API_KEY": BOOT, "MCPGW_ALLOW_PRIVATE_URLS": "true", **env})
    server.wait_ready(timeout=60)
    body = {"name": "fix", "type": "remote", "config": {"url": backend}}
    r = httpx.post(
        f"{server.url}/api/v1/servers", params={"wait": True}, json=body, headers=AUTH, timeout=120
    )
    assert r.status_code == 201 and r.json()["tool_count"] > 0, r.text
    return server


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], backend: str) -> Server:
    return _start(module_server_factory, backend)


async def _generate(client: httpx.AsyncClient, **body: Any) -> str:
    r = await client.post("/api/v1/skills/generate", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


async def _draft(client: httpx.AsyncClient, job_id: str) -> tuple[dict[str, Any], list[Any]]:
    job, events = await until_settled(client, job_id)
    assert job["status"] == "review", job
    return job["result"], events


async def test_an_intent_becomes_a_skill_from_the_template(gateway: Server) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        job_id = await _generate(client, intent=INTENT, servers=["fix"], name="echo-back")
        draft, events = await _draft(client, job_id)
        skill_md = draft["files"]["SKILL.md"]
        assert skill_md.startswith("---\nname: echo-back\ndescription: Echo a customer")
        assert "## When to use" in skill_md and "## Steps" in skill_md
        assert "- `fix__echo`: echo tool." in skill_md  # every tool of the linked server
        assert draft["tools"] == sorted(f"fix__{t}" for t in _backend_tools(draft))
        assert draft["source"] == {"from": "template"} and draft["servers"] == ["fix"]
        files = [e.data for e in events if e.event == "artifact"]
        assert files == [{"type": "file", "path": "SKILL.md", "content": skill_md}]
        # Nothing is stored before review.
        assert (await client.get("/api/v1/skills/echo-back")).status_code == 404

        r = await client.post(f"/api/v1/jobs/{job_id}/approve", json={})
        assert r.status_code == 200, r.text
        approved = r.json()["result"]["approved"]
        assert approved["skill"] == "echo-back" and approved["version"] == 1
        assert approved["created"] is True and approved["servers"] == ["fix"]
        skill = (await client.get("/api/v1/skills/echo-back")).json()
        assert skill["linked_servers"] == ["fix"] and skill["version"] == 1
        assert skill["source"]["kind"] == "generated" and skill["source"]["job_id"] == job_id
        assert not [w for w in skill["warnings"] if "catalog" in w["message"]]

        # Generating the same name again makes a new version once approved.
        again = await _generate(client, intent=INTENT + " Be brief.", servers=["fix"],
                                name="echo-back")  # fmt: skip
        await _draft(client, again)
        r = await client.post(f"/api/v1/jobs/{again}/approve")
        assert r.status_code == 200 and r.json()["result"]["approved"]["version"] == 2, r.text
        # Rejecting discards the draft: nothing stored, the job cancelled.
        third = await _generate(client, intent=INTENT, name="never-stored")
        await _draft(client, third)
        r = await client.post(f"/api/v1/jobs/{third}/reject", json={"feedback": "no"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert "next_job_id" not in r.json()["result"]["rejected"]  # the template: no rerun
        assert (await client.get("/api/v1/skills/never-stored")).status_code == 404


async def test_racing_reviewers_settle_a_draft_once(gateway: Server) -> None:
    """Approve against reject, and approve against approve (a new version of an existing
    skill): exactly one wins, and the skill is stored exactly when an approval won."""
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        for i in range(3):
            job_id = await _generate(client, intent=INTENT, servers=["fix"], name=f"race-{i}")
            await _draft(client, job_id)
            approve, reject = await asyncio.gather(
                client.post(f"/api/v1/jobs/{job_id}/approve", json={}),
                client.post(f"/api/v1/jobs/{job_id}/reject", json={}),
            )
            assert sorted([approve.status_code, reject.status_code]) == [200, 409]
            job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
            stored = (await client.get(f"/api/v1/skills/race-{i}")).status_code == 200
            assert stored == (approve.status_code == 200) == (job["status"] == "succeeded")

        first = await _generate(client, intent=INTENT, name="race-versions")
        await _draft(client, first)
        assert (await client.post(f"/api/v1/jobs/{first}/approve")).status_code == 200
        job_id = await _generate(client, intent=INTENT + " Twice.", servers=["fix"],
                                 name="race-versions")  # fmt: skip
        await _draft(client, job_id)
        answers = await asyncio.gather(
            client.post(f"/api/v1/jobs/{job_id}/approve"),
            client.post(f"/api/v1/jobs/{job_id}/approve"),
        )
        assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
        skill = (await client.get("/api/v1/skills/race-versions")).json()
        # The winner's version is current (a loser that stored nothing new reverts nothing).
        assert "Twice." in skill["description"] and skill["linked_servers"] == ["fix"]


async def test_a_name_someone_else_holds_keeps_the_draft_in_review(gateway: Server) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        admins = await _generate(client, intent=INTENT, name="taken-name")
        await _draft(client, admins)
        assert (await client.post(f"/api/v1/jobs/{admins}/approve")).status_code == 200
        r = await client.post("/api/v1/users", json={"email": "dev@x.io", "role": "developer"})
        r = await client.post("/api/v1/keys", json={"name": "d", "user_id": r.json()["id"]})
        dev = {"Authorization": f"Bearer {r.json()['key']}"}
        r = await client.post(
            "/api/v1/skills/generate", json={"intent": INTENT, "name": "taken-name"}, headers=dev
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        await _draft(client, job_id)
        r = await client.post(f"/api/v1/jobs/{job_id}/approve", headers=dev)
        error(r, 409, "name_taken")
        job = (await client.get(f"/api/v1/jobs/{job_id}", headers=dev)).json()
        assert job["status"] == "review"
        skill = (await client.get("/api/v1/skills/taken-name")).json()
        assert skill["version"] == 1  # the admin's skill is untouched


def test_the_cli_starts_and_follows_a_generation(gateway: Server) -> None:
    args = [MCPGW, "skills", "generate", "--url", gateway.url, "--key", BOOT]
    bad = subprocess.run([*args, "too short"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "at least 10 characters" in bad.stdout + bad.stderr
    done = subprocess.run(
        [*args, INTENT, "--server", "fix", "--name", "cli-skill", "--template", "--watch"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "draft skill cli-skill" in done.stdout and "fix__echo" in done.stdout
    assert "mcpgw jobs approve ID" in done.stdout


def _backend_tools(draft: dict[str, Any]) -> list[str]:
    text = draft["files"]["SKILL.md"]
    return [line.split("`")[1].removeprefix("fix__") for line in text.splitlines()
            if line.startswith("- `fix__")]  # fmt: skip


async def test_bad_requests_get_clear_errors_and_queue_nothing(gateway: Server) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        before = (await client.get("/api/v1/jobs", params={"kind": "skills.generate"})).json()
        post = client.post
        error(
            await post("/api/v1/skills/generate", json={"intent": "short"}), 422, "validation_error"
        )
        error(await post("/api/v1/skills/generate", json={"intent": "x" * 2001}), 422,
              "validation_error")  # fmt: skip
        body = {"intent": INTENT, "servers": ["fix", "nope"]}
        e = error(await post("/api/v1/skills/generate", json=body), 422, "unknown_servers")
        assert "'nope'" in e["message"]
        body = {"intent": INTENT, "name": "Bad Name"}
        error(await post("/api/v1/skills/generate", json=body), 422, "validation_error")
        body = {"intent": INTENT, "model": True}
        e = error(await post("/api/v1/skills/generate", json=body), 409, "model_not_configured")
        assert "MCPGW_LLM_BASE_URL" in e["message"]
        # A viewer may read skills but not write them.
        r = await post("/api/v1/users", json={"email": "viewer@x.io", "role": "viewer"})
        r = await post("/api/v1/keys", json={"name": "v", "user_id": r.json()["id"]})
        viewer = {"Authorization": f"Bearer {r.json()['key']}"}
        r = await post("/api/v1/skills/generate", json={"intent": INTENT}, headers=viewer)
        assert r.status_code == 403, r.text
        after = (await client.get("/api/v1/jobs", params={"kind": "skills.generate"})).json()
        assert len(after["items"]) == len(before["items"])


# --- the model path -----------------------------------------------------------------
def _skill_md(tool: str, name: str = "echo-check") -> str:
    return (
        f"---\nname: {name}\ndescription: Echo a message and check the reply.\n---\n\n"
        "# Echo check\n\n## When to use\n\nWhen a customer's message must be echoed.\n\n"
        f"## Tools\n\n- `{tool}`: echoes a message.\n\n## Steps\n\n"
        f"1. Call `{tool}` with the message.\n2. Run scripts/check.py to check the reply.\n"
    )


def _last_tool_result(request: dict[str, Any]) -> str:
    return str([m for m in request["messages"] if m["role"] == "tool"][-1]["content"])


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModel]:
    """The model: the scripted OpenAI-compatible stand-in (no LLM endpoint is reachable
    here); it replays the replies a test puts in ``model.replies``."""
    with ScriptedModel() as found:
        yield found


@pytest.fixture(scope="module")
def model_gateway(
    module_server_factory: type[Server],
    backend: str,
    model: ScriptedModel,
    tmp_path_factory: pytest.TempPathFactory,
) -> Server:
    # Its own data dir: its own database, broker and worker (else the first gateway's
    # worker could take its jobs).
    data = tmp_path_factory.mktemp("model-gateway")
    return _start(module_server_factory, backend, MCPGW_DATA_DIR=str(data), **model.env())


async def test_the_model_writes_checks_and_runs_a_skill(
    model_gateway: Server, model: ScriptedModel
) -> None:
    def after_listing(request: dict[str, Any]) -> dict[str, Any]:
        listed = json.loads(_last_tool_result(request))
        assert {"name": "fix__echo", "description": "echo tool", "parameters": []} in listed
        return {
            "content": "I will write SKILL.md.",
            "tool_calls": [
                tool_call("write_file", {"path": "SKILL.md", "content": _skill_md("fix__echo")})
            ],
        }

    def after_run(request: dict[str, Any]) -> dict[str, Any]:
        ran = json.loads(_last_tool_result(request))
        assert ran["ok"] is True and ran["stdout"] == "checked 1\n", ran
        return {"content": "The skill is complete."}

    model.replies += [
        {"tool_calls": [tool_call("list_server_tools", {"server": "fix"})]},
        after_listing,
        {"tool_calls": [tool_call("write_file", {"path": "scripts/check.py", "content": SCRIPT})]},
        {"tool_calls": [tool_call("run_in_sandbox", {"path": "scripts/check.py"})]},
        after_run,
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=model_gateway.url, headers=AUTH, timeout=60) as client:
        job_id = await _generate(client, intent=INTENT, servers=["fix"], name="echo-check")
        draft, events = await _draft(client, job_id)
        assert not model.replies  # every scripted step was taken
        assert draft["files"]["SKILL.md"] == _skill_md("fix__echo")
        assert draft["files"]["scripts/check.py"] == SCRIPT
        assert draft["executable"] == ["scripts/check.py"] and draft["tools"] == ["fix__echo"]
        assert draft["source"]["prompt"] == "skill_from_intent@1"
        assert draft["source"]["rounds"] == 5
        [run] = draft["scripts"]
        assert run["ok"] and run["path"] == "scripts/check.py" and run["exit_code"] == 0
        kinds = [e.event for e in events]
        assert "token" in kinds
        runs = [e.data for e in events if e.event == "artifact" and e.data["type"] == "script_run"]
        assert len(runs) == 1 and runs[0]["stdout"] == "checked 1\n"
        system = model.requests[-5]["messages"][0]["content"]
        assert "{server}__{tool}" in system  # the versioned prompt
        assert INTENT in model.requests[-5]["messages"][1]["content"]

        r = await client.post(f"/api/v1/jobs/{job_id}/approve")
        assert r.status_code == 200, r.text
        skill = (await client.get("/api/v1/skills/echo-check")).json()
        assert skill["linked_servers"] == ["fix"]
        files = {f["path"]: f["executable"] for f in skill["files"]}
        assert files == {"SKILL.md": False, "scripts/check.py": True}


async def test_a_tool_the_catalog_lacks_is_sent_back_then_fails_the_job(
    model_gateway: Server, model: ScriptedModel
) -> None:
    def told(request: dict[str, Any]) -> dict[str, Any]:
        problems = request["messages"][-1]["content"]
        assert "tool 'nope' is not in the catalog of linked server 'fix'" in problems
        return {
            "tool_calls": [
                tool_call("write_file", {"path": "SKILL.md", "content": _skill_md("fix__echo")})
            ]
        }

    model.replies += [  # a made-up tool, caught; fixed after being told
        {"tool_calls": [tool_call("write_file", {"path": "SKILL.md",
                                                 "content": _skill_md("fix__nope")})]},
        {"content": "done"},
        told,
        {"content": "fixed"},
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=model_gateway.url, headers=AUTH, timeout=60) as client:
        body = {"intent": INTENT, "servers": ["fix"], "name": "echo-check"}
        draft, events = await _draft(client, await _generate(client, **body))
        assert draft["tools"] == ["fix__echo"] and draft["scripts"] == []
        assert any("sent back to the model" in str(e.data) for e in events if e.event == "log")

        model.replies += [  # stubborn: the second check fails the job
            {"tool_calls": [tool_call("write_file", {"path": "SKILL.md",
                                                     "content": _skill_md("fix__nope")})]},
            {"content": "done"},
            {"content": "still done"},
        ]  # fmt: skip
        job, _ = await until_settled(client, await _generate(client, **body))
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "invalid_draft"
        assert "'nope' is not in the catalog" in job["error"]["message"]


async def test_a_failing_script_is_run_caught_and_fixed(
    model_gateway: Server, model: ScriptedModel
) -> None:
    def told(request: dict[str, Any]) -> dict[str, Any]:
        problems = request["messages"][-1]["content"]
        assert "scripts/check.py failed in the sandbox (exit 3)" in problems, problems
        assert "boom" in problems  # its stderr
        return {
            "tool_calls": [tool_call("write_file", {"path": "scripts/check.py", "content": SCRIPT})]
        }

    model.replies += [  # never runs its script itself: the job does, before review
        {"tool_calls": [
            tool_call("write_file", {"path": "SKILL.md", "content": _skill_md("fix__echo")}),
            tool_call("write_file", {"path": "scripts/check.py", "content": FAILING}),
        ]},
        {"content": "done"},
        told,
        {"content": "fixed"},
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=model_gateway.url, headers=AUTH, timeout=60) as client:
        body = {"intent": INTENT, "servers": ["fix"], "name": "echo-check", "model": True}
        draft, events = await _draft(client, await _generate(client, **body))
    runs = [e.data for e in events if e.event == "artifact" and e.data["type"] == "script_run"]
    assert [(r["ok"], r["exit_code"]) for r in runs] == [(False, 3), (True, 0)]
    assert [(r["path"], r["ok"]) for r in draft["scripts"]] == [("scripts/check.py", True)]


async def test_feedback_makes_the_model_write_the_skill_again(
    model_gateway: Server, model: ScriptedModel
) -> None:
    def again(request: dict[str, Any]) -> dict[str, Any]:
        asked = request["messages"][1]["content"]
        assert "Their feedback:\nAlso use whoami." in asked
        assert "fix__echo" in asked  # the rejected files
        return {
            "tool_calls": [
                tool_call(
                    "write_file",
                    {"path": "SKILL.md", "content": _skill_md("fix__whoami", "echo-feedback")},
                )
            ]
        }

    first = _skill_md("fix__echo", "echo-feedback")
    model.replies += [
        {"tool_calls": [tool_call("write_file", {"path": "SKILL.md", "content": first})]},
        {"content": "done"},
        again,
        {"content": "done"},
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=model_gateway.url, headers=AUTH, timeout=60) as client:
        body = {"intent": INTENT, "servers": ["fix"], "name": "echo-feedback"}
        job_id = await _generate(client, **body)
        await _draft(client, job_id)
        r = await client.post(
            f"/api/v1/jobs/{job_id}/reject", json={"feedback": "Also use whoami."}
        )
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        next_id = r.json()["result"]["rejected"]["next_job_id"]
        draft, _ = await _draft(client, next_id)
        assert draft["tools"] == ["fix__whoami"]
        assert (await client.get("/api/v1/skills/echo-feedback")).status_code == 404


async def test_on_redis_a_worker_of_its_own_runs_the_loop_and_the_script(
    server_factory: type[Server],
    production: dict[str, str],  # noqa: F811
    backend: str,
    model: ScriptedModel,
    tmp_path: Path,
) -> None:
    """Production mode: PostgreSQL, Redis, a `mcpgw worker` process (the gateway runs
    none): the model's script runs in a sandbox of the worker's host."""
    env = {**production, **model.env(), "MCPGW_ALLOW_PRIVATE_URLS": "true"}
    gateway = _start(server_factory, backend, **env)
    workers = Workers(tmp_path, env)
    workers.start()
    model.replies += [
        {"tool_calls": [
            tool_call("write_file", {"path": "SKILL.md", "content": _skill_md("fix__echo")}),
            tool_call("write_file", {"path": "scripts/check.py", "content": SCRIPT}),
            tool_call("run_in_sandbox", {"path": "scripts/check.py"}),
        ]},
        {"content": "done"},
    ]  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
            body = {"intent": INTENT, "servers": ["fix"], "name": "echo-check"}
            job_id = await _generate(client, **body)
            draft, _ = await _draft(client, job_id)
            assert (await client.get(f"/api/v1/jobs/{job_id}")).json()["worker"]
            [run] = draft["scripts"]
            assert run["ok"] and run["stdout"] == "checked 1\n"
            r = await client.post(f"/api/v1/jobs/{job_id}/approve")
            assert r.status_code == 200, r.text
            skill = (await client.get("/api/v1/skills/echo-check")).json()
            assert skill["linked_servers"] == ["fix"] and len(skill["files"]) == 2
    finally:
        workers.stop()
