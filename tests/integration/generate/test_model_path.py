"""The server generator's model path: a documentation page → an OpenAPI document →
a draft, with the model's output streamed as `token` events; feedback regenerates.

No LLM endpoint is reachable here: the model is the scripted OpenAI-compatible
stand-in of tests/fixtures/llm_standin.py (it replays the replies below, and records
what the gateway asked). Everything else is real: `mcpgw serve` with its embedded
Celery worker, the loopback Petstore API serving the documentation page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fixtures.llm_standin import KEY, MODEL, ScriptedModel, tool_call
from tests.fixtures.petstore_api import PetstoreApi
from tests.integration.generate.support import draft_of, generate, until_settled
from tests.support import BOOT, Server

AUTH = {"Authorization": f"Bearer {BOOT}"}
PAGE = """<!doctype html><html><head><title>Pets API</title><script>var x = 1;</script>
</head><body><nav>Home | Blog</nav><h1>Pets API reference</h1>
<h2>Find pet by ID</h2><p>GET /pet/{petId} returns a single pet as JSON.</p>
<h2>Deletes a pet</h2><p>DELETE /pet/{petId}; send your key in the api_key header.</p>
<pre>curl https://pets.example.com/api/v3/pet/1</pre></body></html>"""


def _document(base_url: str, *extra: str) -> dict[str, Any]:
    pet_id = [{"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}]
    paths: dict[str, Any] = {
        "/pet/{petId}": {
            "get": {"operationId": "getPetById", "summary": "Find pet by ID",
                    "parameters": pet_id, "responses": {"200": {"description": "a pet"}}},
            "delete": {"operationId": "deletePet", "summary": "Deletes a pet",
                       "parameters": pet_id, "responses": {"200": {"description": "gone"}}},
        }
    }  # fmt: skip
    if "findPetsByStatus" in extra:
        paths["/pet/findByStatus"] = {
            "get": {"operationId": "findPetsByStatus", "summary": "Finds pets by status",
                    "parameters": [{"name": "status", "in": "query",
                                    "schema": {"type": "string"}}],
                    "responses": {"200": {"description": "pets"}}}
        }  # fmt: skip
    return {
        "openapi": "3.0.3",
        "info": {"title": "Pets API", "version": "1"},
        "servers": [{"url": base_url}],
        "paths": paths,
    }


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as found:
        yield found


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], model: ScriptedModel) -> Server:
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_ALLOW_PRIVATE_URLS="true", **model.env()
    )
    server.wait_ready()
    return server


async def test_docs_page_to_draft_with_tokens_then_feedback_regenerates(
    gateway: Server, model: ScriptedModel, petstore: PetstoreApi
) -> None:
    docs_url = petstore.page("pets.html", PAGE)
    first = _document(petstore.base_url)
    model.add(
        {"content": "Reading the page. ", "tool_calls": [
            tool_call("submit_openapi", {"document": json.dumps(first)})]},
    )  # fmt: skip
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        job_id = await generate(client, docs_url=docs_url, name="pets")
        job, events = await until_settled(client, job_id)
        assert job["status"] == "review", job
        draft = job["result"]
        assert {t["name"] for t in draft["tools"]} == {"getPetById", "deletePet"}
        assert draft["source"] | {"document": None} == {
            "from": "docs_url", "url": docs_url, "prompt": "openapi_from_docs@1",
            "model": MODEL, "document": None,
        }  # fmt: skip
        assert draft["server"]["base_url"] == petstore.base_url
        # the model's output streamed as token events: its text, then the tool call's
        tokens = "".join(e.data["text"] for e in events if e.event == "token")
        assert tokens.startswith('Reading the page. {"document": ') and "3.0.3" in tokens
        assert sum(e.event == "token" for e in events) >= 2
        # what the model was asked: the versioned prompt, the page's text (no markup)
        asked = model.requests[-1]
        system, user = asked["messages"][0]["content"], asked["messages"][1]["content"]
        assert "OpenAPI 3.0 document" in system and "submit_openapi" in system
        assert "GET /pet/{petId} returns a single pet" in user and docs_url in user
        assert "<h2>" not in user and "var x = 1" not in user and "Home | Blog" not in user
        assert asked["stream"] is True and asked["model"] == MODEL
        assert [t["function"]["name"] for t in asked["tools"]] == ["submit_openapi"]
        assert model.auth[-1] == f"Bearer {KEY}"
        assert KEY not in json.dumps(job) + json.dumps([e.data for e in events])
        # feedback: the draft is made again by a new job; a first unusable answer is
        # sent back to the model with the reason
        model.add(
            {"content": "Here it is, I think."},
            {"tool_calls": [tool_call("submit_openapi", {
                "document": json.dumps(_document(petstore.base_url, "findPetsByStatus"))})]},
        )  # fmt: skip
        r = await client.post(
            f"/api/v1/jobs/{job_id}/reject", json={"feedback": "also document findByStatus"}
        )
        assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
        next_id = r.json()["result"]["rejected"]["next_job_id"]
        second = await draft_of(client, next_id)
        assert {t["name"] for t in second["tools"]} == {
            "getPetById", "deletePet", "findPetsByStatus",
        }  # fmt: skip
        retry, fixed = model.requests[-2], model.requests[-1]
        assert "also document findByStatus" in retry["messages"][1]["content"]
        assert '"deletePet"' in retry["messages"][1]["content"]  # the rejected document
        assert "cannot be used" in fixed["messages"][-1]["content"]
        r = await client.post(f"/api/v1/jobs/{next_id}/approve", json={})
        assert r.status_code == 200, r.text
        assert r.json()["result"]["approved"]["tools"] == [
            "getPetById", "deletePet", "findPetsByStatus",
        ]  # fmt: skip
        r = await client.post(
            "/api/v1/tools/execute", json={"tool": "pets__getPetById", "arguments": {"petId": 1}}
        )
        assert r.status_code == 200 and "doggie" in r.text, r.text
    assert KEY not in gateway.output()


async def test_model_failures_fail_the_job_without_leaking_the_key(
    gateway: Server, model: ScriptedModel, petstore: PetstoreApi
) -> None:
    docs_url = petstore.page("broken.html", PAGE)
    model.add(*[{"status": 503, "message": "overloaded"}] * 3)  # the client retries twice
    async with httpx.AsyncClient(base_url=gateway.url, headers=AUTH, timeout=60) as client:
        job, _ = await until_settled(client, await generate(client, docs_url=docs_url))
        assert job["status"] == "failed", job
        assert job["error"] == {
            "code": "model_failed", "message": "the model endpoint answered HTTP 503",
        }  # fmt: skip
        model.add({"content": "no document here"}, {"content": "still none"})
        job, _ = await until_settled(client, await generate(client, docs_url=docs_url))
    assert job["status"] == "failed" and job["error"]["code"] == "bad_openapi", job
    assert "did not write a usable OpenAPI document" in job["error"]["message"]
    assert model.replies == []
