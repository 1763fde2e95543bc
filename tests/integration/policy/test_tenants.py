"""Teams as tenants (issue #17): quotas platform admins set on servers, sandboxes,
skills and calls per day, and each team's own policy document, which applies to its
members only and can only narrow what the platform's allows."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.mcp.test_endpoint import connect
from tests.integration.policy.conftest import AUTH, applied
from tests.integration.policy.test_policy_calls import mcp, rest
from tests.support import Server, wait_for

LIMITED = -32029


def _post(server: Server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/api/v1{path}", json=body, headers=AUTH, timeout=30)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def team(server: Server) -> dict[str, Any]:
    return _post(server, "/teams", {"name": f"t-{uuid.uuid4().hex[:8]}"})


def person(server: Server, role: str = "developer", **teams: str) -> tuple[str, str]:
    """A user (``teams``: team id → its role there) and a key minted after joining."""
    user = _post(server, "/users", {"email": f"{uuid.uuid4().hex[:8]}@example.com", "role": role})
    for team_id, team_role in teams.items():
        _post(server, f"/teams/{team_id}/members", {"user_id": user["id"], "role": team_role})
    key = _post(server, "/keys", {"name": "t", "user_id": user["id"]})["key"]
    return user["id"], str(key)


def put_team_policy(
    server: Server, team_ref: str, document: dict[str, Any] | str, key: str | None = None
) -> httpx.Response:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    auth = {"Authorization": f"Bearer {key}"} if key else AUTH
    return httpx.put(
        f"{server.url}/api/v1/teams/{team_ref}/policy",
        content=text.encode(),
        headers={**auth, "Content-Type": "application/yaml"},
        timeout=30,
    )


def put_quotas(
    server: Server, team_id: str, key: str | None = None, **quotas: int
) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else AUTH
    return httpx.put(
        f"{server.url}/api/v1/teams/{team_id}/quotas", json=quotas, headers=auth, timeout=30
    )


async def names(server: Server, key: str) -> set[str]:
    """What ``tools/list`` on /mcp shows the key's caller."""
    async with connect(f"{server.url}/mcp", key) as client:
        return {t.name for t in (await client.list_tools()).tools}


DENY_WHOAMI = {
    "rules": [
        {
            "id": "no-whoami",
            "effect": "deny",
            "actions": ["tools/call"],
            "targets": ["fix__whoami"],
            "message": "not in this team",
        }
    ]
}


@pytest.fixture(autouse=True)
def no_platform_rules(gateway: Server) -> None:
    applied(gateway, {})


# --- team documents -----------------------------------------------------------------
async def test_a_team_deny_refuses_its_members_only_and_names_the_team(gateway: Server) -> None:
    t = team(gateway)
    _, member = person(gateway, **{t["id"]: "member"})
    _, outsider = person(gateway)
    r = put_team_policy(gateway, t["name"], DENY_WHOAMI)
    assert r.status_code == 200 and r.json()["version"] == 1, r.text
    rule = f"team:{t['name']}/no-whoami"

    body = rest(gateway, member, "fix__whoami", {}).json()
    assert body["code"] == "policy_denied" and body["rule"] == rule, body
    assert "not in this team" in body["message"]
    result = mcp(gateway, member, "fix__whoami", {}).json()["result"]
    assert result["isError"] is True and rule in result["content"][0]["text"]
    assert rest(gateway, member, "fix__echo", {"text": "x"}).status_code == 200
    assert rest(gateway, outsider, "fix__whoami", {}).status_code == 200

    # Listings follow the team's rules, for its members only.
    assert "fix__whoami" not in await names(gateway, member)
    assert "fix__whoami" in await names(gateway, outsider)

    async def audited() -> list[dict[str, Any]] | None:
        r = httpx.get(
            f"{gateway.url}/api/v1/audit",
            params={"action": "tools/call", "outcome": "denied", "limit": 50},
            headers=AUTH,
        )
        rows = [row for row in r.json()["items"] if (row.get("detail") or {}).get("rule") == rule]
        return rows or None

    rows = await wait_for(audited, timeout=10, what="the audited team denial")
    assert rows[0]["error"]["code"] == "policy_denied"

    # Explain names the team's rule.
    r = httpx.post(
        f"{gateway.url}/api/v1/policies/evaluate",
        json={
            "subject": {"role": "developer", "team": t["name"]},
            "action": "tools/call",
            "target": "fix__whoami",
        },
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    explained = r.json()
    assert explained["decision"] == "deny" and explained["rule"] == rule, explained
    assert rule in explained["matched"]


async def test_a_team_allow_cannot_override_a_platform_deny(gateway: Server) -> None:
    t = team(gateway)
    _, member = person(gateway, **{t["id"]: "member"})
    applied(
        gateway,
        {"rules": [{"id": "platform-no-whoami", "effect": "deny", "actions": ["tools/call"],
                    "targets": ["fix__whoami"]}]},
    )  # fmt: skip
    allow = {"rules": [{"id": "yes", "effect": "allow", "actions": ["*"], "targets": ["*"]}]}
    assert put_team_policy(gateway, t["id"], allow).status_code == 200
    body = rest(gateway, member, "fix__whoami", {}).json()
    assert body["code"] == "policy_denied" and body["rule"] == "platform-no-whoami", body


async def test_a_team_default_deny_allows_only_its_rules(gateway: Server) -> None:
    t = team(gateway)
    _, member = person(gateway, **{t["id"]: "member"})
    document = {
        "default": "deny",
        "rules": [{"id": "echo", "effect": "allow", "actions": ["tools/call", "list"],
                   "targets": ["fix__echo"]}],
    }  # fmt: skip
    assert put_team_policy(gateway, t["id"], document).status_code == 200
    assert rest(gateway, member, "fix__echo", {"text": "x"}).status_code == 200
    body = rest(gateway, member, "fix2__echo", {"text": "x"}).json()
    assert body["code"] == "policy_denied" and body["rule"] == f"team:{t['name']}", body
    assert await names(gateway, member) & {"fix__echo", "fix2__echo"} == {"fix__echo"}


async def test_who_may_change_a_team_policy(gateway: Server) -> None:
    mine, other = team(gateway), team(gateway)
    _, owner = person(gateway, **{mine["id"]: "owner", other["id"]: "member"})
    _, member = person(gateway, **{mine["id"]: "member"})
    assert put_team_policy(gateway, mine["name"], DENY_WHOAMI, owner).status_code == 200
    assert put_team_policy(gateway, other["name"], DENY_WHOAMI, owner).status_code == 403
    assert put_team_policy(gateway, mine["name"], {}, member).status_code == 403
    # The platform's document stays the platform admins'.
    r = httpx.put(
        f"{gateway.url}/api/v1/policies",
        content=b"rules: []\n",
        headers={"Authorization": f"Bearer {owner}", "Content-Type": "application/yaml"},
    )
    assert r.status_code == 403, r.text
    # Members read their team's document; others do not see it.
    r = httpx.get(
        f"{gateway.url}/api/v1/teams/{mine['name']}/policy",
        headers={"Authorization": f"Bearer {member}"},
    )
    assert r.status_code == 200 and r.json()["document"]["rules"][0]["id"] == "no-whoami"
    _, stranger = person(gateway)
    r = httpx.get(
        f"{gateway.url}/api/v1/teams/{mine['name']}/policy",
        headers={"Authorization": f"Bearer {stranger}"},
    )
    assert r.status_code == 404


async def test_export_apply_export_is_identical_and_errors_name_rule_and_field(
    gateway: Server,
) -> None:
    t = team(gateway)
    text = """\
rules:
  - id: no-whoami
    effect: deny
    actions: [tools/call]
    targets: ["fix__whoami"]
limits:
  - id: echo-rate
    scope: [user]
    targets: ["fix__echo"]
    rate: 100/minute
"""
    assert put_team_policy(gateway, t["name"], text).status_code == 200
    url = f"{gateway.url}/api/v1/teams/{t['name']}/policy"
    exported = httpx.get(url, params={"format": "yaml"}, headers=AUTH).text
    again = put_team_policy(gateway, t["name"], exported)
    assert again.status_code == 200 and again.json()["changed"] is False, again.text
    assert httpx.get(url, params={"format": "yaml"}, headers=AUTH).text == exported

    broken = put_team_policy(gateway, t["name"], text.replace("100/minute", "-1/minute"))
    assert broken.status_code == 422, broken.text
    error = broken.json()["errors"][0]
    assert (error["rule"], error["field"]) == ("echo-rate", "limits[0].rate"), error
    other = put_team_policy(
        gateway,
        t["name"],
        {"limits": [{"id": "x", "subjects": {"teams": ["someone-else"]}, "rate": "1/second"}]},
    )
    assert other.status_code == 422
    error = other.json()["errors"][0]
    assert (error["rule"], error["field"]) == ("x", "limits[0].subjects.teams"), error
    versions = httpx.get(f"{url}/versions", headers=AUTH).json()
    assert [v["version"] for v in versions] == [1]


# --- quotas ---------------------------------------------------------------------------
async def test_quotas_are_set_by_admins_and_read_by_members(gateway: Server) -> None:
    t = team(gateway)
    _, owner = person(gateway, **{t["id"]: "owner"})
    assert put_quotas(gateway, t["id"], owner, max_servers=5).status_code == 403
    r = put_quotas(gateway, t["name"], max_servers=1, calls_per_day=100)
    assert r.status_code == 200, r.text
    r = httpx.get(
        f"{gateway.url}/api/v1/teams/{t['id']}/quotas",
        headers={"Authorization": f"Bearer {owner}"},
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["quotas"] == {
        "max_servers": 1, "max_sandboxes": None, "max_skills": None, "calls_per_day": 100
    }  # fmt: skip
    assert out["usage"] == {"servers": 0, "sandboxes": 0, "skills": 0, "calls_today": 0}


def _server(gateway: Server, backend_url: str, team_id: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/api/v1/servers",
        json={
            "name": f"s{uuid.uuid4().hex[:8]}",
            "type": "remote",
            "config": {"url": backend_url},
            "team_id": team_id,
            "enabled": False,
        },
        headers=AUTH,
        timeout=60,
    )


async def test_max_servers_refuses_one_more_with_409(gateway: Server, backend_url: str) -> None:
    t = team(gateway)
    assert put_quotas(gateway, t["id"], max_servers=1).status_code == 200
    assert _server(gateway, backend_url, t["id"]).status_code == 201
    r = _server(gateway, backend_url, t["id"])
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["code"] == "team_quota_exceeded"
    assert (body["quota"], body["team"], body["limit"], body["used"]) == (
        "max_servers", t["name"], 1, 1
    )  # fmt: skip
    assert "max_servers" in body["message"] and t["name"] in body["message"]
    assert "allows 1" in body["message"] and "has 1 servers" in body["message"]
    # Servers of no team are not counted.
    assert _server(gateway, backend_url, None).status_code == 201  # type: ignore[arg-type]


async def test_concurrent_creates_do_not_both_pass(gateway: Server, backend_url: str) -> None:
    t = team(gateway)
    assert put_quotas(gateway, t["id"], max_servers=2).status_code == 200

    async def one(client: httpx.AsyncClient) -> int:
        r = await client.post(
            f"{gateway.url}/api/v1/servers",
            json={"name": f"c{uuid.uuid4().hex[:8]}", "type": "remote",
                  "config": {"url": backend_url}, "team_id": t["id"], "enabled": False},
            headers=AUTH,
        )  # fmt: skip
        return r.status_code

    async with httpx.AsyncClient(timeout=60) as client:
        statuses = await asyncio.gather(*(one(client) for _ in range(6)))
    assert sorted(statuses) == [201, 201, 409, 409, 409, 409], statuses
    usage = httpx.get(f"{gateway.url}/api/v1/teams/{t['id']}/quotas", headers=AUTH).json()
    assert usage["usage"]["servers"] == 2


async def test_max_skills_refuses_one_more(gateway: Server) -> None:
    t = team(gateway)
    assert put_quotas(gateway, t["id"], max_skills=1).status_code == 200

    def upload(name: str) -> httpx.Response:
        text = f"---\nname: {name}\ndescription: A skill for the quota test.\n---\n\nBody.\n"
        return httpx.post(
            f"{gateway.url}/api/v1/skills/upload",
            files={"file": ("SKILL.md", text.encode())},
            params={"team_id": t["id"]},
            headers=AUTH,
            timeout=30,
        )

    first = f"q-{uuid.uuid4().hex[:6]}"
    assert upload(first).status_code in (200, 201)
    assert upload(first).status_code in (200, 201)  # a new version is not one more skill
    r = upload(f"q-{uuid.uuid4().hex[:6]}")
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "team_quota_exceeded" and r.json()["quota"] == "max_skills"


async def test_max_sandboxes_counts_the_creators_team(gateway: Server) -> None:
    t, other = team(gateway), team(gateway)
    assert put_quotas(gateway, t["id"], max_sandboxes=1).status_code == 200
    _, member = person(gateway, **{t["id"]: "member"})
    headers = {"Authorization": f"Bearer {member}"}
    url = f"{gateway.url}/api/v1/sandboxes"
    r = httpx.post(url, json={"name": "a"}, headers=headers, timeout=120)
    assert r.status_code == 201, r.text
    assert r.json()["team_id"] == t["id"]  # the creator's only team
    r = httpx.post(url, json={"name": "b"}, headers=headers, timeout=120)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "team_quota_exceeded" and r.json()["quota"] == "max_sandboxes"
    # In two teams, one with a quota: say which.
    _, both = person(gateway, **{t["id"]: "member", other["id"]: "member"})
    headers = {"Authorization": f"Bearer {both}"}
    r = httpx.post(url, json={"name": "c"}, headers=headers, timeout=120)
    assert r.status_code == 422 and r.json()["code"] == "team_required", r.text
    r = httpx.post(url, json={"name": "d", "team_id": other["id"]}, headers=headers, timeout=120)
    assert r.status_code == 201, r.text
    for item in httpx.get(url, headers=AUTH, params={"limit": 100}).json()["items"]:
        if item["team_id"] in (t["id"], other["id"]):
            httpx.delete(f"{url}/{item['id']}", headers=AUTH, timeout=60)


async def test_calls_per_day_refuses_the_next_call_through_the_limit_stage(
    gateway: Server,
) -> None:
    t = team(gateway)
    _, member = person(gateway, **{t["id"]: "member"})
    _, outsider = person(gateway)
    assert put_quotas(gateway, t["id"], calls_per_day=2).status_code == 200
    assert rest(gateway, member, "fix__echo", {"text": "1"}).status_code == 200
    assert mcp(gateway, member, "fix2__echo", {"text": "2"}).json()["result"]["isError"] is False
    r = rest(gateway, member, "fix__echo", {"text": "3"})
    assert r.status_code == 429, r.text
    body = r.json()
    assert body["code"] == "quota_exceeded" and body["limit"] == f"team:{t['name']}/calls_per_day"
    assert body["scope"] == {"team": t["id"]} and "retry-after" in r.headers
    error = mcp(gateway, member, "fix__echo", {"text": "4"}).json()["error"]
    assert error["code"] == LIMITED and error["data"]["code"] == "quota_exceeded"
    assert rest(gateway, outsider, "fix__echo", {"text": "x"}).status_code == 200
    usage = httpx.get(f"{gateway.url}/api/v1/teams/{t['id']}/quotas", headers=AUTH).json()
    assert usage["usage"]["calls_today"] == 2
    # Lifted: calls go through again at once.
    assert put_quotas(gateway, t["id"]).status_code == 200
    assert rest(gateway, member, "fix__echo", {"text": "5"}).status_code == 200
