"""Tool transforms (issue 21) on real backends, through every listing and call path.

A real backend process (tests/fixtures/http_backend.py, Streamable HTTP: the fast path
serves it) is registered as `tx` with transforms: its `args` tool (which answers the
arguments it was sent, a `token` and a phone number) renamed `inspect`, re-described,
with a default `mode` and a fixed `user`; `echo` re-described; `whoami` and `sleep`
hidden by globs; results with `token` dropped and phone numbers redacted. The same
backend is also registered untouched as `fix`. Then: every listing (`tools/list` in
both eras and on `/mcp/servers/tx`, SEARCH_TOOLS, REST `tools/search` and the REST
catalog) shows the same tools; a call by the new name works on every path (REST, the
fast path, the SDK path, EXECUTE_TOOL, the server's own endpoint, a 2025-11-25
session) with the backend seeing the default and the fixed value; hidden tools and the
old name are refused; the audit row has the agent's name and the backend's in its
detail; malformed transforms are 422s naming the field.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.mcp.test_endpoint import _new_key, connect
from tests.integration.mcp.test_request_limits import PATHS, call
from tests.support import BOOT, Server, free_port, spawn_http, wait_for
from tests.support_mcp import ACCEPT, MODERN, last_message, modern_meta

BACKEND = Path(__file__).resolve().parents[2] / "fixtures" / "http_backend.py"
AUTH = {"Authorization": f"Bearer {BOOT}"}
TRANSFORMS = {
    "tools": {
        "args": {
            "rename": "inspect",
            "description": "Shows the arguments it was called with.",
            "defaults": {"mode": "brief"},
            "fixed": {"user": "svc"},
        },
        "echo": {"description": "Repeats the text it is given, exactly."},
    },
    "hide": ["who*", "s?eep"],
    "results": {
        "drop": ["$.structuredContent.token"],
        "redact": [{"pattern": r"\d{3}-\d{4}", "replacement": "###"}],
    },
}
# What agents see of `tx`: name → (description, input schema).
INSPECT_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "mode": {"type": "string", "default": "brief"}},
    "required": ["text"],
}
# What the backend answers `inspect {text: hi, user: me}` with, as the agent gets it.
ANSWER = {"arguments": {"text": "hi", "user": "svc", "mode": "brief"}, "note": "call ###"}


@pytest.fixture(scope="module")
def backend_url() -> Iterator[str]:
    port = free_port()
    proc = spawn_http([sys.executable, str(BACKEND), str(port)], port)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def gateway(module_server_factory: type[Server], backend_url: str) -> Server:
    server = module_server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT,
        MCPGW_ALLOW_PRIVATE_URLS="true",
        MCPGW_SERVER_CALL_TIMEOUT_SECONDS="5",
        MCPGW_INTERFACE_MODE="list",  # every tool listed, however many
    )
    server.wait_ready()
    for name, transforms in (("tx", TRANSFORMS), ("fix", None)):
        body: dict[str, Any] = {"name": name, "type": "remote", "config": {"url": backend_url}}
        if transforms is not None:
            body["transforms"] = transforms
        r = httpx.post(
            f"{server.url}/api/v1/servers",
            params={"wait": True},
            json=body,
            headers=AUTH,
            timeout=60,
        )
        assert r.status_code == 201, r.text
        assert r.json()["transforms"] == transforms
        assert "transforms" not in r.json()["config"]
    return server


def _tx(tools: list[dict[str, Any]], prefix: str = "tx__") -> dict[str, Any]:
    """The `tx` tools of a listing: name (without the prefix) → (description, schema)."""
    return {
        t["name"][len(prefix) :]: (t.get("description"), t.get("inputSchema"))
        for t in tools
        if t["name"].startswith(prefix)
    }


def _modern_list(server: Server, path: str = "/mcp") -> dict[str, Any]:
    """Every page of a 2026-07-28 `tools/list` (the fast path's cached pages)."""
    headers = {**AUTH, "Accept": ACCEPT, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/list"}
    tools: list[dict[str, Any]] = []
    params: dict[str, Any] = {"_meta": modern_meta()}
    while True:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}
        r = httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)
        assert r.status_code == 200 and r.headers["mcpgw-route"] == "cached", r.text
        page = last_message(r)["result"]
        tools += page["tools"]
        if not page.get("nextCursor"):
            return _tx(tools, "tx__" if path == "/mcp" else "")
        params = {**params, "cursor": page["nextCursor"]}


async def _sdk_list(server: Server, mode: str, path: str = "/mcp") -> dict[str, Any]:
    """Every page of `tools/list` through the SDK's client (its own requests)."""
    tools: list[dict[str, Any]] = []
    cursor = None
    async with connect(f"{server.url}{path}", mode=mode) as client:
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += [
                t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in page.tools
            ]
            cursor = page.next_cursor
            if not cursor:
                return _tx(tools, "tx__" if path == "/mcp" else "")


async def test_every_listing_shows_the_same_transformed_tools(gateway: Server) -> None:
    listed = _modern_list(gateway)
    assert listed["inspect"] == ("Shows the arguments it was called with.", INSPECT_SCHEMA)
    assert listed["echo"] == ("Repeats the text it is given, exactly.", {"type": "object"})
    assert listed["nap"] == ("nap tool", {"type": "object"})
    assert not {"args", "whoami", "sleep"} & set(listed)  # renamed away and hidden
    assert await _sdk_list(gateway, "legacy") == listed  # a 2025-11-25 session
    assert await _sdk_list(gateway, "auto") == listed  # the SDK's 2026-07-28 client
    assert _modern_list(gateway, "/mcp/servers/tx") == listed
    assert await _sdk_list(gateway, "legacy", "/mcp/servers/tx") == listed
    # The REST catalog, the query matching the new name and description.
    r = httpx.get(f"{gateway.url}/api/v1/tools", params={"server": "tx"}, headers=AUTH)
    items = r.json()["items"]
    rest = {i["name"]: (i["description"], i["definition"].get("inputSchema")) for i in items}
    assert rest == listed and r.json()["total"] == len(listed)
    assert {i["qualified_name"] for i in items} == {f"tx__{n}" for n in listed}
    r = httpx.get(f"{gateway.url}/api/v1/tools", params={"q": "arguments it was"}, headers=AUTH)
    assert [i["qualified_name"] for i in r.json()["items"]] == ["tx__inspect"]
    # The untouched registration of the same backend still lists the backend's own.
    assert {"args", "whoami", "sleep"} <= set(_modern_list(gateway, "/mcp/servers/fix"))


async def test_search_finds_tools_by_what_agents_see(gateway: Server) -> None:
    query = {"query": "show the arguments it was called with", "limit": 50}
    r = httpx.post(f"{gateway.url}/api/v1/tools/search", json=query, headers=AUTH)
    hits = _tx(r.json()["tools"])
    assert hits["inspect"] == ("Shows the arguments it was called with.", INSPECT_SCHEMA)
    assert not {"args", "whoami", "sleep"} & set(hits)
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        found = await client.call_tool("SEARCH_TOOLS", query)
    assert found.structured_content is not None
    assert _tx(found.structured_content["tools"]) == hits


def _result(path: str, answer: Any) -> dict[str, Any]:
    return answer[1] if path == "rest" else answer[1]["result"]  # type: ignore[no-any-return]


async def test_a_call_by_the_new_name_gets_defaults_fixed_values_and_filtered_results(
    gateway: Server,
) -> None:
    routes = {}
    for path in PATHS:
        answer, routes[path] = call(gateway, path, "tx__inspect", {"text": "hi", "user": "me"})
        result = _result(path, answer)
        assert answer[0] == 200 and result["isError"] is False, (path, answer)
        # The backend saw the default and the fixed value; the token is dropped and the
        # number redacted, in the structured content and its text copy alike.
        assert result["structuredContent"] == ANSWER, (path, result)
        assert json.loads(result["content"][0]["text"]) == ANSWER, (path, result)
    assert routes["direct"] == "direct" and routes["server_endpoint"] == "direct"
    # A 2025-11-25 session (the fast path) and the SDK's 2026-07-28 client.
    for mode in ("legacy", "auto"):
        async with connect(f"{gateway.url}/mcp", mode=mode) as client:
            got = await client.call_tool("tx__inspect", {"text": "hi"})
        assert got.structured_content == ANSWER, mode
    # The server-wide redaction applies to tools without a rule of their own too.
    answer, _ = call(gateway, "direct", "tx__echo", {"text": "ring 555-0000"})
    assert answer[1]["result"]["content"][0]["text"] == "ring ###"
    # ... and the same backend's untouched registration sends what the agent gave.
    answer, _ = call(gateway, "direct", "fix__args", {"text": "hi", "user": "me"})
    assert answer[1]["result"]["structuredContent"]["arguments"] == {"text": "hi", "user": "me"}
    assert answer[1]["result"]["structuredContent"]["token"] == "tok-123"


@pytest.mark.parametrize("tool", ["tx__whoami", "tx__sleep", "tx__args"])
def test_hidden_and_renamed_away_tools_are_not_callable(gateway: Server, tool: str) -> None:
    for path in PATHS:
        (status, answer), _ = call(gateway, path, tool, {"seconds": 0})
        if path == "rest":
            assert status == 404 and answer["code"] == "tool_not_found", answer
            assert "has no tool" in answer["message"]
        else:
            assert "unknown tool" in answer["error"]["message"], (path, answer)


async def test_the_audit_row_names_the_tool_as_called_and_the_backends(gateway: Server) -> None:
    answer, _ = call(gateway, "direct", "tx__inspect", {"text": "audited", "user": "me"})
    assert answer[0] == 200

    def audited() -> list[dict[str, Any]]:
        r = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "server": "tx", "limit": 200},
            headers=AUTH,
        )
        rows = r.json()["items"]
        return [i for i in rows if (i["arguments"] or {}).get("text") == "audited"]

    row = (await wait_for(audited, what="the audit row"))[0]
    assert row["target"] == "inspect" and row["route"] == "mcp-fast"
    assert row["detail"] == {"backend_tool": "args"}
    # The arguments as sent: the default filled in, the fixed value forced.
    assert row["arguments"] == {"text": "audited", "user": "svc", "mode": "brief"}
    assert row["outcome"] == "ok"
    # Metrics count the call under the name the agent used, too.
    metrics = httpx.get(f"{gateway.url}/metrics", headers=AUTH).text
    assert 'route="direct",server="tx",tool="inspect"' in metrics


@pytest.mark.parametrize(
    ("transforms", "field"),
    [
        ({"tools": {"args": {"fixed": {"nope": 1}}}}, "transforms.tools.args.fixed.nope"),
        ({"tools": {"args": {"defaults": {"nope": 1}}}}, "transforms.tools.args.defaults.nope"),
        ({"tools": {"args": {"rename": "echo"}}}, "transforms.tools.args.rename"),
        (
            {"tools": {"args": {"rename": "x"}, "echo": {"rename": "x"}}},
            "transforms.tools.echo.rename",
        ),
        ({"hide": ["[who"]}, "transforms.hide.0"),
        ({"results": {"drop": ["structuredContent"]}}, "transforms.results.drop"),
        ({"results": {"redact": [{"pattern": "(("}]}}, "transforms.results.redact.0.pattern"),
        ({"rename": {"args": "x"}}, "transforms.rename"),
        ({"tools": {"args": {"hiden": True}}}, "transforms.tools.args.hiden"),
    ],
)
def test_malformed_transforms_are_422_naming_the_field(
    gateway: Server, transforms: dict[str, Any], field: str
) -> None:
    r = httpx.patch(
        f"{gateway.url}/api/v1/servers/tx", json={"transforms": transforms}, headers=AUTH
    )
    assert r.status_code == 422, r.text
    assert any(e["field"].startswith(field) for e in r.json()["errors"]), r.json()
    # Nothing changed.
    assert httpx.get(f"{gateway.url}/api/v1/servers/tx", headers=AUTH).json()["transforms"] == (
        TRANSFORMS
    )


async def test_changing_transforms_changes_what_agents_see_at_once(
    server_factory: type[Server], backend_url: str
) -> None:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_ALLOW_PRIVATE_URLS="true", MCPGW_INTERFACE_MODE="list"
    )
    server.wait_ready()
    body = {"name": "tx", "type": "remote", "config": {"url": backend_url}}
    r = httpx.post(f"{server.url}/api/v1/servers", params={"wait": True}, json=body, headers=AUTH)
    assert r.status_code == 201 and r.json()["transforms"] is None
    assert "args" in _modern_list(server)
    r = httpx.patch(
        f"{server.url}/api/v1/servers/tx",
        json={"transforms": {"tools": {"args": {"rename": "inspect", "fixed": {"user": "a"}}}}},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    listed = _modern_list(server)  # the cached tools/list page was replaced
    assert "inspect" in listed and "args" not in listed
    answer, _ = call(server, "direct", "tx__inspect", {"text": "x"})
    assert answer[1]["result"]["structuredContent"]["arguments"] == {"text": "x", "user": "a"}
    versions = httpx.get(f"{server.url}/api/v1/servers/tx/versions", headers=AUTH).json()
    assert versions[-1]["summary"] == "changed transforms" or versions[0]["summary"] == (
        "changed transforms"
    )
    # `{}` removes them: the backend's own tools again.
    r = httpx.patch(f"{server.url}/api/v1/servers/tx", json={"transforms": {}}, headers=AUTH)
    assert r.status_code == 200 and r.json()["transforms"] is None
    assert "args" in _modern_list(server) and "inspect" not in _modern_list(server)


async def test_policies_match_the_name_agents_see(gateway: Server) -> None:
    """A rule on `tx__inspect` (the new name) hides and refuses the renamed tool; one on
    `tx__args` (the backend's name) matches nothing agents can call."""
    developer = _new_key(gateway, "developer")
    policy = {
        "rules": [
            {"id": "no-inspect", "effect": "deny", "actions": ["tools/call"],
             "targets": ["tx__inspect"]},
            {"id": "no-args", "effect": "deny", "actions": ["tools/call"], "targets": ["*__args"]},
        ]
    }  # fmt: skip
    headers = {**AUTH, "Content-Type": "application/yaml"}
    put = f"{gateway.url}/api/v1/policies"
    assert httpx.put(put, content=yaml.safe_dump(policy), headers=headers).status_code == 200
    try:
        r = httpx.post(
            f"{gateway.url}/api/v1/tools/execute",
            json={"tool": "tx__inspect", "arguments": {"text": "x"}},
            headers={"Authorization": f"Bearer {developer}"},
        )
        assert r.status_code == 403 and r.json()["rule"] == "no-inspect", r.text
        r = httpx.post(
            f"{gateway.url}/api/v1/tools/execute",
            json={"tool": "tx__echo", "arguments": {"text": "x"}},
            headers={"Authorization": f"Bearer {developer}"},
        )
        assert r.status_code == 200 and r.json()["content"][0]["text"] == "x"
        async with connect(f"{gateway.url}/mcp", key=developer) as client:
            names = {t.name for t in (await client.list_tools()).tools}
        assert "tx__echo" in names and "tx__inspect" not in names
    finally:
        assert httpx.put(put, content=yaml.safe_dump({}), headers=headers).status_code == 200
