"""`tools/list` served from cached serialised pages (gateway/mcp/fastlist.py).

Against a real `mcpgw serve`: the cached answer must be exactly what the SDK path
answers (same result, both protocol eras), follow the caller's view and interface
mode, page with working cursors, and change as soon as the catalog does. A request
the cache path declines (here: `"cursor": null`) takes the SDK path, which shows in
the absent `mcpgw-route: cached` header.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.mcp.test_endpoint import connect
from tests.support import BOOT, Server

MODERN = "2026-07-28"
LEGACY = "2025-11-25"


@pytest.fixture
def gateway(server_factory: type[Server]) -> Server:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT)
    server.wait_ready()
    return server


def _headers(key: str, version: str, session: str | None = None) -> dict[str, str]:
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": version,
        "Mcp-Method": "tools/list",
    }
    if session:
        headers["Mcp-Session-Id"] = session
    return headers


def _legacy_session(server: Server, key: str) -> str:
    init = {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    r = httpx.post(
        f"{server.url}/mcp",
        json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
        headers=_headers(key, LEGACY),
    )
    session = r.headers["mcp-session-id"]
    httpx.post(
        f"{server.url}/mcp",
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=_headers(key, LEGACY, session),
    )
    return session


def _decode(r: httpx.Response) -> dict[str, Any]:
    """A JSON body or the one `message` event of an SSE body."""
    assert r.status_code == 200 or "error" in r.json(), r.text
    if r.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in r.text.splitlines() if line.startswith("data:")]
        return dict(httpx.Response(200, content=data[-1]).json())
    return dict(r.json())


def tools_list(
    server: Server,
    version: str,
    *,
    key: str = BOOT,
    session: str | None = None,
    cursor: str | None = None,
    sdk: bool = False,
    request_id: Any = 7,
) -> tuple[dict[str, Any], str | None]:
    """One raw tools/list: (the JSON-RPC message, the route header)."""
    params: dict[str, Any] = {}
    if cursor is not None or sdk:
        params["cursor"] = cursor  # None: valid for the SDK, declined by the cache path
    if version == MODERN:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    r = httpx.post(
        f"{server.url}/mcp",
        json={"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": params},
        headers=_headers(key, version, session),
        timeout=30,
    )
    return _decode(r), r.headers.get("mcpgw-route")


@pytest.mark.parametrize("version", [MODERN, LEGACY])
def test_cached_answer_is_the_sdk_answer(gateway: Server, version: str) -> None:
    session = _legacy_session(gateway, BOOT) if version == LEGACY else None
    cached, route = tools_list(gateway, version, session=session, request_id="list-1")
    assert route == "cached"
    assert cached["id"] == "list-1"
    again, route = tools_list(gateway, version, session=session, request_id=8)
    assert route == "cached" and again["id"] == 8 and again["result"] == cached["result"]
    sdk, route = tools_list(gateway, version, session=session, sdk=True)
    assert route is None  # the SDK answered
    assert cached["result"] == sdk["result"]
    names = [t["name"] for t in cached["result"]["tools"]]
    assert "essentials__calculator_evaluate" in names and names == sorted(names)
    if version == MODERN:
        assert cached["result"]["resultType"] == "complete"
        assert cached["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == (
            "mcp-gateway"
        )
    else:
        assert "resultType" not in cached["result"] and "_meta" not in cached["result"]


def test_pages_follow_cursors_and_the_catalog_changes(server_factory: type[Server]) -> None:
    gateway = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_MCP_PAGE_SIZE="4")
    gateway.wait_ready()
    names: list[str] = []
    cursor: str | None = None
    while True:
        page, route = tools_list(gateway, MODERN, cursor=cursor)
        assert route == "cached"
        names += [t["name"] for t in page["result"]["tools"]]
        cursor = page["result"].get("nextCursor")
        if cursor is None:
            break
    sdk_names: list[str] = []
    cursor = None
    while True:
        page, _ = tools_list(gateway, MODERN, cursor=cursor, sdk=True)
        sdk_names += [t["name"] for t in page["result"]["tools"]]
        cursor = page["result"].get("nextCursor")
        if cursor is None:
            break
    assert names == sdk_names and len(names) > 4
    assert any(n.startswith("essentials__") for n in names)

    bad, route = tools_list(gateway, MODERN, cursor="not-a-cursor")
    assert route is None and bad["error"]["code"] == -32602  # the SDK words the error

    r = httpx.delete(
        f"{gateway.url}/api/v1/servers/essentials", headers={"Authorization": f"Bearer {BOOT}"}
    )
    assert r.status_code == 204, r.text
    after, route = tools_list(gateway, MODERN)
    assert route == "cached"
    assert not any(t["name"].startswith("essentials__") for t in after["result"]["tools"])


async def test_each_caller_gets_its_own_view(gateway: Server) -> None:
    r = httpx.post(
        f"{gateway.url}/api/v1/keys",
        json={"name": "searcher", "interface_mode": "search_execute"},
        headers={"Authorization": f"Bearer {BOOT}"},
    )
    assert r.status_code == 201, r.text
    searcher = str(r.json()["key"])
    admin, _ = tools_list(gateway, MODERN)
    search, route = tools_list(gateway, MODERN, key=searcher)
    assert route == "cached"
    search_names = {t["name"] for t in search["result"]["tools"]}
    assert {"SEARCH_TOOLS", "EXECUTE_TOOL"} <= search_names
    assert not any("__" in n for n in search_names)
    assert any("__" in t["name"] for t in admin["result"]["tools"])
    # A real client sees the same through the cache path.
    async with connect(f"{gateway.url}/mcp", key=searcher) as client:
        assert {t.name for t in (await client.list_tools()).tools} == search_names
