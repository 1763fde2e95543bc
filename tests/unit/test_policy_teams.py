"""Team documents in the engine: they decide for their members only, only narrow the
platform's decision, carry ``team:<name>/`` rule ids, and change listings' signature."""

from __future__ import annotations

from gateway.policy.document import parse
from gateway.policy.engine import CompiledPolicy
from gateway.policy.teams import label, quota_limit
from tests.unit.test_policy_engine import compiled, rule, who


def team_policy(name: str, *rules: dict[str, object], default: str = "allow") -> CompiledPolicy:
    return CompiledPolicy(parse({"rules": list(rules), "default": default}), 1, label(name))


def test_a_team_rule_decides_for_members_only_and_names_its_team() -> None:
    platform = compiled()
    platform.teams = {"t1": team_policy("data", rule("no-echo", targets=["fix__echo"]))}
    member, outsider = who(team_ids=("t1",)), who(team_ids=("t2",))
    decision = platform.decide(member, "tools/call", "fix__echo")
    assert (decision.effect, decision.rule) == ("deny", "team:data/no-echo")
    assert platform.decide(outsider, "tools/call", "fix__echo").allowed
    assert platform.decide(member, "tools/call", "fix__other").allowed
    assert not platform.listable(member, "tools/call", "fix__echo")
    assert platform.listable(outsider, "tools/call", "fix__echo")


def test_a_team_allow_never_widens_and_every_team_must_allow() -> None:
    platform = compiled(rule("platform-no", targets=["fix__echo"]))
    platform.teams = {
        "t1": team_policy("a", rule("yes", "allow")),
        "t2": team_policy("b", rule("only-echo", "allow", targets=["fix__echo"]), default="deny"),
    }
    both = who(team_ids=("t1", "t2"))
    assert platform.decide(both, "tools/call", "fix__echo").rule == "platform-no"
    decision = platform.decide(both, "tools/call", "fix__other")
    assert (decision.effect, decision.rule) == ("deny", "team:b")
    assert "team:a/yes" in decision.matched


def test_a_team_document_changes_the_listing_signature() -> None:
    platform = compiled()
    member = who(team_ids=("t1",))
    before = platform.signature(member)
    platform.teams = {"t1": team_policy("data", rule("no-echo", targets=["fix__echo"]))}
    assert platform.signature(member) != before
    assert platform.signature(who(team_ids=("t2",))) == platform.signature(who(team_ids=("t2",)))


def test_calls_per_day_is_a_team_quota_limit() -> None:
    limit = quota_limit("t1", "data", 50)
    assert (limit.id, limit.scope, limit.quota) == ("team:data/calls_per_day", ["team"], "50/day")
    assert limit.subjects.teams == ["t1"]
