"""`skills/load` and `sandboxes/exec` rules: a denied skill is neither listed nor
loaded (MCP and REST), a sandbox command a rule forbids is refused before it runs."""

from __future__ import annotations

import httpx

from tests.integration.mcp.test_endpoint import _new_key, connect
from tests.integration.policy.conftest import AUTH, applied
from tests.integration.sandboxes.conftest import need_bwrap
from tests.support import Server
from tests.support_skills import skill_zip


async def test_skill_rules(gateway: Server) -> None:
    for name in ("open-notes", "secret-recipe"):
        r = httpx.post(
            f"{gateway.url}/api/v1/skills/upload",
            files={"file": (f"{name}.zip", skill_zip(name))},
            headers=AUTH,
            timeout=30,
        )
        assert r.status_code in (201, 409), r.text
        r = httpx.patch(
            f"{gateway.url}/api/v1/skills/{name}", json={"visibility": "public"}, headers=AUTH
        )
    developer = _new_key(gateway, "developer")
    applied(
        gateway,
        {
            "rules": [
                {
                    "id": "no-secrets",
                    "effect": "deny",
                    "subjects": {"roles": ["developer"]},
                    "actions": ["skills/load"],
                    "targets": ["secret-*"],
                }
            ]
        },
    )
    headers = {"Authorization": f"Bearer {developer}"}
    r = httpx.get(f"{gateway.url}/api/v1/skills/secret-recipe", headers=headers)
    assert r.status_code == 403 and r.json()["rule"] == "no-secrets", r.text
    assert httpx.get(f"{gateway.url}/api/v1/skills/secret-recipe", headers=AUTH).status_code == 200
    r = httpx.get(f"{gateway.url}/api/v1/skills/secret-recipe/download", headers=headers)
    assert r.status_code == 403
    # The REST list leaves it out too, before paging: totals count what may be loaded.
    listed = httpx.get(f"{gateway.url}/api/v1/skills", headers=headers).json()
    names = [s["name"] for s in listed["items"]]
    assert "secret-recipe" not in names and "open-notes" in names
    assert listed["total"] == len(names)
    everyone = httpx.get(f"{gateway.url}/api/v1/skills", headers=AUTH).json()
    assert "secret-recipe" in [s["name"] for s in everyone["items"]]
    async with connect(f"{gateway.url}/mcp", developer) as client:
        listed = await client.call_tool("LIST_SKILLS", {})
        text = listed.content[0].text  # type: ignore[union-attr]
        assert "secret-recipe" not in text and "open-notes" in text
        loaded = await client.call_tool("LOAD_SKILL", {"name": "secret-recipe"})
        assert loaded.is_error and "no-secrets" in loaded.content[0].text  # type: ignore[union-attr]
        assert (await client.call_tool("LOAD_SKILL", {"name": "open-notes"})).is_error is False
    applied(gateway, {})


async def test_sandbox_exec_rules(gateway: Server) -> None:
    need_bwrap()
    r = httpx.post(
        f"{gateway.url}/api/v1/sandboxes", json={"name": "box"}, headers=AUTH, timeout=120
    )
    assert r.status_code == 201, r.text
    sandbox = r.json()["id"]
    applied(
        gateway,
        {
            "rules": [
                {
                    "id": "no-network-tools",
                    "effect": "deny",
                    "actions": ["sandboxes/exec"],
                    "targets": ["box"],
                    "condition": 'args.command.contains("curl") || args.command.contains("wget")',
                }
            ]
        },
    )

    def run(command: str) -> httpx.Response:
        return httpx.post(
            f"{gateway.url}/api/v1/sandboxes/{sandbox}/exec",
            json={"command": command},
            headers=AUTH,
            timeout=120,
        )

    ok = run("echo hello")
    assert ok.status_code == 200 and ok.json()["stdout"].strip() == "hello", ok.text
    refused = run("curl http://example.com")
    assert refused.status_code == 403, refused.text
    assert (refused.json()["code"], refused.json()["rule"]) == ("policy_denied", "no-network-tools")
    applied(gateway, {})
    httpx.delete(f"{gateway.url}/api/v1/sandboxes/{sandbox}", headers=AUTH, timeout=60)
