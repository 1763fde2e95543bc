"""The audit API in process, on both databases: search with filters and cursors, one
row, export (JSON lines, CSV), the live tail, usage, who sees what, and bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

import pytest

from gateway.audit.entry import AuditEntry
from gateway.audit.service import AuditLog
from gateway.auth.principal import Principal
from tests.conftest import AppHarness


def _audit(h: AppHarness) -> AuditLog:
    audit: AuditLog = h.app.state.audit  # type: ignore[attr-defined]
    return audit


def _who(email: str, team: str | None, role: str = "admin") -> Principal:
    return Principal(
        user_id=email, email=email, name="", role=role, key_id=None, scopes=("*",),
        team_ids=(team,) if team else (), key_prefix="mgw_live_abcdef",
    )  # fmt: skip


async def _seed(h: AppHarness) -> None:
    audit = _audit(h)
    for i in range(30):
        audit.record(
            AuditEntry(
                action="tools/call",
                principal=_who("ann@example.com" if i % 2 else "bob@example.com",
                               "red" if i % 2 else "blue"),
                route="rest",
                server="alpha" if i < 20 else "beta",
                target=f"tool{i % 3}",
                outcome="ok" if i % 5 else "error",
                error=None if i % 5 else f"backend failed #{i}",
                latency_ms=float(i),
                bytes_out=400,
            )
        )  # fmt: skip
    await audit.flush()


async def _get(h: AppHarness, path: str, **params: Any) -> Any:
    return await h.client.get(f"/api/v1/{path}", params=params, headers=h.auth())


async def test_search_filters_cursor_and_one_row(harness: AppHarness) -> None:
    await _seed(harness)
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, "server": "alpha"}
        if cursor:
            params["cursor"] = cursor
        page = (await _get(harness, "audit", **params)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 20  # every alpha row once, newest first
    body = (await _get(harness, "audit", outcome="error", q="FAILED #1")).json()
    assert [i["error"]["message"] for i in body["items"]] == [
        "backend failed #15",
        "backend failed #10",
    ]
    ann = (await _get(harness, "audit", actor="ann@example.com", limit=500)).json()["items"]
    assert len(ann) == 15 and {i["actor"]["team"] for i in ann} == {"red"}
    one = await _get(harness, f"audit/{seen[0]}")
    assert one.status_code == 200 and one.json()["id"] == seen[0]
    missing = await _get(harness, "audit/nope")
    assert missing.status_code == 404 and missing.json()["code"] == "audit_event_not_found"


async def test_export_streams_jsonl_and_csv(harness: AppHarness) -> None:
    await _seed(harness)
    r = await _get(harness, "audit/export", server="beta")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert len(lines) == 10 and {row["server"] for row in lines} == {"beta"}
    r = await _get(harness, "audit/export", format="csv", outcome="error")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 6 and rows[0]["outcome"] == "error" and rows[0]["actor_email"]


async def test_usage_aggregates_tool_calls(harness: AppHarness) -> None:
    await _seed(harness)
    by_server = (await _get(harness, "usage", by="server")).json()
    items = {i["key"]: i for i in by_server["items"]}
    assert items["alpha"]["calls"] == 20 and items["alpha"]["errors"] == 4
    assert items["alpha"]["p50_ms"] == pytest.approx(9.5)
    assert items["alpha"]["tokens"] == 20 * 100
    by_team = (await _get(harness, "usage", by="team")).json()
    assert {i["key"]: i["calls"] for i in by_team["items"]} == {"red": 15, "blue": 15}


async def test_live_tail_sends_new_rows(harness: AppHarness) -> None:
    """The tail's generator (httpx's ASGI transport does not stream; the SSE endpoint is
    followed over HTTP in test_audit_trail.py)."""
    audit = _audit(harness)
    from gateway.audit.repository import AuditFilter

    admin = _who("a@example.com", None)
    audit.change("key.revoke", admin, "before")  # older than the tail: in the backlog only
    await audit.flush()
    rows = audit.tail(admin, AuditFilter(action="key.revoke"), poll=0.05, backlog=1)
    assert (await anext(rows)).target == "before"
    for target in ("k1", "other", "k2"):
        action = "key.revoke" if target != "other" else "key.create"
        audit.change(action, admin, target, old={"name": target})
    await audit.flush()
    got = [(await asyncio.wait_for(anext(rows), 10)).target for _ in range(2)]
    await rows.aclose()
    assert got == ["k1", "k2"]


async def test_a_non_admin_sees_their_teams_rows_only(harness: AppHarness) -> None:
    await _seed(harness)
    audit = _audit(harness)
    from gateway.audit.repository import AuditFilter

    operator = _who("ann@example.com", "red", role="operator")
    items, _ = await audit.search(operator, AuditFilter(), 500)
    assert len(items) == 15 and {i.actor.team for i in items} == {"red"}
    developer = _who("dev@example.com", "red", role="developer")
    with pytest.raises(Exception, match="audit:read"):
        await audit.search(developer, AuditFilter(), 10)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"nosuch": "x"}, "unknown_filter"),
        ({"servr": "alpha"}, "unknown_filter"),
        ({"since": "yesterday"}, None),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "bad_filter"),
        ({"limit": 100000}, None),
        ({"limit": 0}, None),
        ({"cursor": "not-a-cursor"}, "bad_cursor"),
        ({"cursor": "WyJ4Il0"}, "bad_cursor"),
        ({"outcome": "maybe"}, "bad_filter"),
    ],
)
async def test_bad_input_gets_a_json_4xx(
    harness: AppHarness, params: dict[str, Any], code: str | None
) -> None:
    r = await _get(harness, "audit", **params)
    assert 400 <= r.status_code < 500, r.text
    body = r.json()
    assert body["code"] and body["message"]
    if code is not None:
        assert body["code"] == code, body
    r = await _get(harness, "audit/export", format="xml")
    assert r.status_code == 422 and r.json()["code"]
    r = await _get(harness, "usage", by="planet")
    assert r.status_code == 422 and r.json()["code"]
