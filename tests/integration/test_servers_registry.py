"""The server registry through REST on both databases: validation, RBAC, versions, catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.db import Database
from tests.conftest import AppHarness, make_settings

ECHO = (
    "from mcp.server.mcpserver import MCPServer\nserver = MCPServer('echo')\n"
    "@server.tool()\ndef say(text: str) -> str:\n    return text\n"
)


@pytest.fixture
async def h(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[AppHarness]:
    app = create_app(make_settings(db_url, tmp_path, health_interval_seconds=3600))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client,
    ):
        yield AppHarness(app, client)


async def _post(h: AppHarness, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return await h.client.post(
        "/api/v1/servers",
        json=body,
        params={"wait": True},
        headers=h.auth(key) if key else h.auth(),
    )


async def _user_key(h: AppHarness, email: str, role: str) -> tuple[str, str]:
    r = await h.client.post("/api/v1/users", json={"email": email, "role": role}, headers=h.auth())
    user_id = r.json()["id"]
    r = await h.client.post(
        "/api/v1/keys", json={"name": "k", "user_id": user_id}, headers=h.auth()
    )
    return user_id, r.json()["key"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "type": "telepathy", "config": {}}, "type"),
        ({"name": "x", "type": "remote", "config": {"url": "not a url"}}, "config.url"),
        ({"name": "x", "type": "remote", "config": {"url": "ftp://example.com/x"}}, "config.url"),
        (
            {"name": "x", "type": "remote", "config": {"url": "http://127.0.0.1:9/mcp"}},
            "config.url",
        ),
        ({"name": "x", "type": "npx", "config": {}}, "config.package"),
        ({"name": "x", "type": "npx", "config": {"package": "bad name!"}}, "config.package"),
        ({"name": "x", "type": "uvx", "config": {"pkg": "a"}}, "config.package"),
        ({"name": "x", "type": "docker", "config": {"image": "UPPER:case"}}, "config.image"),
        ({"name": "x", "type": "generated", "config": {}}, "config"),
        (
            {
                "name": "x",
                "type": "bundle",
                "config": {"members": [{"name": "a", "server": "ghost"}]},
            },
            "config.members.0.server",
        ),
        ({"name": "Bad_Name", "type": "npx", "config": {"package": "p"}}, "name"),
        ({"name": "a--b", "type": "npx", "config": {"package": "p"}}, "name"),
        ({"name": "x", "type": "npx", "config": {"package": "p"}, "env": {"1BAD": "v"}}, "env"),
        ({"name": "x", "type": "npx", "config": {"package": "p"}, "colour": "red"}, "colour"),
    ],
)
async def test_invalid_registrations_name_the_field(
    h: AppHarness, body: dict[str, Any], field: str
) -> None:
    r = await _post(h, body)
    assert r.status_code == 422, r.text
    payload = r.json()
    assert payload["code"] in {"validation_error", "name_taken"}
    assert field in [e["field"] for e in payload["errors"]], payload


async def test_name_clash_is_a_422_naming_name(h: AppHarness) -> None:
    assert (
        await _post(h, {"name": "echo", "type": "generated", "config": {"source": ECHO}})
    ).status_code == 201
    r = await _post(h, {"name": "echo", "type": "generated", "config": {"source": ECHO}})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "name"


async def test_lifecycle_versions_and_catalog(h: AppHarness) -> None:
    r = await _post(
        h, {"name": "echo", "type": "generated", "config": {"source": ECHO}, "tags": ["t"]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["tool_count"] == 1 and r.json()["version"] == 1
    tools = (
        await h.client.get("/api/v1/tools", params={"server": "echo"}, headers=h.auth())
    ).json()
    assert [t["qualified_name"] for t in tools["items"]] == ["echo__say"]
    assert tools["items"][0]["definition"]["inputSchema"]["properties"]["text"]
    found = (await h.client.get("/api/v1/tools", params={"q": "SAY"}, headers=h.auth())).json()
    assert "echo__say" in [t["qualified_name"] for t in found["items"]]
    r = await h.client.post(
        "/api/v1/tools/execute",
        json={"tool": "echo__say", "arguments": {"text": "hi"}},
        headers=h.auth(),
    )
    assert r.json()["content"][0]["text"] == "hi"

    r = await h.client.patch(
        "/api/v1/servers/echo",
        json={"description": "says things", "secrets": {"TOKEN": "abc12345"}},
        headers=h.auth(),
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    assert r.json()["secrets"] == {"TOKEN": "***"}
    versions = (await h.client.get("/api/v1/servers/echo/versions", headers=h.auth())).json()
    assert [v["version"] for v in versions] == [2, 1]
    assert "description" in versions[0]["summary"] and versions[0]["snapshot"]["secrets"] == {
        "env": ["TOKEN"],
        "headers": [],
    }
    assert "abc12345" not in str(versions)

    r = await h.client.patch("/api/v1/servers/echo", json={"enabled": False}, headers=h.auth())
    assert r.json()["health"]["status"] == "stopped"
    r = await h.client.post(
        "/api/v1/tools/execute", json={"tool": "echo__say", "arguments": {}}, headers=h.auth()
    )
    assert r.status_code == 404 and r.json()["code"] == "tool_not_found"

    assert (await h.client.delete("/api/v1/servers/echo", headers=h.auth())).status_code == 204
    assert (await h.client.get("/api/v1/servers/echo", headers=h.auth())).status_code == 404
    tools = (await h.client.get("/api/v1/tools", params={"q": "say"}, headers=h.auth())).json()
    assert tools["total"] == 0


async def test_roles_and_teams(h: AppHarness) -> None:
    _, viewer = await _user_key(h, "viewer@example.com", "viewer")
    dev_id, developer = await _user_key(h, "dev@example.com", "developer")
    _, operator = await _user_key(h, "ops@example.com", "operator")
    body = {"name": "echo", "type": "generated", "config": {"source": ECHO}}
    assert (await _post(h, body, viewer)).status_code == 403
    assert (await _post(h, body, developer)).status_code == 403
    r = await _post(h, body, operator)
    assert r.status_code == 403 and "admin" in r.json()["message"]  # generated code runs in-process
    r = await _post(
        h,
        {"name": "remote", "type": "remote", "config": {"url": "https://example.com/mcp"}},
        operator,
    )
    assert r.status_code == 201, r.text
    # viewers may read but not call
    assert (await h.client.get("/api/v1/servers", headers=h.auth(viewer))).status_code == 200
    r = await h.client.post(
        "/api/v1/tools/execute",
        json={"tool": "remote__anything", "arguments": {}},
        headers=h.auth(viewer),
    )
    assert r.status_code == 403 and r.json()["code"] == "call_denied"
    # a team's server is invisible outside the team
    team = (await h.client.post("/api/v1/teams", json={"name": "core"}, headers=h.auth())).json()
    r = await _post(h, {**body, "name": "private", "team_id": team["id"]})
    assert r.status_code == 201
    assert (
        await h.client.get("/api/v1/servers/private", headers=h.auth(developer))
    ).status_code == 404
    r = await h.client.post(
        "/api/v1/tools/execute",
        json={"tool": "private__say", "arguments": {"text": "x"}},
        headers=h.auth(developer),
    )
    assert r.status_code == 404
    await h.client.post(
        f"/api/v1/teams/{team['id']}/members", json={"user_id": dev_id}, headers=h.auth()
    )
    # membership is part of the cached principal: a new key sees it at once
    r = await h.client.post(
        "/api/v1/keys", json={"name": "fresh", "user_id": dev_id}, headers=h.auth()
    )
    fresh = r.json()["key"]
    assert (await h.client.get("/api/v1/servers/private", headers=h.auth(fresh))).status_code == 200
    r = await h.client.post(
        "/api/v1/tools/execute",
        json={"tool": "private__say", "arguments": {"text": "x"}},
        headers=h.auth(fresh),
    )
    assert r.json()["content"][0]["text"] == "x"


@pytest.mark.parametrize("tool", ["nounderscores", "__x", "x__"])
async def test_execute_rejects_malformed_tool_names(h: AppHarness, tool: str) -> None:
    r = await h.client.post("/api/v1/tools/execute", json={"tool": tool}, headers=h.auth())
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "tool"
