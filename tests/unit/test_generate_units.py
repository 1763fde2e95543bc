"""The server generator's pure parts (reading documents, Swagger 2.0 → 3.0, names) and
the model client against the scripted stand-in (no LLM endpoint is reachable here)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.config import Settings
from gateway.errors import AppError
from gateway.llm.client import ModelClient, ModelConfig, ModelError, require_model
from gateway.llm.prompts import load_prompt
from gateway.llm.tokens import TokenBatcher
from gateway.servers.generate.docs import page_text
from gateway.servers.generate.document import document_base_url, read_document
from gateway.servers.generate.kind import server_name
from gateway.servers.generate.swagger2 import upgrade
from gateway.servers.runtimes.openapi import describe_tools
from tests.fixtures.llm_standin import KEY, MODEL, ScriptedModel, tool_call
from tests.fixtures.petstore_api import SPECS

LIMIT = 1 << 20


def _code(exc: pytest.ExceptionInfo[AppError]) -> tuple[int, str]:
    return exc.value.status_code, exc.value.code


def test_swagger2_becomes_openapi3_that_fastmcp_reads() -> None:
    doc = upgrade(json.loads((SPECS / "petstore-swagger2.json").read_text()))
    text = json.dumps(doc)
    assert doc["openapi"] == "3.0.3" and "#/definitions/" not in text
    assert doc["servers"] == [{"url": "http://petstore.swagger.io/v2"}]  # schemes: [http]
    assert set(doc["components"]["schemas"]) >= {"Pet", "Order", "User", "Category", "Tag"}
    add = doc["paths"]["/pet"]["post"]
    assert add["requestBody"]["required"] is True
    assert add["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Pet"
    }
    form = doc["paths"]["/pet/{petId}"]["post"]["requestBody"]["content"]
    assert set(form["application/x-www-form-urlencoded"]["schema"]["properties"]) == {
        "name",
        "status",
    }
    upload = doc["paths"]["/pet/{petId}/uploadImage"]["post"]["requestBody"]["content"]
    assert upload["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    status = doc["paths"]["/pet/findByStatus"]["get"]["parameters"][0]
    assert status["schema"]["type"] == "array" and status["explode"] is True
    schemes = doc["components"]["securitySchemes"]
    assert schemes["api_key"] == {"type": "apiKey", "name": "api_key", "in": "header"}
    assert "implicit" in schemes["petstore_auth"]["flows"]
    response = doc["paths"]["/pet/{petId}"]["get"]["responses"]["200"]
    assert response["content"]["application/json"]["schema"]["$ref"].endswith("/Pet")


async def test_real_documents_yield_typed_annotated_tools() -> None:
    doc = read_document((SPECS / "petstore3.yaml").read_text(), LIMIT)
    tools = {t["name"]: t for t in await describe_tools(doc)}
    assert len(tools) == 19
    assert (tools["getPetById"]["method"], tools["getPetById"]["path"]) == ("GET", "/pet/{petId}")
    assert tools["deleteOrder"]["destructive"] and not tools["deleteOrder"]["read_only"]
    assert not tools["addPet"]["read_only"] and not tools["addPet"]["destructive"]
    assert "status" in tools["findPetsByStatus"]["input_schema"]["properties"]


def test_bad_documents_are_4xx_with_codes() -> None:
    cases: list[tuple[Any, tuple[int, str]]] = [
        ("{not json: [", (422, "bad_openapi")),
        ("just a sentence", (422, "bad_openapi")),
        ([1, 2], (422, "bad_openapi")),
        ({"swagger": "1.2", "apis": []}, (422, "bad_openapi")),
        ({"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": {}}, (422, "bad_openapi")),
        ("x" * (LIMIT + 1), (413, "document_too_large")),
        ({"openapi": "3.0.0", "pad": "x" * LIMIT}, (413, "document_too_large")),
    ]  # fmt: skip
    for raw, expected in cases:
        with pytest.raises(AppError) as exc:
            read_document(raw, LIMIT)
        assert _code(exc) == expected, raw if not isinstance(raw, str) else raw[:40]


def test_yaml_alias_bombs_are_refused() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 30)]
    with pytest.raises(AppError) as exc:
        read_document("\n".join(lines), LIMIT)
    assert _code(exc) == (422, "bad_openapi") and "aliases" in exc.value.message


def test_base_urls_and_names() -> None:
    doc: dict[str, Any] = {
        "servers": [{"url": "{scheme}://api.example.com/{v}/", "variables": {
            "scheme": {"default": "https"}, "v": {"default": "v2"}}}]
    }  # fmt: skip
    assert document_base_url(doc) == "https://api.example.com/v2"
    relative = {"servers": [{"url": "/api/v3"}]}
    assert document_base_url(relative) is None
    assert document_base_url(relative, "http://h:8/specs/a.yaml") == "http://h:8/api/v3"
    assert server_name("Swagger Petstore - OpenAPI 3.0") == "swagger-petstore-openapi-3-0"
    assert server_name("!!!") == "api"


def test_page_text_drops_markup_and_chrome() -> None:
    html = "<html><script>evil()</script><nav>menu</nav><h1>API</h1><p>GET /x</p></html>"
    assert page_text(html, "text/html") == "API\nGET /x"
    assert page_text("# API\n\n\n\nGET /x", "text/markdown") == "# API\n\nGET /x"


def test_prompts_are_versioned_files() -> None:
    prompt = load_prompt("openapi_from_docs")
    assert prompt.ref == "openapi_from_docs@1"
    system, user = prompt.messages(source_url="https://d", documentation="DOCS {x}", feedback="")
    assert system["role"] == "system" and "submit_openapi" in system["content"]
    assert "https://d" in user["content"] and "DOCS {x}" in user["content"]


async def test_token_batcher_gathers_deltas() -> None:
    seen: list[tuple[str, Any]] = []

    async def emit(type: str, data: Any) -> None:
        seen.append((type, data))

    batch = TokenBatcher(emit, size=10, interval=3600)
    for piece in ["abc", "def", "ghij", "k"]:
        await batch(piece)
    await batch.flush()
    await batch.flush()
    assert seen == [("token", {"text": "abcdefghij"}), ("token", {"text": "k"})]


async def test_model_client_streams_and_reassembles_tool_calls() -> None:
    replies = [
        {"content": "thinking about it", "tool_calls": [
            tool_call("submit_openapi", {"document": "{}"}), tool_call("other", "{\"a\": [1, 2]}")]},
        {"status": 401, "message": f"bad key {KEY}"},
    ]  # fmt: skip
    with ScriptedModel(replies) as model:
        client = ModelClient(ModelConfig(model.base_url, MODEL, KEY))
        text: list[str] = []
        args: list[str] = []

        async def on_token(piece: str) -> None:
            text.append(piece)

        async def on_args(piece: str) -> None:
            args.append(piece)

        done = await client.complete(
            [{"role": "user", "content": "hi"}], tools=[{"type": "function", "function": {
                "name": "submit_openapi", "parameters": {"type": "object"}}}],
            on_token=on_token, on_arguments=on_args,
        )  # fmt: skip
        assert done.content == "thinking about it" and len(text) > 1
        assert [(c.name, c.parsed_arguments()) for c in done.tool_calls] == [
            ("submit_openapi", {"document": "{}"}), ("other", {"a": [1, 2]}),
        ]  # fmt: skip
        assert len(args) > 2 and done.finish_reason == "tool_calls"
        assert done.as_message()["tool_calls"][1]["function"]["name"] == "other"
        with pytest.raises(ModelError) as exc:
            await client.complete([{"role": "user", "content": "again"}])
        await client.close()
    assert exc.value.message == "the model endpoint answered HTTP 401"
    assert model.requests[0]["stream"] is True and model.auth[0] == f"Bearer {KEY}"
    assert KEY not in repr(ModelConfig(model.base_url, MODEL, KEY))


def test_no_model_configured_is_a_409_naming_the_settings(tmp_path: Any) -> None:
    settings = Settings(data_dir=tmp_path, llm_base_url="https://llm.example/v1")
    with pytest.raises(AppError) as exc:
        require_model(settings, "this")
    assert _code(exc) == (409, "model_not_configured")
    assert exc.value.body()["missing"] == ["MCPGW_LLM_MODEL"]
    assert "MCPGW_LLM_MODEL" in exc.value.message


async def test_generated_servers_call_apis_through_the_ssrf_guard() -> None:
    """A generated server's HTTP client vets each host when it connects (so a name that
    resolves to a private address later, DNS rebinding, is refused too)."""
    import httpx2

    from gateway.servers.runtimes.openapi import api_client
    from tests.fixtures.petstore_api import PetstoreApi

    api = PetstoreApi().start()
    base = api.base_url.replace("127.0.0.1", "localhost")
    try:
        async with api_client(base, allow_private_urls=False) as guarded:
            with pytest.raises(httpx2.ConnectError, match="loopback/private"):
                await guarded.get("/pet/1")
        async with api_client(base, {"api_key": "k"}, allow_private_urls=True) as open_client:
            assert (await open_client.get("/pet/1")).json()["name"] == "doggie"
    finally:
        api.stop()
    assert [r["headers"].get("api_key") for r in api.requests] == ["k"]


def test_watch_shows_a_draft_in_short(capsys: pytest.CaptureFixture[str]) -> None:
    """`mcpgw jobs watch` on a generation: model output counted (not echoed), the draft's
    tools listed with their kind, and how to review it; the document itself not shown."""
    from gateway.cli_watch import follow

    draft = {
        "server": {"name": "pets", "base_url": "https://pets.example.com"},
        "tools": [
            {"name": "getPet", "method": "GET", "path": "/pet", "read_only": True,
             "test": {"ok": True}},
            {"name": "deletePet", "method": "DELETE", "path": "/pet", "destructive": True},
        ],
        "source": {"document": {"openapi": "3.0.3", "x-secret-marker": "not shown"}},
    }  # fmt: skip
    lines = [
        "id: 1", "event: token", 'data: {"text": "abc"}', "",
        "id: 2", "event: result",
        "data: " + json.dumps({"status": "review", "result": draft}), "",
    ]  # fmt: skip
    assert follow(lines) == "result"
    out = capsys.readouterr().out
    assert "draft pets → https://pets.example.com" in out
    assert "getPet  GET /pet  read-only test ok" in out
    assert "deletePet  DELETE /pet  destructive" in out
    assert "mcpgw jobs approve" in out and "not shown" not in out and "abc" not in out
