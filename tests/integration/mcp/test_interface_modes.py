"""Interface modes: `list`, `search_execute` and `auto`, and what they cost an agent's context."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.integration.mcp.test_endpoint import connect
from tests.support import BOOT, Server

VERBS = [
    "create",
    "delete",
    "update",
    "list",
    "get",
    "archive",
    "restore",
    "export",
    "import",
    "sync",
]
NOUNS = [
    "invoice",
    "customer",
    "ticket",
    "repository",
    "deployment",
    "calendar event",
    "document",
    "user",
    "report",
    "payment",
    "shipment",
    "alert",
    "dashboard",
    "backup",
    "secret",
]


def _catalog_source() -> str:
    """A generated server with 150 realistic tools (10 verbs x 15 nouns) plus a converter."""
    lines = [
        "from mcp.server.mcpserver import MCPServer",
        "server = MCPServer('bigcorp')",
        "def _make(name, doc):",
        "    def tool(id: str, note: str = '', dry_run: bool = False, limit: int = 10) -> str:",
        "        return f'{name} done for {id}'",
        "    tool.__doc__ = doc",
        "    server.add_tool(tool, name=name, description=doc)",
    ]
    for verb in VERBS:
        for noun in NOUNS:
            name = f"{verb}_{noun.replace(' ', '_')}"
            doc = (
                f"{verb.capitalize()} a {noun} in the company systems. Use it when the user asks to "
                f"{verb} one {noun}; pass the {noun} id, an optional note for the audit trail, "
                f"dry_run to preview the change, and limit for list-style results."
            )
            lines.append(f"_make({name!r}, {doc!r})")
    return "\n".join(lines) + "\n"


@pytest.fixture
def big_gateway(server_factory: type[Server]) -> Server:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    r = httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "bigcorp", "type": "generated", "config": {"source": _catalog_source()}},
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=120,
    )
    assert r.status_code == 201 and r.json()["tool_count"] == 150, r.text
    return server


def _key(server: Server, mode: str | None) -> str:
    body: dict[str, Any] = {"name": f"mode-{mode}"}
    if mode:
        body["interface_mode"] = mode
    r = httpx.post(
        f"{server.url}/api/v1/keys", json=body, headers={"Authorization": f"Bearer {BOOT}"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def _listing(server: Server, key: str) -> tuple[list[str], int]:
    async with connect(f"{server.url}/mcp", key=key) as client:
        result = await client.list_tools()
        size = len(json.dumps(result.model_dump(by_alias=True, exclude_none=True, mode="json")))
        return [t.name for t in result.tools], size


async def test_search_execute_is_50x_smaller_and_still_does_the_job(big_gateway: Server) -> None:
    list_names, list_bytes = await _listing(big_gateway, _key(big_gateway, "list"))
    meta_names, meta_bytes = await _listing(big_gateway, _key(big_gateway, "search_execute"))
    assert len(list_names) >= 150
    assert meta_names == ["SEARCH_TOOLS", "EXECUTE_TOOL"]
    print(
        f"tools/list: list mode {list_bytes} bytes, search_execute {meta_bytes} bytes ({list_bytes / meta_bytes:.0f}x)"
    )
    assert list_bytes >= 50 * meta_bytes, (list_bytes, meta_bytes)

    task = {"id": "INV-7", "note": "customer asked"}
    async with connect(f"{big_gateway.url}/mcp", key=_key(big_gateway, "list")) as client:
        direct = await client.call_tool("bigcorp__archive_invoice", task)
    async with connect(f"{big_gateway.url}/mcp", key=_key(big_gateway, "search_execute")) as client:
        found = await client.call_tool("SEARCH_TOOLS", {"query": "archive an invoice", "limit": 3})
        matches = found.structured_content["tools"]  # type: ignore[index]
        assert matches[0]["name"] == "bigcorp__archive_invoice"
        assert "id" in matches[0]["inputSchema"]["properties"]
        via_meta = await client.call_tool(
            "EXECUTE_TOOL", {"tool": matches[0]["name"], "arguments": task}
        )
    assert via_meta.content[0].text == direct.content[0].text == "archive_invoice done for INV-7"  # type: ignore[union-attr]


async def test_auto_switches_at_the_threshold_and_teams_can_choose(big_gateway: Server) -> None:
    names, _ = await _listing(big_gateway, _key(big_gateway, None))  # global default: auto
    assert names == ["SEARCH_TOOLS", "EXECUTE_TOOL"]  # 150+ tools > 30
    auth = {"Authorization": f"Bearer {BOOT}"}
    user = httpx.post(
        f"{big_gateway.url}/api/v1/users", json={"email": "t@example.com"}, headers=auth
    ).json()
    team = httpx.post(
        f"{big_gateway.url}/api/v1/teams",
        json={"name": "listers", "interface_mode": "list"},
        headers=auth,
    ).json()
    httpx.post(
        f"{big_gateway.url}/api/v1/teams/{team['id']}/members",
        json={"user_id": user["id"]},
        headers=auth,
    )
    key = httpx.post(
        f"{big_gateway.url}/api/v1/keys", json={"name": "k", "user_id": user["id"]}, headers=auth
    ).json()["key"]
    names, _ = await _listing(big_gateway, key)
    assert len(names) >= 150  # the team's choice


async def test_meta_tool_errors_are_tool_errors(big_gateway: Server) -> None:
    async with connect(f"{big_gateway.url}/mcp", key=_key(big_gateway, "search_execute")) as client:
        for name, args in [
            ("SEARCH_TOOLS", {}),
            ("SEARCH_TOOLS", {"query": "x", "limit": 0}),
            ("EXECUTE_TOOL", {}),
            ("EXECUTE_TOOL", {"tool": "SEARCH_TOOLS"}),
            ("EXECUTE_TOOL", {"tool": "bigcorp__get_user", "arguments": "nope"}),
        ]:
            result = await client.call_tool(name, args)
            assert result.is_error is True, (name, args)
        nothing = await client.call_tool("SEARCH_TOOLS", {"query": "zzzz qqqq"})
        assert nothing.structured_content["tools"] == []  # type: ignore[index]


async def test_list_mode_is_paginated(server_factory: type[Server]) -> None:
    server = server_factory(
        MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_MCP_PAGE_SIZE="50", MCPGW_INTERFACE_MODE="list"
    )
    server.wait_ready()
    httpx.post(
        f"{server.url}/api/v1/servers",
        params={"wait": True},
        json={"name": "bigcorp", "type": "generated", "config": {"source": _catalog_source()}},
        headers={"Authorization": f"Bearer {BOOT}"},
        timeout=120,
    ).raise_for_status()
    async with connect(f"{server.url}/mcp") as client:
        names: list[str] = []
        cursor = None
        pages = 0
        while True:
            result = await client.list_tools(cursor=cursor)
            names += [t.name for t in result.tools]
            pages += 1
            cursor = result.next_cursor
            if not cursor:
                break
    assert pages == 4  # 150 + 12 essentials, 50 a page
    # ... and, on the first page only, the 7 sandbox tools (pillar tools stay off cursors)
    assert len(names) == len(set(names)) == 162 + 7
    assert names == sorted(names)
