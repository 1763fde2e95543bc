"""Rules on every call path and in every listing, in both protocol eras: REST
`tools/execute`, the `/mcp` fast path, its SDK path, `EXECUTE_TOOL`, a 2025-11-25
session; `tools/list` (aggregated and per server), `SEARCH_TOOLS`, the REST catalog;
resources and prompts (server-everything); conditions (fail closed); key globs; the
audit row of a denial."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.integration.mcp.test_endpoint import _new_key, connect
from tests.integration.policy.conftest import AUTH, applied
from tests.support import Server, wait_for
from tests.support_mcp import modern_call

DENY_WHOAMI = {
    "rules": [
        {
            "id": "no-whoami-for-developers",
            "effect": "deny",
            "subjects": {"roles": ["developer"]},
            "actions": ["tools/call"],
            "targets": ["fix__whoami"],
            "message": "ask an operator",
        }
    ]
}


def rest(server: Server, key: str, tool: str, arguments: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/tools/execute",
        json={"tool": tool, "arguments": arguments},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def mcp(
    server: Server, key: str, name: str, arguments: dict[str, Any] | None, path: str = "/mcp"
) -> httpx.Response:
    body, headers = modern_call(name, arguments, key=key)
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=30)


def every_path(server: Server, key: str, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """What each path answers: the REST body, else the MCP result, and the route."""
    out: dict[str, Any] = {"rest": rest(server, key, tool, args)}
    out["direct"] = mcp(server, key, tool, args)
    out["sdk"] = mcp(server, key, tool, None if not args else args | {"_": None})
    out["execute_tool"] = mcp(server, key, "EXECUTE_TOOL", {"tool": tool, "arguments": args})
    out["server_endpoint"] = mcp(server, key, tool.split("__", 1)[1], args, "/mcp/servers/fix")
    return out


async def test_a_deny_rule_refuses_on_every_path_and_names_itself(
    gateway: Server, developer: str
) -> None:
    applied(gateway, DENY_WHOAMI)
    answers = every_path(gateway, developer, "fix__whoami", {})
    body = answers.pop("rest").json()
    assert body["code"] == "policy_denied" and body["rule"] == "no-whoami-for-developers"
    assert "ask an operator" in body["message"]
    assert answers["direct"].headers.get("mcpgw-route") == "direct"
    assert answers["sdk"].headers.get("mcpgw-route") is None
    for path, r in answers.items():
        result = r.json()["result"]
        assert result["isError"] is True, (path, result)
        assert "policy rule 'no-whoami-for-developers'" in result["content"][0]["text"], path
    async with connect(f"{gateway.url}/mcp", developer, mode="legacy") as client:
        result = await client.call_tool("fix__whoami", {})
        assert result.is_error and "no-whoami-for-developers" in result.content[0].text  # type: ignore[union-attr]
    # The same tool for an operator, and another tool for the developer, go through.
    assert rest(gateway, _new_key(gateway, "operator"), "fix__whoami", {}).status_code == 200
    assert mcp(gateway, developer, "fix__echo", {"text": "hi"}).json()["result"]["isError"] is False

    async def audited() -> list[dict[str, Any]]:
        r = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "outcome": "denied", "target": "whoami", "limit": 50},
            headers=AUTH,
        )
        return [row for row in r.json()["items"] if row["server"] == "fix"]

    async def all_six() -> list[dict[str, Any]] | None:
        rows = await audited()
        return rows if len(rows) >= 6 else None

    found = await wait_for(all_six, timeout=10, what="six audited denials")
    assert len(found) == 6, found  # REST, direct, SDK, EXECUTE_TOOL, per-server, 2025-11-25
    for row in found:
        assert row["detail"] == {"rule": "no-whoami-for-developers"}, row
        assert row["error"]["code"] == "policy_denied"


async def test_listings_leave_out_what_is_denied(gateway: Server, developer: str) -> None:
    applied(gateway, DENY_WHOAMI)
    operator = _new_key(gateway, "operator")
    for mode in ("auto", "legacy"):
        async with connect(f"{gateway.url}/mcp", developer, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "fix__echo" in names and "fix2__whoami" in names
            assert "fix__whoami" not in names, mode
            found = await client.call_tool("SEARCH_TOOLS", {"query": "whoami tool"})
            hits = {t["name"] for t in found.structured_content["tools"]}  # type: ignore[index]
            assert "fix2__whoami" in hits and "fix__whoami" not in hits
        async with connect(f"{gateway.url}/mcp/servers/fix", developer, mode=mode) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "echo" in names and "whoami" not in names
        async with connect(f"{gateway.url}/mcp", operator, mode=mode) as client:
            assert "fix__whoami" in {t.name for t in (await client.list_tools()).tools}
    catalog = httpx.get(
        f"{gateway.url}/api/v1/tools",
        params={"server": "fix", "limit": 500},
        headers={"Authorization": f"Bearer {developer}"},
    ).json()
    names = {item["name"] for item in catalog["items"]}
    assert "echo" in names and "whoami" not in names
    assert catalog["total"] == len(catalog["items"])
    # Take the rule away: the developer sees the tool again, at once.
    applied(gateway, {})
    async with connect(f"{gateway.url}/mcp", developer) as client:
        assert "fix__whoami" in {t.name for t in (await client.list_tools()).tools}


async def test_conditions_decide_per_call_and_fail_closed(gateway: Server, developer: str) -> None:
    applied(
        gateway,
        {
            "rules": [
                {
                    "id": "polite-echo",
                    "effect": "deny",
                    "actions": ["tools/call"],
                    "targets": ["fix__echo"],
                    "condition": 'has(args.text) && args.text.contains("rude")',
                },
                {
                    "id": "broken",
                    "effect": "allow",
                    "actions": ["tools/call"],
                    "targets": ["fix2__echo"],
                    "condition": "args.count > 2",  # no count: cannot be evaluated
                },
            ]
        },
    )
    assert (
        mcp(gateway, developer, "fix__echo", {"text": "kind"}).json()["result"]["isError"] is False
    )
    refused = mcp(gateway, developer, "fix__echo", {"text": "rude words"}).json()["result"]
    assert refused["isError"] and "polite-echo" in refused["content"][0]["text"]
    r = rest(gateway, developer, "fix2__echo", {"text": "x"})
    assert r.status_code == 403 and r.json()["rule"] == "broken"
    assert "could not be evaluated" in r.json()["message"]
    # Operators see it on /metrics, by rule.
    scraped = httpx.get(f"{gateway.url}/metrics", headers=AUTH, timeout=30).text
    assert 'mcpgw_policy_condition_errors_total{rule="broken"}' in scraped
    assert 'mcpgw_limit_storage_failures_total{storage="memory"} 0.0' in scraped
    # The tool still shows: a condition is decided per call.
    async with connect(f"{gateway.url}/mcp", developer) as client:
        assert "fix__echo" in {t.name for t in (await client.list_tools()).tools}
    ok = mcp(gateway, developer, "fix2__echo", {"text": "x", "count": 3}).json()["result"]
    assert ok["isError"] is False


async def test_a_keys_own_tool_globs(gateway: Server) -> None:
    applied(gateway, {})
    user = httpx.post(
        f"{gateway.url}/api/v1/users",
        json={"email": "globbed@example.com", "role": "developer"},
        headers=AUTH,
    ).json()
    r = httpx.post(
        f"{gateway.url}/api/v1/keys",
        json={
            "name": "narrow",
            "user_id": user["id"],
            "tools_allow": ["fix__*"],
            "tools_deny": ["fix__who*"],
            "tags": ["ci"],
        },
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert (r.json()["tools_allow"], r.json()["tags"]) == (["fix__*"], ["ci"])
    assert mcp(gateway, key, "fix__echo", {"text": "a"}).json()["result"]["isError"] is False
    denied = rest(gateway, key, "fix__whoami", {})
    assert denied.status_code == 403 and denied.json()["rule"] == "key:deny"
    outside = mcp(gateway, key, "fix2__echo", {"text": "a"}).json()["result"]
    assert outside["isError"] and "key:allow" in outside["content"][0]["text"]
    async with connect(f"{gateway.url}/mcp", key) as client:
        names = {t.name for t in (await client.list_tools()).tools if "__" in t.name}
        assert names == {f"fix__{t}" for t in ECHO_TOOLS}
    # A bad glob is a 422 naming the field.
    r = httpx.post(
        f"{gateway.url}/api/v1/keys",
        json={"name": "bad", "tools_deny": ["fix__[x"]},
        headers=AUTH,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("tools_deny")
    # Tags are policy subjects.
    applied(
        gateway,
        {
            "rules": [
                {
                    "id": "no-ci",
                    "effect": "deny",
                    "subjects": {"key_tags": ["ci"]},
                    "actions": ["tools/call"],
                }
            ]
        },
    )
    assert rest(gateway, key, "fix__echo", {"text": "a"}).json()["rule"] == "no-ci"
    applied(gateway, {})


# The fixture backend's tools but whoami (tests/fixtures/http_backend.py).
ECHO_TOOLS = {
    "echo", "sleep", "nap", "fail", "reject", "forget", "notify", "ask", "primed", "dropped",
    "latin1", "cancelled", "args",
}  # fmt: skip


@pytest.mark.timeout(300)
async def test_resources_and_prompts(gateway: Server, developer: str) -> None:
    r = httpx.post(
        f"{gateway.url}/api/v1/servers",
        params={"wait": True},
        json={
            "name": "ev",
            "type": "npx",
            "config": {"package": "@modelcontextprotocol/server-everything", "args": ["stdio"]},
        },
        headers=AUTH,
        timeout=300,
    )
    assert r.status_code in (201, 409), r.text
    async with connect(f"{gateway.url}/mcp", developer, mode="legacy") as client:
        resources = [str(x.uri) for x in (await client.list_resources()).resources]
        prompts = [p for p in (await client.list_prompts()).prompts if p.name.startswith("ev__")]
    plain = next(p for p in prompts if not any(a.required for a in p.arguments or []))
    # A rule names a resource as `{server}__{the backend's URI}`.
    applied(
        gateway,
        {
            "rules": [
                {
                    "id": "no-static",
                    "effect": "deny",
                    "actions": ["resources/read"],
                    "targets": ["ev__demo://resource/static/document/architecture*"],
                },
                {
                    "id": "no-plain",
                    "effect": "deny",
                    "actions": ["prompts/get"],
                    "targets": [plain.name],
                },
            ]
        },
    )
    async with connect(f"{gateway.url}/mcp", developer, mode="legacy") as client:
        listed = [str(x.uri) for x in (await client.list_resources()).resources]
        assert len(listed) == len(resources) - 1, resources
        hidden = next(u for u in resources if u not in listed)
        with pytest.raises(MCPError) as caught:
            await client.read_resource(hidden)
        assert "no-static" in str(caught.value)
        assert (await client.read_resource(listed[0])).contents
        names = [p.name for p in (await client.list_prompts()).prompts]
        assert plain.name not in names
        with pytest.raises(MCPError, match="no-plain"):
            await client.get_prompt(plain.name)
    applied(gateway, {})


async def test_require_approval_asks_the_user_where_the_client_can_be_asked(
    gateway: Server, developer: str
) -> None:
    """2025-11-25 sessions that declared elicitation are asked (the fast path hands the
    call to the SDK path to ask); a client that cannot be asked is refused with why."""
    from mcp import Client, types
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    applied(
        gateway,
        {
            "rules": [
                {
                    "id": "approve-echo",
                    "effect": "require_approval",
                    "actions": ["tools/call"],
                    "targets": ["fix__echo"],
                }
            ]
        },
    )
    asked: list[str] = []
    answers = iter(["accept", "decline"])

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        action = next(answers)
        return types.ElicitResult(
            action=action, content={"approve": True} if action == "accept" else None
        )

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {developer}"})
    transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
    async with (
        http,
        Client(transport, cache=None, mode="legacy", elicitation_callback=elicitation) as client,  # type: ignore[arg-type]
    ):
        approved = await client.call_tool("fix__echo", {"text": "go"})
        assert approved.is_error is False and approved.content[0].text == "go"  # type: ignore[union-attr]
        declined = await client.call_tool("fix__echo", {"text": "go"})
        assert declined.is_error and "did not approve" in declined.content[0].text  # type: ignore[union-attr]
    assert len(asked) == 2 and "approve-echo" in asked[0]
    # No elicitation: refused, saying why (REST cannot ask either).
    async with connect(f"{gateway.url}/mcp", developer, mode="legacy") as client:
        refused = await client.call_tool("fix__echo", {"text": "go"})
        assert refused.is_error and "cannot be asked" in refused.content[0].text  # type: ignore[union-attr]
    r = rest(gateway, developer, "fix__echo", {"text": "go"})
    assert r.status_code == 403 and r.json()["rule"] == "approve-echo"

    async def audited() -> list[dict[str, Any]] | None:
        rows = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "target": "echo", "limit": 100},
            headers=AUTH,
        ).json()["items"]
        found = [x for x in rows if (x["detail"] or {}).get("rule") == "approve-echo"]
        return found if len(found) >= 4 else None

    rows = await wait_for(audited, timeout=10, what="four audited calls under approve-echo")
    assert sorted(r["outcome"] for r in rows) == ["denied", "denied", "denied", "ok"]
    assert [r["detail"] for r in rows if r["outcome"] == "ok"] == [
        {"rule": "approve-echo", "approved": True}
    ]
    applied(gateway, {})


async def test_require_approval_asks_a_2026_agent_in_an_input_round(
    gateway: Server, developer: str
) -> None:
    """A 2026-07-28 request that declares elicitation is answered `input_required` with
    the approval question, nothing sent to the backend; the retry with the answer is
    authorized and audited on it (the official Python SDK client in its 2026 mode,
    which answers rounds through its elicitation callback)."""
    from mcp import Client, types
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    rule = f"approve-{uuid.uuid4().hex[:6]}"
    applied(
        gateway,
        {
            "rules": [
                {
                    "id": rule,
                    "effect": "require_approval",
                    "actions": ["tools/call"],
                    "targets": ["fix__echo", "fix__ask"],
                }
            ]
        },
    )
    asked: list[str] = []
    answers = iter(["accept", "decline", "accept", "accept"])

    async def elicitation(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        action = next(answers)
        content = {"approve": True} if "Approve it?" in params.message else {"name": "Ada"}
        return types.ElicitResult(action=action, content=content if action == "accept" else None)

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {developer}"})
    transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
    async with http, Client(transport, cache=None, elicitation_callback=elicitation) as client:  # type: ignore[arg-type]
        approved = await client.call_tool("fix__echo", {"text": "go"})
        assert approved.is_error is False and approved.content[0].text == "go"  # type: ignore[union-attr]
        declined = await client.call_tool("fix__echo", {"text": "no"})
        assert declined.is_error and "did not approve" in declined.content[0].text  # type: ignore[union-attr]
        # Approved once, the backend's own question is a later round, not asked again.
        both = await client.call_tool("fix__ask", {})
        assert both.is_error is False and "Ada" in both.content[0].text, both  # type: ignore[union-attr]
    assert len(asked) == 4 and rule in asked[0] and "Approve it?" not in asked[3]
    # No elicitation declared: refused, saying why.
    body, headers = modern_call("fix__echo", {"text": "go"}, key=developer)
    r = httpx.post(f"{gateway.url}/mcp", json=body, headers=headers, timeout=30)
    refused = r.json()["result"]
    assert refused["isError"] and "cannot be asked" in refused["content"][0]["text"]

    async def audited() -> list[dict[str, Any]] | None:
        rows = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "limit": 100},
            headers=AUTH,
        ).json()["items"]
        found = [x for x in rows if (x["detail"] or {}).get("rule") == rule]
        return found if len(found) >= 4 else None

    rows = await wait_for(audited, timeout=10, what=f"audited calls under {rule}")
    # One row a call that reached a verdict (the question's round is not one): the
    # approved echo, the declined one, the approved ask (each of its rounds) and
    # the refused one; the approved ones carry it.
    outcomes = sorted(r["outcome"] for r in rows)
    assert outcomes.count("denied") == 2 and outcomes.count("ok") >= 2, rows
    assert all(r["detail"]["approved"] for r in rows if r["outcome"] == "ok")
    applied(gateway, {})
