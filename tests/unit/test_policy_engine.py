"""The policy engine (gateway/policy/engine.py): which rule decides, in which order,
for whom, and what happens when a condition cannot be evaluated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.auth.principal import Principal
from gateway.errors import InvalidInput
from gateway.policy.document import parse, parse_text, to_yaml
from gateway.policy.engine import CompiledPolicy, Request
from gateway.policy.plan import plan
from tests.support_policy import CONTRACT


def who(role: str = "developer", **extra: Any) -> Principal:
    fields: dict[str, Any] = {
        "user_id": "u-1",
        "email": "Dev@Corp.example",
        "name": "dev",
        "role": role,
        "key_id": "k-1",
        "scopes": ("*",),
        "key_prefix": "mcpgw_ab12",
    }
    return Principal(**{**fields, **extra})


def compiled(*rules: dict[str, Any], default: str = "allow") -> CompiledPolicy:
    return CompiledPolicy(parse({"default": default, "rules": list(rules)}), 1)


def rule(id: str, effect: str = "deny", targets: Any = ("*",), **extra: Any) -> dict[str, Any]:
    return {
        "id": id,
        "effect": effect,
        "actions": ["tools/call"],
        "targets": list(targets),
        **extra,
    }


def test_the_contract_document_decides_as_written() -> None:
    policy = CompiledPolicy(parse_text(CONTRACT), 1)
    denied = policy.decide(who(), "tools/call", "essentials__calculator_add")
    assert (denied.effect, denied.rule) == ("deny", "no-calculator-for-developers")
    assert "no-calculator-for-developers" in denied.reason("tools/call", "x")
    assert policy.decide(who("operator"), "tools/call", "essentials__calculator_add").allowed
    assert policy.decide(who(), "tools/call", "essentials__echo").allowed
    assert policy.decide(who(), "resources/read", "essentials__calculator_add").allowed


def test_deny_overrides_approval_overrides_allow_whatever_the_order() -> None:
    policy = compiled(
        rule("a", "allow", ["srv__*"]),
        rule("b", "require_approval", ["srv__danger*"]),
        rule("c", "deny", ["srv__danger_drop"]),
    )
    assert policy.decide(who(), "tools/call", "srv__danger_drop").rule == "c"
    approval = policy.decide(who(), "tools/call", "srv__danger_x")
    assert (approval.effect, approval.rule, approval.matched) == (
        "require_approval",
        "b",
        ("a", "b"),
    )
    assert policy.decide(who(), "tools/call", "srv__read").rule == "a"
    assert policy.decide(who(), "tools/call", "other__x") == policy.default


def test_default_deny_needs_an_allow_and_except_targets_carve_out() -> None:
    policy = compiled(
        rule("team-tools", "allow", ["git__*"], except_targets=["git__push*"]),
        default="deny",
    )
    assert policy.decide(who(), "tools/call", "git__log").allowed
    pushed = policy.decide(who(), "tools/call", "git__push_force")
    assert (pushed.effect, pushed.rule) == ("deny", None)
    assert "no rule allows it" in pushed.reason("tools/call", "git__push_force")


@pytest.mark.parametrize(
    ("subjects", "matches"),
    [
        ({"roles": ["developer"]}, True),
        ({"roles": ["viewer", "operator"]}, False),
        ({"users": ["dev@corp.example"]}, True),  # emails compare without case
        ({"users": ["u-1"]}, True),
        ({"keys": ["mcpgw_ab12"]}, True),
        ({"keys": ["k-2"]}, False),
        ({"teams": ["data"]}, True),  # by name
        ({"teams": ["t-9"]}, True),  # by id
        ({"teams": ["ops"]}, False),
        ({"key_tags": ["ci"]}, True),
        ({"auth_methods": ["oidc"]}, True),  # oidc covers oidc:<provider>
        ({"auth_methods": ["oidc:google"]}, False),
        ({"roles": ["developer"], "teams": ["ops"]}, False),  # every field must match
    ],
)
def test_subjects(subjects: dict[str, Any], matches: bool) -> None:
    policy = compiled(rule("r", subjects=subjects))
    subject = who(
        team_ids=("t-9",), team_names=("data",), key_tags=("ci",), auth_method="oidc:github"
    )
    assert (policy.decide(subject, "tools/call", "x__y").rule == "r") is matches


def test_conditions_see_arguments_annotations_client_and_local_time() -> None:
    policy = compiled(
        rule("tmp-only", condition='!(has(args.path) && args.path.startsWith("/tmp/"))'),
        rule(
            "no-destructive", condition="annotations.destructiveHint && !annotations.readOnlyHint"
        ),
        rule("office-hours", condition="time.hour < 9 || time.hour >= 18", timezone="Europe/Paris"),
        rule("old-client", condition='client.name == "ancient"'),
    )
    late = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)  # 19:30 in Paris
    noon = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)

    def decide(args: dict[str, Any], now: datetime = noon, **extra: Any) -> str | None:
        hints = extra.pop("hints", {"readOnlyHint": True})
        request = Request(arguments=args, now=now, annotations=lambda: hints, **extra)
        return policy.decide(who(), "tools/call", "fs__read", request).rule

    assert decide({"path": "/etc/passwd"}) == "tmp-only"
    assert decide({"path": "/tmp/a"}) is None
    assert decide({"path": "/tmp/a"}, late) == "office-hours"
    # A tool without hints is destructive (the specification's default).
    assert decide({"path": "/tmp/a"}, hints={}) == "no-destructive"
    assert decide({"path": "/tmp/a"}, hints={"destructiveHint": False}) is None
    assert decide({"path": "/tmp/a"}, client=("ancient", "1")) == "old-client"


def test_a_condition_that_fails_denies_and_is_reported() -> None:
    policy = compiled(
        rule("needs-n", "allow", ["calc__*"], condition="args.n > 1"),
        rule("not-bool", "allow", ["text__*"], condition="args.n"),
    )
    failed = policy.decide(who(), "tools/call", "calc__add", Request(arguments={}))
    assert (failed.effect, failed.rule) == ("deny", "needs-n")
    assert failed.errors and failed.errors[0][0] == "needs-n"
    assert "could not be evaluated" in failed.reason("tools/call", "calc__add")
    assert policy.decide(who(), "tools/call", "calc__add", Request(arguments={"n": 2})).allowed
    assert not policy.decide(who(), "tools/call", "text__x", Request(arguments={"n": 3})).allowed


def test_key_globs_narrow_like_rules() -> None:
    policy = compiled()
    limited = who(tools_allow=("git__*", "fs__read"), tools_deny=("git__push*",))
    assert policy.decide(limited, "tools/call", "git__log").allowed
    assert policy.decide(limited, "tools/call", "git__push").rule == "key:deny"
    assert policy.decide(limited, "tools/call", "db__drop").rule == "key:allow"
    assert not policy.listable(limited, "tools/call", "db__drop")
    assert policy.decide(limited, "resources/read", "db__x").allowed  # tools only


def test_listing_hides_only_what_is_denied_without_condition() -> None:
    policy = compiled(
        rule("hard", targets=["a__*"]),
        rule("soft", targets=["b__*"], condition="args.x == 1"),
        {"id": "unlisted", "effect": "deny", "actions": ["list"], "targets": ["c__*"]},
    )
    assert not policy.listable(who(), "tools/call", "a__x")
    assert policy.listable(who(), "tools/call", "b__x")
    assert not policy.listable(who(), "tools/call", "c__x")
    assert policy.decide(who(), "tools/call", "c__x").allowed  # hidden, not forbidden
    deny_all = compiled(rule("maybe", "allow", ["b__*"], condition="args.x == 1"), default="deny")
    assert deny_all.listable(who(), "tools/call", "b__x")  # may be allowed: shown
    assert not deny_all.listable(who(), "tools/call", "a__x")


def test_signatures_group_subjects_the_rules_see_alike() -> None:
    policy = compiled(rule("devs", subjects={"roles": ["developer"]}))
    assert policy.signature(who(user_id="a")) == policy.signature(who(user_id="b"))
    assert policy.signature(who()) != policy.signature(who("operator"))
    assert policy.signature(who()) != policy.signature(who(tools_deny=("x",)))


def test_ten_thousand_rules_are_found_by_index() -> None:
    rules = [rule(f"r{i}", targets=[f"srv{i}__tool_*"]) for i in range(10_000)]
    policy = compiled(*rules, rule("last", "allow", ["srv9999__*"]))
    assert policy.decide(who(), "tools/call", "srv4242__tool_x").rule == "r4242"
    assert policy.decide(who(), "tools/call", "srv9999__other").rule == "last"
    assert policy.candidates("tools/call", "srv4242__tool_x")[0].id == "r4242"
    assert len(policy.candidates("tools/call", "srv4242__tool_x")) == 1


@pytest.mark.parametrize(
    ("document", "field", "words"),
    [
        ({"rules": [rule("r", bogus=1)]}, "rules[0].bogus", "Extra inputs"),
        ({"rules": [rule("r", targets=["a[b"])]}, "rules[0].targets[0]", "never closed"),
        ({"rules": [rule("r", targets=["a]"])]}, "rules[0].targets[0]", "closes nothing"),
        ({"rules": [rule("r", targets=[""])]}, "rules[0].targets[0]", "empty"),
        ({"rules": [rule("r", condition="args.x +")]}, "rules[0].condition", "CEL"),
        ({"rules": [rule("r", condition="secret == 1")]}, "rules[0].condition", "unknown variable"),
        ({"rules": [rule("r", timezone="Mars/Base")]}, "rules[0].timezone", "time zone"),
        ({"rules": [rule("r", effect="maybe")]}, "rules[0].effect", "Input should be"),
        ({"rules": [rule("r"), rule("r")]}, "", "used twice"),
        ({"limits": [{"id": "l", "rate": "-5/minute"}]}, "limits[0].rate", "at least one"),
        ({"limits": [{"id": "l", "rate": "5/fortnight"}]}, "limits[0].rate", "N/minute"),
        ({"limits": [{"id": "l", "rate": "5/minute", "burst": 0}]}, "limits[0].burst", "greater"),
        ({"limits": [{"id": "l", "quota": "5/week"}]}, "limits[0].quota", "N/day"),
        ({"limits": [{"id": "l"}]}, "limits[0]", "exactly one"),
        (
            {"limits": [{"id": "l", "rate": "1/second", "quota": "1/day"}]},
            "limits[0]",
            "exactly one",
        ),
        (
            {"limits": [{"id": "l", "scope": ["key", "key"], "rate": "1/second"}]},
            "limits[0].scope",
            "once",
        ),
    ],
)
def test_bad_documents_name_the_rule_and_field(document: Any, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(document)
    error = caught.value.details["errors"][0]
    assert error["field"] == field and words in error["message"], error
    if field.startswith(("rules[0]", "limits[0]")):
        assert error["rule"] in ("r", "l")
        assert repr(error["rule"]) in caught.value.message


def test_yaml_round_trips_and_plans_name_what_changes() -> None:
    document = parse_text(CONTRACT)
    text = to_yaml(document)
    assert to_yaml(parse_text(text)) == text
    changed = parse_text(
        CONTRACT.replace("essentials__calculator_*", "essentials__calc*").replace(
            "limits:", "  - {id: extra, effect: allow, actions: [list]}\nlimits:"
        )
    )
    steps = plan(document.canonical(), changed.canonical())
    assert steps.lines() == ["+ rule extra", "~ rule no-calculator-for-developers (targets)"]
    assert plan(document.canonical(), document.canonical()).empty
    with pytest.raises(InvalidInput, match="not valid YAML at line 3"):
        parse_text("rules:\n  - id: [unclosed\n")
