"""The audit trail end to end (gateway/audit/): one correct row per audited event.

A real gateway process with two real backends: the HTTP fixture (its `whoami` echoes
the sealed secret header the gateway sends it) and `@modelcontextprotocol/server-
everything` over stdio (resources and prompts). Tool calls go through all four paths;
then a resource read, a prompt, a skill upload and load, a sandbox create and exec,
admin changes and a failed sign-in. The audit API must hold exactly one row for each,
with the right actor, route, target and outcome, and no sealed secret anywhere.
"""

# ruff: noqa: F811 (the `backend` fixture comes from test_fastpath)
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from mcp import types

from tests.integration.mcp.test_endpoint import _new_key, connect
from tests.integration.mcp.test_fastpath import AUTH, SECRET, backend  # noqa: F401
from tests.integration.mcp.test_one_call_path import _four_ways
from tests.integration.sandboxes.conftest import need_bwrap
from tests.integration.servers.conftest import EVERYTHING
from tests.support import BOOT, Server, run
from tests.support_skills import skill_zip

ARG_SECRET = "hunter2-is-my-password"


@pytest.fixture
def gateway(server_factory: type[Server], backend: tuple[str, Any]) -> Server:
    server = server_factory(MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_ALLOW_PRIVATE_URLS="true")
    server.wait_ready()
    for body in (
        {"name": "fix", "type": "remote", "config": {"url": backend[0]},
         "secret_headers": {"X-Api-Key": SECRET}},
        {"name": "ev", "type": "npx", "config": {"package": EVERYTHING, "args": ["stdio"]}},
    ):  # fmt: skip
        r = httpx.post(
            f"{server.url}/api/v1/servers",
            params={"wait": True},
            json=body,
            headers=AUTH,
            timeout=300,
        )
        assert r.status_code == 201, r.text
    return server


def _rows(gw: Server, **filters: Any) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{gw.url}/api/v1/audit", params={"limit": 500, **filters}, headers=AUTH, timeout=30
    )
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return list(r.json()["items"])


async def test_one_row_per_event_masked_on_every_path(gateway: Server, tmp_path: Path) -> None:
    need_bwrap()
    # Tool calls: four paths (whoami echoes the sealed secret) and one with secret args.
    results = _four_ways(gateway)
    assert all(status == 200 for status, _, _ in results.values()), results
    r = httpx.post(
        f"{gateway.url}/api/v1/tools/execute",
        json={"tool": "fix__echo", "arguments": {"text": SECRET, "password": ARG_SECRET}},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    # A resource read and a prompt (server-everything), over /mcp.
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        resources = (await client.list_resources()).resources
        uri = str(resources[0].uri)
        read = await client.read_resource(uri)
        assert read.contents
        prompts = (await client.list_prompts()).prompts
        plain = next(p for p in prompts if not any(a.required for a in p.arguments or []))
        got = await client.get_prompt(plain.name)
        assert got.messages
    # A skill: uploaded (a change), then loaded by an agent.
    r = httpx.post(
        f"{gateway.url}/api/v1/skills/upload",
        files={"file": ("audit-demo.zip", skill_zip("audit-demo"))},
        headers=AUTH,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    async with connect(f"{gateway.url}/mcp", mode="legacy") as client:
        loaded = await client.call_tool("LOAD_SKILL", {"name": "audit-demo"})
        assert isinstance(loaded, types.CallToolResult) and not loaded.is_error
    # A sandbox: created and used.
    r = httpx.post(f"{gateway.url}/api/v1/sandboxes", json={}, headers=AUTH, timeout=60)
    assert r.status_code == 201, r.text
    sandbox = r.json()["id"]
    r = httpx.post(
        f"{gateway.url}/api/v1/sandboxes/{sandbox}/exec",
        json={"command": "echo hi"},
        headers=AUTH,
        timeout=60,
    )
    assert r.status_code == 200 and r.json()["exit_code"] == 0, r.text
    # Admin changes (a user and a key) and a failed sign-in.
    _new_key(gateway, "developer")
    bad = httpx.get(
        f"{gateway.url}/api/v1/servers", headers={"Authorization": "Bearer mgw_live_nope0000"}
    )
    assert bad.status_code == 401

    rows = _rows(gateway)
    counts = Counter((r["action"], r["server"], r["route"]) for r in rows)
    expected = {
        ("server.create", None, None): 2,
        ("tools/call", "fix", "rest"): 2,
        ("tools/call", "fix", "mcp"): 1,
        ("tools/call", "fix", "mcp-fast"): 1,
        ("tools/call", "fix", "meta"): 1,
        ("resources/read", "ev", "mcp"): 1,
        ("prompts/get", "ev", "mcp"): 1,
        ("skill.create", None, None): 1,
        ("skills/load", None, None): 1,
        ("tools/call", "skills", "mcp"): 0,  # LOAD_SKILL is a skill load, not a tool call
        ("sandbox.create", None, None): 1,
        ("sandbox.exec", None, None): 1,
        ("user.create", None, None): 2,  # the first admin (bootstrap) and the test's user
        ("key.create", None, None): 2,
        ("auth.failure", None, None): 1,
    }
    assert {k: counts.get(k, 0) for k in expected} == expected, counts
    assert sum(expected.values()) == len(rows), sorted(counts.items())

    calls = [r for r in rows if r["action"] == "tools/call"]
    for row in calls:
        assert row["outcome"] == "ok", row
        assert row["actor"]["email"] and row["actor"]["key_prefix"].startswith("mgw_live_")
        assert row["latency_ms"] > 0 and row["request_id"], row
        assert row["client"]["ip"] == "127.0.0.1"
        assert row["bytes_out"] and row["tokens"], row
    meta = next(r for r in calls if r["route"] == "meta")
    assert (meta["target"], meta["via"]) == ("whoami", "EXECUTE_TOOL")
    echo = next(r for r in calls if r["target"] == "echo")
    assert echo["arguments"] == {"text": "***", "password": "***"}
    assert echo["bytes_in"] == len('{"password":"***","text":"***"}')
    fast = next(r for r in calls if r["route"] == "mcp-fast")
    assert fast["client"]["protocol"] == "2026-07-28"
    assert (fast["client"]["name"], fast["client"]["version"]) == ("t", "1")  # from _meta
    read_row = next(r for r in rows if r["action"] == "resources/read")
    # the backend's own URI (the aggregate wraps it as mcpgw://ev/<quoted uri>)
    assert uri == f"mcpgw://ev/{quote(read_row['target'], safe='')}"
    assert read_row["client"]["name"]  # from the session's initialize
    assert read_row["client"]["protocol"] == "2025-11-25"
    exec_row = next(r for r in rows if r["action"] == "sandbox.exec")
    assert exec_row["target"] == sandbox and exec_row["arguments"] == {"command": "echo hi"}
    booted = [r for r in rows if r["actor"]["auth_method"] == "bootstrap"]
    assert sorted(r["action"] for r in booted) == ["key.create", "user.create"]
    failure = next(r for r in rows if r["action"] == "auth.failure")
    assert failure["outcome"] == "denied" and failure["actor"]["key_prefix"] == "mgw_live_nope00"
    assert failure["error"]["code"]
    # Filters narrow the same rows.
    assert len(_rows(gateway, route="mcp-fast")) == 1
    assert len(_rows(gateway, action="sandbox.*")) == 2
    assert {r["target"] for r in _rows(gateway, server="fix", outcome="ok")} == {"whoami", "echo"}

    # No sealed secret, argument secret or key in any row, export or log.
    export = httpx.get(f"{gateway.url}/api/v1/audit/export", headers=AUTH, timeout=30)
    assert export.status_code == 200 and len(export.text.splitlines()) == len(rows)
    everything = json.dumps(rows) + export.text + gateway.output()
    for secret in (SECRET, ARG_SECRET, BOOT):
        assert secret not in everything, secret

    # The live tail (SSE) starts with the newest rows asked for.
    tail: list[dict[str, Any]] = []
    with httpx.stream(
        "GET",
        f"{gateway.url}/api/v1/audit/stream",
        params={"backlog": 2, "action": "tools/call"},
        headers=AUTH,
        timeout=30,
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data:"):
                tail.append(json.loads(line[5:]))
                if len(tail) == 2:
                    break
    assert [r["action"] for r in tail] == ["tools/call", "tools/call"]
    found = run(
        tmp_path, "audit", "search", "--url", gateway.url, "--key", BOOT, "--action", "key.create"
    )
    assert found.returncode == 0 and "key.create" in found.stdout, found.stderr

    # The chain verifies, from the gateway's own database.
    data = tmp_path / "data"
    verified = run(tmp_path, "audit", "verify", MCPGW_DATA_DIR=str(data))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{len(rows)} rows" in verified.stdout
