"""The server generator end to end in the embedded default: real `mcpgw serve`
processes with the Celery worker `serve` starts and the embedded SQLite broker, the
real Swagger Petstore 3 document (and two more real ones) served on loopback, a
loopback implementation of the Petstore API that the generated tools call, and a real
MCP client on `/mcp`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from tests.fixtures.petstore_api import SPECS, PetstoreApi
from tests.integration.generate.support import (
    draft_of,
    error,
    generate,
    mcp_client,
    until_settled,
)
from tests.integration.jobs.sse import read_events
from tests.support import BOOT, Server

AUTH = {"Authorization": f"Bearer {BOOT}"}
API_KEY = "petstore-api-key-5f2b9c"  # the Petstore API's key: a secret header
LIMIT = 700_000  # MCPGW_GENERATE_MAX_DOCUMENT_BYTES here (the STAPI document is ~500 KB)
PETSTORE_TOOLS = {
    "updatePet", "addPet", "findPetsByStatus", "findPetsByTags", "getPetById",
    "updatePetWithForm", "deletePet", "uploadFile", "getInventory", "placeOrder",
    "getOrderById", "deleteOrder", "createUser", "createUsersWithListInput", "loginUser",
    "logoutUser", "getUserByName", "updateUser", "deleteUser",
}  # fmt: skip


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server]) -> Server:
    """Loopback APIs are this test's 'internet': private URLs allowed."""
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_GENERATE_MAX_DOCUMENT_BYTES=str(LIMIT),
        MCPGW_LOG_FORMAT="console",
    )
    server.wait_ready()
    return server


def _client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=60)


async def test_petstore_becomes_a_draft_then_a_server_an_agent_calls(
    gateway: Server, petstore: PetstoreApi
) -> None:
    async with _client(gateway) as client:
        job_id = await generate(
            client,
            url=f"{petstore.url}/specs/petstore3.yaml",
            base_url=petstore.base_url,
            name="petstore",
            secret_headers={"api_key": API_KEY},
            test_calls=True,
            test_arguments={"getPetById": {"petId": 1}},
        )
        job, events = await until_settled(client, job_id)
        assert job["status"] == "review", job
        draft = job["result"]
        # the draft: every operation a tool, typed, described, annotated
        tools = {t["name"]: t for t in draft["tools"]}
        assert set(tools) == PETSTORE_TOOLS
        assert draft["server"] == {
            "name": "petstore", "type": "generated", "base_url": petstore.base_url,
            "description": draft["server"]["description"],
        }  # fmt: skip
        assert draft["server"]["description"].startswith("Swagger Petstore - OpenAPI 3.0")
        assert (
            draft["source"]["from"] == "url" and draft["source"]["document"]["openapi"] == "3.0.4"
        )
        assert tools["getPetById"]["input_schema"]["properties"]["petId"]["type"] == "integer"
        assert tools["getPetById"]["input_schema"]["required"] == ["petId"]
        assert tools["getPetById"]["read_only"] and not tools["getPetById"]["destructive"]
        assert tools["deletePet"]["destructive"] and not tools["deletePet"]["read_only"]
        assert tools["findPetsByStatus"]["description"].startswith("Multiple status values")
        assert {s["name"] for s in draft["security"]} == {"petstore_auth", "api_key"}
        assert draft["secret_headers"] == ["api_key"]
        assert API_KEY not in json.dumps(job) and API_KEY not in json.dumps(
            [e.data for e in events]
        )
        # test calls (consented): the read-only tools it could call, as artifacts
        calls = {e.data["tool"]: e.data for e in events if e.event == "artifact"}
        assert {"getPetById", "findPetsByStatus", "getInventory", "logoutUser"} <= set(calls)
        assert "deletePet" not in calls and "addPet" not in calls
        assert calls["getPetById"]["ok"] and '"doggie"' in calls["getPetById"]["output"]
        assert calls["getInventory"]["ok"], calls["getInventory"]  # the api_key header went
        assert tools["getPetById"]["test"] == {"ok": True}
        assert any(
            r["path"] == "/api/v3/store/inventory" and r["headers"].get("api_key") == API_KEY
            for r in petstore.requests
        )
        # nothing registered before approval
        assert (await client.get("/api/v1/servers/petstore")).status_code == 404
        # approve four tools: the rest are excluded
        chosen = ["getPetById", "findPetsByStatus", "addPet", "deletePet"]
        r = await client.post(f"/api/v1/jobs/{job_id}/approve", json={"tools": chosen})
        assert r.status_code == 200, r.text
        approved = r.json()
        assert approved["status"] == "succeeded"
        assert approved["result"]["approved"] == {
            "server": "petstore", "tools": ["addPet", "findPetsByStatus", "getPetById", "deletePet"],
            "base_url": petstore.base_url,
        }  # fmt: skip
        # the stream goes on past the review to the approval, for whoever follows it
        after = await read_events(client, job_id, {}, last_event_id=events[-1].id)
        assert [(e.event, e.data["status"]) for e in after] == [("result", "succeeded")]
        r = await client.get("/api/v1/servers/petstore")
        assert r.status_code == 200 and r.json()["type"] == "generated", r.text
        assert r.json()["secret_headers"] == {"api_key": "***"}, r.json()
        r = await client.get("/api/v1/servers/petstore/versions")
        recorded = r.json()[0]["snapshot"]["config"]["openapi"] if r.status_code == 200 else r.text
        assert (
            recorded["title"] == "Swagger Petstore - OpenAPI 3.0" and len(recorded["sha256"]) == 64
        )
    # an agent lists and calls the tools through /mcp, against the loopback API
    async with mcp_client(gateway.url, BOOT) as mcp:
        listed = {t.name: t for t in await mcp.list_tools() if t.name.startswith("petstore__")}
        assert set(listed) == {f"petstore__{n}" for n in chosen}
        hints = listed["petstore__getPetById"].annotations
        assert hints is not None and hints.read_only_hint and not hints.destructive_hint
        hints = listed["petstore__deletePet"].annotations
        assert hints is not None and hints.destructive_hint
        result = await mcp.call_tool("petstore__getPetById", {"petId": 2})
        assert result.structured_content["name"] == "kitty", result
        result = await mcp.call_tool(
            "petstore__addPet", {"id": 7, "name": "rex", "photoUrls": [], "status": "pending"}
        )
        assert petstore.pets[7]["name"] == "rex"
        result = await mcp.call_tool("petstore__findPetsByStatus", {"status": "pending"})
        assert "rex" in json.dumps(result.structured_content)
        await mcp.call_tool("petstore__deletePet", {"petId": 7})
        assert 7 not in petstore.pets  # the secret api_key header went with the call
        excluded = await mcp.call_tool("petstore__updatePet", {"name": "x"}, raise_on_error=False)
        assert excluded.is_error


async def test_a_larger_real_api_and_a_swagger2_document(
    gateway: Server, petstore: PetstoreApi
) -> None:
    stapi = json.loads((SPECS / "stapi.json").read_text())
    async with _client(gateway) as client:
        big = await generate(client, openapi=stapi, name="stapi")  # an object
        old = await generate(client, openapi=(SPECS / "petstore-swagger2.json").read_text())
        draft = await draft_of(client, big)
        assert len(draft["tools"]) == 120
        assert draft["server"]["base_url"] == "http://stapi.co/api/v1/rest"
        search = next(t for t in draft["tools"] if t["name"] == "POST_animalsearch")
        assert search["method"] == "POST" and not search["read_only"]
        swagger2 = await draft_of(client, old)
    assert swagger2["source"]["document"]["openapi"].startswith("3.0")
    tools = {t["name"]: t for t in swagger2["tools"]}
    assert len(tools) == 20 and tools["getPetById"]["read_only"]
    assert swagger2["server"]["name"] == "swagger-petstore"
    assert swagger2["server"]["base_url"] == "http://petstore.swagger.io/v2"
    # a body parameter became the request body: its fields are the tool's arguments
    assert "photoUrls" in tools["addPet"]["input_schema"]["properties"]


async def test_bad_input_is_refused_and_nothing_is_half_registered(
    gateway: Server, petstore: PetstoreApi
) -> None:
    async with _client(gateway) as client:
        post = lambda body: client.post("/api/v1/servers/generate", json=body)  # noqa: E731
        error(await post({"openapi": "openapi: 3.0.0\npaths: {/a: [unclosed"}), 422, "bad_openapi")
        error(await post({"openapi": {"hello": "world"}}), 422, "bad_openapi")
        error(await post({"openapi": '{"openapi": "3.0.0", "info": {}, "paths": {}}'}),
              422, "bad_openapi")  # fmt: skip
        error(await post({"openapi": "x" * (LIMIT + 1)}), 413, "document_too_large")
        error(await post({}), 422, "validation_error")
        error(await post({"url": "ftp://example.com/a"}), 422, "validation_error")
        # a document fetched that turns out too large, or not a document: the job fails
        job, _ = await until_settled(client, await generate(client, url=f"{petstore.url}/big"))
        assert job["status"] == "failed" and job["error"]["code"] == "document_too_large", job
        job, _ = await until_settled(
            client, await generate(client, url=f"{petstore.url}/docs/missing")
        )
        assert job["status"] == "failed" and job["error"]["code"] == "fetch_failed", job
        # review: unknown job, a job not in review, unknown tools, a name taken
        error(await client.post("/api/v1/jobs/nope/approve", json={}), 404, "job_not_found")
        r = await client.post("/api/v1/jobs", json={"kind": "noop", "input": {}})
        noop = r.json()["job_id"]
        await until_settled(client, noop)
        error(await client.post(f"/api/v1/jobs/{noop}/approve", json={}), 409, "job_not_in_review")
        job_id = await generate(
            client, url=f"{petstore.url}/specs/petstore3.yaml", base_url=petstore.base_url,
            name="pets-bad-input",
        )  # fmt: skip
        await draft_of(client, job_id)
        approve = f"/api/v1/jobs/{job_id}/approve"
        error(
            await client.post(approve, json={"tools": ["getPetById", "nope"]}), 422, "unknown_tools"
        )
        error(await client.post(approve, json={"tools": []}), 422, "no_tools")
        error(await client.post(approve, json={"name": "Not A Name"}), 422, "validation_error")
        r = await client.post("/api/v1/servers", json={
            "name": "taken", "type": "remote", "config": {"url": "http://127.0.0.1:9/mcp"},
        })  # fmt: skip
        assert r.status_code == 201, r.text
        error(await client.post(approve, json={"name": "taken"}), 422, "name_taken")
        assert (await client.get("/api/v1/servers/pets-bad-input")).status_code == 404
        assert (await client.get(f"/api/v1/jobs/{job_id}")).json()["status"] == "review"
        # someone else's job is not there for them
        other = await _operator_key(client)
        r = await client.post(approve, json={}, headers={"Authorization": f"Bearer {other}"})
        error(r, 404, "job_not_found")
        # reject without feedback: cancelled by the reviewer, nothing registered
        r = await client.post(f"/api/v1/jobs/{job_id}/reject", json={"feedback": "not today"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        assert r.json()["result"]["rejected"] == {"feedback": "not today"}
        error(await client.post(approve, json={}), 409, "job_not_in_review")
        assert (await client.get("/api/v1/servers/pets-bad-input")).status_code == 404


async def test_operators_generate_and_approve_developers_cannot(
    gateway: Server, petstore: PetstoreApi
) -> None:
    """An OpenAPI-generated server runs no code of its own: registering one needs
    `servers:write` (operators), not admin rights as Python-source servers do."""
    async with _client(gateway) as admin:
        operator = await _operator_key(admin, "op2@example.com")
        developer = await _operator_key(admin, "dev@example.com", role="developer")
    spec = (SPECS / "petstore3.yaml").read_text()
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {developer}"}, timeout=60
    ) as client:
        r = await client.post("/api/v1/servers/generate", json={"openapi": spec})
        error(r, 403, "forbidden")
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {operator}"}, timeout=60
    ) as client:
        job_id = await generate(client, openapi=spec, base_url=petstore.base_url, name="op-pets")
        await draft_of(client, job_id)
        r = await client.post(f"/api/v1/jobs/{job_id}/approve", json={"tools": ["getPetById"]})
        assert r.status_code == 200, r.text
        r = await client.post(
            "/api/v1/tools/execute", json={"tool": "op-pets__getPetById", "arguments": {"petId": 1}}
        )
        assert r.status_code == 200 and "doggie" in r.text, r.text


async def _operator_key(
    client: httpx.AsyncClient, email: str = "op@example.com", role: str = "operator"
) -> str:
    r = await client.post("/api/v1/users", json={"email": email, "role": role})
    assert r.status_code == 201, r.text
    r = await client.post("/api/v1/keys", json={"name": "t", "user_id": r.json()["id"]})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def test_private_urls_and_model_paths_without_a_model(
    server_factory: type[Server], tmp_path: Path
) -> None:
    """A gateway as shipped: the SSRF guard on, no model configured."""
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    async with _client(server) as client:
        post = lambda body: client.post("/api/v1/servers/generate", json=body)  # noqa: E731
        for url in ("http://127.0.0.1:8080/openapi.json", "http://169.254.169.254/latest",
                    "http://[::1]/spec", "http://10.1.2.3/spec.yaml"):  # fmt: skip
            body = error(await post({"url": url}), 422, "url_refused")
            assert "url" in body["message"]
        spec = (SPECS / "petstore3.yaml").read_text()
        error(
            await post({"openapi": spec, "base_url": "http://192.168.1.1/api"}), 422, "url_refused"
        )
        body = error(
            await post({"docs_url": "https://example.com/docs"}), 409, "model_not_configured"
        )
        assert "MCPGW_LLM_BASE_URL" in body["message"] and "MCPGW_LLM_MODEL" in body["message"]
        r = await client.get("/api/v1/jobs", params={"kind": "servers.generate"})
        assert r.json()["items"] == []  # nothing was queued


async def test_an_approved_server_comes_back_after_a_restart(
    server_factory: type[Server], petstore: PetstoreApi
) -> None:
    env = {"MCPGW_BOOTSTRAP_API_KEY": BOOT, "MCPGW_ALLOW_PRIVATE_URLS": "true"}
    first = server_factory(**env)
    first.wait_ready()
    async with _client(first) as client:
        job_id = await generate(
            client, openapi=(SPECS / "petstore3.yaml").read_text(), base_url=petstore.base_url,
            name="kept", secret_headers={"api_key": API_KEY},
        )  # fmt: skip
        await draft_of(client, job_id)
        r = await client.post(f"/api/v1/jobs/{job_id}/approve", json={"tools": ["getInventory"]})
        assert r.status_code == 200, r.text
    first.stop()
    again = server_factory(**env)  # the same data directory: SQLite file, secret key
    again.wait_ready()
    async with mcp_client(again.url, BOOT) as mcp:
        result = await mcp.call_tool("kept__getInventory", {})
    assert result.structured_content == {"available": 1, "sold": 1}
    assert petstore.requests[-1]["headers"]["api_key"] == API_KEY


async def test_racing_reviewers_settle_a_draft_once(gateway: Server, petstore: PetstoreApi) -> None:
    """Approve and reject at once, a few times: exactly one wins each time, and the
    server exists exactly when the approval won."""
    spec = (SPECS / "petstore3.yaml").read_text()
    async with _client(gateway) as client:
        jobs = [
            await generate(client, openapi=spec, base_url=petstore.base_url, name=f"race-{i}")
            for i in range(3)
        ]
        for i, job_id in enumerate(jobs):
            await draft_of(client, job_id)
            approve, reject = await asyncio.gather(
                client.post(f"/api/v1/jobs/{job_id}/approve", json={}),
                client.post(f"/api/v1/jobs/{job_id}/reject", json={}),
            )
            statuses = sorted([approve.status_code, reject.status_code])
            assert statuses == [200, 409], (approve.text, reject.text)
            job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
            registered = (await client.get(f"/api/v1/servers/race-{i}")).status_code == 200
            assert registered == (approve.status_code == 200) == (job["status"] == "succeeded")
