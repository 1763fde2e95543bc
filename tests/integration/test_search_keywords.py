"""An admin's search keywords on a tool (REST, stored with the catalog, read by every
replica) and the usage and linked-skill boosts fed from the audit trail and the
skills' links, on a real database and real (generated) MCP servers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import search_signals
from gateway.db import Database
from gateway.mcp.search import signals
from tests.conftest import AppHarness, make_settings, running_app
from tests.integration.test_tool_search_api import PUBLIC, _add, _search
from tests.support_skills import skill_md

KEYWORDS = "/api/v1/servers/billing/tools/send_reminder/keywords"


@pytest.fixture
async def h(database: Database, db_url: str, tmp_path: Path) -> AsyncIterator[AppHarness]:
    async with running_app(make_settings(db_url, tmp_path, health_interval_seconds=3600)) as h:
        yield h
    signals.install(signals.Signals())


def _names(r: httpx.Response) -> list[str]:
    tools: list[dict[str, Any]] = r.json()["tools"]
    return [t["name"] for t in tools] + [a for t in tools for a in t.get("alternatives", [])]


async def _outsider(h: AppHarness) -> str:
    r = await h.client.post(
        "/api/v1/users", json={"email": "dev@example.com", "role": "developer"}, headers=h.auth()
    )
    r = await h.client.post(
        "/api/v1/keys", json={"name": "k", "user_id": r.json()["id"]}, headers=h.auth()
    )
    return str(r.json()["key"])


async def test_keywords_make_a_tool_findable_on_every_replica(
    h: AppHarness, db_url: str, tmp_path: Path
) -> None:
    await _add(h, "billing", PUBLIC)
    assert "billing__send_reminder" not in _names(await _search(h, "start dunning"))

    r = await h.client.put(
        KEYWORDS, json={"keywords": [" dunning", "dunning ", "collections"]}, headers=h.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json()["keywords"] == ["dunning", "collections"]
    r = await _search(h, "start dunning")
    assert r.json()["tools"][0]["name"] == "billing__send_reminder"
    assert "keywords: dunning" in r.json()["tools"][0]["reason"]
    listed = await h.client.get("/api/v1/servers/billing/tools", headers=h.auth())
    by_name = {t["name"]: t for t in listed.json()["items"]}
    assert by_name["send_reminder"]["keywords"] == ["dunning", "collections"]
    assert by_name["create_invoice"]["keywords"] == []

    # Another replica on the same database reads them from the catalog.
    other = make_settings(db_url, tmp_path / "other", health_interval_seconds=3600)
    async with running_app(other) as replica:
        r = await _search(replica, "start dunning")
        assert r.json()["tools"][0]["name"] == "billing__send_reminder"

    # A refresh from the live server keeps them; an empty list removes them.
    r = await h.client.post("/api/v1/servers/billing/refresh", headers=h.auth())
    assert r.status_code == 200
    assert (await _search(h, "dunning")).json()["tools"][0]["name"] == "billing__send_reminder"
    r = await h.client.put(KEYWORDS, json={"keywords": []}, headers=h.auth())
    assert r.status_code == 200 and r.json()["keywords"] == []
    assert "billing__send_reminder" not in _names(await _search(h, "start dunning"))


async def test_setting_keywords_is_checked(h: AppHarness) -> None:
    await _add(h, "billing", PUBLIC)
    for body in (
        {"keywords": [""]},
        {"keywords": ["x" * 65]},
        {"keywords": [f"k{i}" for i in range(33)]},
        {"keywords": ["ok"], "extra": 1},
        {},
    ):
        r = await h.client.put(KEYWORDS, json=body, headers=h.auth())
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"]
    r = await h.client.put(
        "/api/v1/servers/billing/tools/nope/keywords", json={"keywords": ["x"]}, headers=h.auth()
    )
    assert r.status_code == 404 and r.json()["code"] == "tool_not_found"
    r = await h.client.put(
        "/api/v1/servers/nope/tools/x/keywords", json={"keywords": ["x"]}, headers=h.auth()
    )
    assert r.status_code == 404 and r.json()["code"] == "server_not_found"
    outsider = await _outsider(h)
    r = await h.client.put(KEYWORDS, json={"keywords": ["x"]}, headers=h.auth(outsider))
    assert r.status_code == 403
    # The change that went through is audited, old and new keywords alike.
    r = await h.client.put(KEYWORDS, json={"keywords": ["dunning"]}, headers=h.auth())
    assert r.status_code == 200
    await h.app.state.audit.flush()  # type: ignore[attr-defined]
    r = await h.client.get("/api/v1/audit", params={"action": "tool.keywords"}, headers=h.auth())
    events = r.json()["items"]
    assert [e["target"] for e in events] == ["billing__send_reminder"], events


async def test_a_hidden_tool_stays_hidden_even_by_its_keywords(h: AppHarness) -> None:
    team = (await h.client.post("/api/v1/teams", json={"name": "hr"}, headers=h.auth())).json()
    await _add(h, "billing", PUBLIC, team_id=team["id"])
    r = await h.client.put(KEYWORDS, json={"keywords": ["dunning"]}, headers=h.auth())
    assert r.status_code == 200
    outsider = await _outsider(h)
    for query in ("dunning", "start dunning", "send reminder dunning"):
        r = await _search(h, query, outsider, limit=50)
        assert r.status_code == 200
        assert not any(n.startswith("billing__") for n in _names(r)), query
    assert (await _search(h, "dunning")).json()["tools"][0]["name"] == "billing__send_reminder"


async def test_usage_and_skill_links_are_read_into_the_boosts(
    h: AppHarness, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add(h, "billing", PUBLIC)
    for _ in range(3):
        r = await h.client.post(
            "/api/v1/tools/execute",
            json={"tool": "billing__list_invoices", "arguments": {"id": "c1"}},
            headers=h.auth(),
        )
        assert r.status_code == 200, r.text
    r = await h.client.post(
        "/api/v1/tools/execute",
        json={"tool": "billing__create_invoice", "arguments": {"id": "c1"}},
        headers=h.auth(),
    )
    md = skill_md("month-end-close", "Close the month - invoices, reminders, reports.")
    r = await h.client.post(
        "/api/v1/skills/upload", files={"file": ("SKILL.md", md)}, headers=h.auth()
    )
    assert r.status_code in (200, 201), r.text
    r = await h.client.put(
        "/api/v1/skills/month-end-close/links", json={"servers": ["billing"]}, headers=h.auth()
    )
    assert r.status_code == 200, r.text

    state = h.app.state  # type: ignore[attr-defined]
    await state.audit.flush()
    settings = state.gw.settings
    found = await search_signals.refresh(settings, state.audit, state.skills)
    assert found.usage["billing__list_invoices"] == 1.0
    assert 0 < found.usage["billing__create_invoice"] < 1.0
    assert set(found.usage) == {"billing__list_invoices", "billing__create_invoice"}
    assert found.skill_shares({"close", "month"}) == {"billing": 1.0}
    assert signals.installed() is found

    # A gateway reads them on its own, in the background, soon after it starts.
    signals.install(signals.Signals())
    monkeypatch.setattr(search_signals, "FIRST_DELAY", 0.0)
    other = make_settings(db_url, tmp_path / "other", health_interval_seconds=3600)
    async with running_app(other):
        for _ in range(200):
            if signals.installed().usage:
                break
            await asyncio.sleep(0.05)
        assert signals.installed().usage["billing__list_invoices"] == 1.0
        assert signals.installed().skill_shares({"close", "month"}) == {"billing": 1.0}
