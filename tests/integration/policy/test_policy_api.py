"""`/api/v1/policies`: the YAML contract applied and exported unchanged, plans and dry
runs, bad documents refused whole (422 naming rule and field), explain, permissions."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.mcp.test_endpoint import _new_key
from tests.integration.policy.conftest import AUTH, applied, apply
from tests.support import Server
from tests.support_policy import CONTRACT


def export(server: Server) -> str:
    r = httpx.get(f"{server.url}/api/v1/policies", params={"format": "yaml"}, headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    return r.text


def version(server: Server) -> int:
    return int(httpx.get(f"{server.url}/api/v1/policies", headers=AUTH).json()["version"])


def test_the_contract_applies_and_round_trips(gateway: Server) -> None:
    applied(gateway, {})  # start from nothing
    first = applied(gateway, CONTRACT)
    assert first["changed"] is True and first["dry_run"] is False
    assert "+ rule no-calculator-for-developers" in first["lines"]
    assert "+ limit echo-per-key" in first["lines"]
    exported = export(gateway)
    again = applied(gateway, exported)  # export → apply → export is identical
    assert (again["changed"], again["version"]) == (False, first["version"])
    assert export(gateway) == exported
    # JSON works too, and the JSON view carries the version and who applied it.
    shown = httpx.get(f"{gateway.url}/api/v1/policies", headers=AUTH).json()
    assert shown["version"] == first["version"] and shown["created_by"]
    r = httpx.put(
        f"{gateway.url}/api/v1/policies", json=shown["document"], headers=AUTH, timeout=30
    )
    assert r.status_code == 200 and r.json()["changed"] is False
    versions = httpx.get(f"{gateway.url}/api/v1/policies/versions", headers=AUTH).json()
    assert versions[0]["version"] == first["version"]
    assert "+ rule no-calculator-for-developers" in versions[0]["summary"]


def test_a_dry_run_shows_the_plan_and_stores_nothing(gateway: Server) -> None:
    applied(gateway, CONTRACT)
    before, text = version(gateway), export(gateway)
    changed = CONTRACT.replace("essentials__calculator_*", "essentials__calc*")
    r = apply(gateway, changed, dry_run="true")
    assert r.status_code == 200, r.text
    plan = r.json()
    assert (plan["dry_run"], plan["changed"], plan["version"]) == (True, True, before)
    assert plan["lines"] == ["~ rule no-calculator-for-developers (targets)"]
    assert (version(gateway), export(gateway)) == (before, text)


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        (("    burst: 5", "    burst: 5\n    colour: red"), "limits[0].colour", "Extra inputs"),
        (
            ('"essentials__calculator_*"', '"essentials__[calc"'),
            "rules[0].targets[0]",
            "never closed",
        ),
        (
            ('    targets: ["essentials', "    condition: 'args.x +'\n    targets: [\"essentials"),
            "rules[0].condition",
            "CEL",
        ),
        (("rate: 5/minute", "rate: -5/minute"), "limits[0].rate", "at least one call"),
    ],
)
def test_bad_input_is_refused_whole_naming_rule_and_field(
    gateway: Server, edit: tuple[str, str], field: str, words: str
) -> None:
    applied(gateway, CONTRACT)
    before, text = version(gateway), export(gateway)
    assert edit[0] in CONTRACT
    r = apply(gateway, CONTRACT.replace(*edit))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "validation_error"
    error = body["errors"][0]
    assert error["field"] == field and words in error["message"], error
    assert error["rule"] in ("no-calculator-for-developers", "echo-per-key")
    assert error["rule"] in body["message"] and field in body["message"]
    assert (version(gateway), export(gateway)) == (before, text)  # nothing stored


def test_malformed_bodies(gateway: Server) -> None:
    r = apply(gateway, "rules: [unclosed\n")
    assert (r.status_code, r.json()["code"]) == (422, "invalid_yaml")
    r = httpx.put(
        f"{gateway.url}/api/v1/policies",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert (r.status_code, r.json()["code"]) == (400, "invalid_json")
    r = apply(gateway, "- a list\n")
    assert r.status_code == 422 and "mapping" in r.json()["message"]


def evaluate(server: Server, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else AUTH
    return httpx.post(f"{server.url}/api/v1/policies/evaluate", json=body, headers=headers)


def test_explain_names_the_deciding_rule_and_every_match(gateway: Server) -> None:
    applied(
        gateway,
        CONTRACT.replace(
            "limits:",
            "  - {id: calc-ok, effect: allow, actions: [tools/call], targets: ['essentials__*']}\n"
            "limits:",
        ),
    )
    target = "essentials__calculator_evaluate"
    r = evaluate(
        gateway, {"subject": {"role": "developer"}, "action": "tools/call", "target": target}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["decision"], out["rule"]) == ("deny", "no-calculator-for-developers")
    assert out["matched"] == ["no-calculator-for-developers", "calc-ok"]
    assert out["baseline"] is True and "no-calculator-for-developers" in out["reason"]
    r = evaluate(
        gateway, {"subject": {"role": "operator"}, "action": "tools/call", "target": target}
    )
    assert (r.json()["decision"], r.json()["rule"]) == ("allow", "calc-ok")
    # A viewer may not call tools at all: the baseline says so before any rule.
    r = evaluate(gateway, {"subject": {"role": "viewer"}, "action": "tools/call", "target": target})
    assert (r.json()["decision"], r.json()["baseline"], r.json()["rule"]) == ("deny", False, None)
    # A stored user is looked up (role, teams); an unknown one is a 422 naming the field.
    email = httpx.get(f"{gateway.url}/api/v1/me", headers=AUTH).json()["user"]["email"]
    r = evaluate(gateway, {"subject": {"user": email}, "action": "tools/call", "target": target})
    assert (r.json()["decision"], r.json()["rule"]) == ("allow", "calc-ok")  # the admin
    r = evaluate(
        gateway, {"subject": {"user": "nobody@x"}, "action": "tools/call", "target": target}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "subject.user"
    r = evaluate(gateway, {"subject": {}, "action": "tools/call", "target": target})
    assert r.status_code == 422


def test_only_admins_change_policies(gateway: Server) -> None:
    operator, developer = _new_key(gateway, "operator"), _new_key(gateway, "developer")
    for key, can_read in ((operator, True), (developer, False)):
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/yaml"}
        r = httpx.put(f"{gateway.url}/api/v1/policies", content=b"rules: []\n", headers=headers)
        assert r.status_code == 403, r.text
        r = httpx.get(f"{gateway.url}/api/v1/policies", headers=headers)
        assert r.status_code == (200 if can_read else 403)
        body = {"subject": {"role": "developer"}, "action": "list", "target": "a__b"}
        assert evaluate(gateway, body, key).status_code == (200 if can_read else 403)
