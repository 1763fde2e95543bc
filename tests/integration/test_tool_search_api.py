"""REST ``POST /api/v1/tools/search``: SEARCH_TOOLS' answer over REST, only ever over
the tools the caller may see (a team's server stays hidden from outsiders, even
when the query names its tool exactly)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.db import Database
from tests.conftest import AppHarness, make_settings


def _source(name: str, tools: dict[str, str]) -> str:
    lines = ["from mcp.server.mcpserver import MCPServer", f"server = MCPServer({name!r})"]
    for tool, doc in tools.items():
        lines += [
            f"def {tool}(id: str) -> str:",
            f"    return {tool!r}",
            f"server.add_tool({tool}, name={tool!r}, description={doc!r})",
        ]
    return "\n".join(lines) + "\n"


PUBLIC = {
    "create_invoice": "Create an invoice for a customer",
    "list_invoices": "List the invoices of a customer",
    "send_reminder": "Email a payment reminder for an overdue invoice",
}
PRIVATE = {"export_salaries": "Export every employee's salary to a spreadsheet"}


@pytest.fixture
async def h(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[AppHarness]:
    app = create_app(make_settings(db_url, tmp_path, health_interval_seconds=3600))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client,
    ):
        yield AppHarness(app, client)


async def _add(h: AppHarness, name: str, tools: dict[str, str], **extra: object) -> None:
    body = {"name": name, "type": "generated", "config": {"source": _source(name, tools)}}
    r = await h.client.post(
        "/api/v1/servers", json={**body, **extra}, params={"wait": True}, headers=h.auth()
    )
    assert r.status_code == 201, r.text


async def _search(
    h: AppHarness, query: str, key: str | None = None, **extra: object
) -> httpx.Response:
    headers = h.auth(key) if key else h.auth()
    return await h.client.post(
        "/api/v1/tools/search", json={"query": query, **extra}, headers=headers
    )


async def test_search_ranks_with_reasons_and_hides_other_teams_tools(h: AppHarness) -> None:
    await _add(h, "billing", PUBLIC)
    team = (await h.client.post("/api/v1/teams", json={"name": "hr"}, headers=h.auth())).json()
    await _add(h, "payroll", PRIVATE, team_id=team["id"])
    r = await h.client.post(
        "/api/v1/users", json={"email": "dev@example.com", "role": "developer"}, headers=h.auth()
    )
    r = await h.client.post(
        "/api/v1/keys", json={"name": "k", "user_id": r.json()["id"]}, headers=h.auth()
    )
    outsider = r.json()["key"]

    r = await _search(h, "bill a customer", limit=2)
    assert r.status_code == 200, r.text
    hits = r.json()["tools"]
    assert hits[0]["name"] == "billing__create_invoice"
    assert hits[0]["reason"] and "inputSchema" in hits[0] and len(hits) <= 2

    # The admin sees the team's tool; the outsider never does, however it asks.
    r = await _search(h, "export salaries payroll")
    assert r.json()["tools"][0]["name"] == "payroll__export_salaries"
    for query in ["export salaries payroll", "payroll__export_salaries", "spreadsheet"]:
        r = await _search(h, query, outsider, limit=50)
        assert r.status_code == 200
        shown = [t["name"] for t in r.json()["tools"]]
        shown += [a for t in r.json()["tools"] for a in t.get("alternatives", [])]
        assert not any(name.startswith("payroll__") for name in shown), shown


async def test_search_validates_its_arguments(h: AppHarness) -> None:
    assert (await _search(h, "")).status_code == 422
    assert (await _search(h, "x", limit=0)).status_code == 422
    assert (await _search(h, "x", limit=51)).status_code == 422
    r = await _search(h, "zzzz qqqq")
    assert r.status_code == 200 and r.json()["tools"] == []
