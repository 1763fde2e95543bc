"""The decision point: a loaded policy document compiled into indexes, asked on every
call (the pipeline's authorize stage) and by every listing (what a caller may see).

Rules are indexed by action and by target pattern: a literal target is a dict entry;
a pattern is filed under its literal prefix (``essentials__calc`` for
``essentials__calc*``), so finding a target's rules costs one lookup per distinct
prefix length, not a scan of every rule, and the answer is cached per (action, target)
until the policy changes. With 10,000 rules a decision costs a few µs
(bench/policy_decision.py).

Precedence: deny overrides require_approval, which overrides allow; no matching rule
leaves the document's ``default``. A rule whose condition cannot be evaluated denies
(fail closed) and is reported. The baseline (roles ∩ key scopes, team visibility) is
checked before the engine is asked: rules only narrow it. Per-key tool globs (on the
key itself) narrow it too, as if they were rules named ``key:allow``/``key:deny``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

import orjson

from gateway.policy import globs
from gateway.policy.conditions import Condition, ConditionError, compiled
from gateway.policy.document import ACTIONS, PolicyDocument, Rule, Subjects

log = logging.getLogger("gateway.policy")
# Conditions that failed to evaluate (their rules denied), by rule id, in this process
# (/metrics: mcpgw_policy_condition_errors_total).
CONDITION_ERRORS: Counter[str] = Counter()

_CACHE_MAX = 65_536
# A tool's hints where it gives none: the MCP specification's defaults (a tool is
# assumed to write, destructively, to an open world, unless it says otherwise).
HINT_DEFAULTS = {
    "readOnlyHint": False,
    "destructiveHint": True,
    "idempotentHint": False,
    "openWorldHint": True,
}
_EFFECT_RANK = {"deny": 0, "require_approval": 1, "allow": 2}


class SubjectLike(Protocol):
    """What rules match on: a :class:`gateway.auth.principal.Principal` (or the subject
    an explain request describes)."""

    @property
    def user_id(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def key_id(self) -> str | None: ...
    @property
    def key_prefix(self) -> str | None: ...
    @property
    def team_ids(self) -> tuple[str, ...]: ...
    @property
    def team_names(self) -> tuple[str, ...]: ...
    @property
    def key_tags(self) -> tuple[str, ...]: ...
    @property
    def auth_method(self) -> str: ...
    @property
    def tools_allow(self) -> tuple[str, ...] | None: ...
    @property
    def tools_deny(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer: the effect, the rule that decided it (None: the default),
    every rule that matched (for explain) and conditions that failed."""

    effect: str
    rule: str | None = None
    matched: tuple[str, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()
    message: str | None = None  # the deciding rule's own words for the agent

    @property
    def allowed(self) -> bool:
        return self.effect == "allow"

    def reason(self, action: str, target: str) -> str:
        """Why, in words safe for the agent (names only the deciding rule)."""
        if self.effect == "allow":
            return "allowed"
        if self.rule is None:
            return f"{action} on {target!r} is not allowed by the policy (no rule allows it)"
        if self.errors and any(rule == self.rule for rule, _ in self.errors):
            return f"policy rule {self.rule!r} could not be evaluated, so the call is refused"
        verb = "needs approval under" if self.effect == "require_approval" else "is denied by"
        said = f": {self.message}" if self.message else ""
        return f"{action} on {target!r} {verb} policy rule {self.rule!r}{said}"


@dataclass(slots=True)
class Request:
    """What conditions may look at, beyond the subject and target."""

    arguments: Mapping[str, Any] | None = None
    client: tuple[str | None, str | None] | None = None
    server: str | None = None
    tool: str | None = None
    annotations: Callable[[], Mapping[str, Any] | None] | None = None
    now: datetime | None = None


class _ByArguments:
    """Rules whose conditions read nothing but some of the call's arguments: their
    decision is remembered by those arguments' values (CEL is deterministic), so a
    repeated call costs one lookup rather than an evaluation per condition."""

    __slots__ = ("fields", "memo", "rules")

    def __init__(self, rules: tuple[CompiledRule, ...], fields: tuple[str, ...]) -> None:
        self.rules, self.fields = rules, fields
        self.memo: dict[bytes, Decision] = {}

    @classmethod
    def of(
        cls, rules: tuple[CompiledRule, ...], conditions: list[Condition]
    ) -> _ByArguments | None:
        fields: set[str] = set()
        for condition in conditions:
            if condition.arg_fields is None or set(condition.variables) - {"args"}:
                return None
            fields.update(condition.arg_fields)
        return cls(rules, tuple(sorted(fields)))

    def decide(
        self,
        policy: CompiledPolicy,
        subject: SubjectLike,
        action: str,
        target: str,
        request: Request | Callable[[], Request] | None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Decision:
        args = arguments
        if args is None:
            given = (request() if callable(request) else request) or _NO_REQUEST
            args, request = given.arguments or {}, given
        try:
            key = orjson.dumps({f: args[f] for f in self.fields if f in args})
        except TypeError:
            return policy._evaluate(self.rules, subject, action, target, request)
        found = self.memo.get(key)
        if found is None:
            found = policy._evaluate(self.rules, subject, action, target, request)
            if len(self.memo) >= _CACHE_MAX:
                self.memo.clear()
            self.memo[key] = found
        return found


class SubjectMatch:
    """Whether a subject is one a rule's (or limit's) ``subjects`` names."""

    __slots__ = ("keys", "methods", "roles", "tags", "teams", "users")

    def __init__(self, subjects: Subjects) -> None:
        self.roles = frozenset(str(r) for r in subjects.roles) or None
        self.teams = frozenset(subjects.teams) or None
        self.users = frozenset(u.lower() for u in subjects.users) or None
        self.keys = frozenset(subjects.keys) or None
        self.tags = frozenset(subjects.key_tags) or None
        self.methods = frozenset(subjects.auth_methods) or None

    def __call__(self, p: SubjectLike) -> bool:
        if self.roles is not None and p.role not in self.roles:
            return False
        users = self.users
        if users is not None and p.user_id not in users and p.email.lower() not in users:
            return False
        keys = self.keys
        if keys is not None and p.key_id not in keys and p.key_prefix not in keys:
            return False
        teams = self.teams
        if teams is not None and teams.isdisjoint(p.team_ids) and teams.isdisjoint(p.team_names):
            return False
        if self.tags is not None and self.tags.isdisjoint(p.key_tags):
            return False
        methods = self.methods
        if methods is not None:
            method = p.auth_method
            return method in methods or method.partition(":")[0] in methods
        return True


@dataclass(slots=True)
class CompiledRule:
    index: int
    id: str
    effect: str
    subject: SubjectMatch | None
    excluded: globs.Matcher | None
    condition: Condition | None
    zone: tzinfo
    message: str | None


class Indexed(Protocol):
    """What a target index holds: a rule or a limit, in document order."""

    @property
    def index(self) -> int: ...
    @property
    def excluded(self) -> globs.Matcher | None: ...


T = TypeVar("T", bound=Indexed)


class TargetIndex(Generic[T]):
    """Items by target pattern: literal targets in a dict, patterns under their literal
    prefix (see the module docstring)."""

    def __init__(self) -> None:
        self.exact: dict[str, list[T]] = {}
        self.by_prefix: dict[str, list[tuple[globs.Matcher, T]]] = {}
        self.lengths: tuple[int, ...] = ()

    def add(self, pattern: str, item: T) -> None:
        if globs.is_literal(pattern):
            self.exact.setdefault(pattern, []).append(item)
        else:
            prefix = globs.literal_prefix(pattern)
            self.by_prefix.setdefault(prefix, []).append((globs.compile_glob(pattern), item))
            if len(prefix) not in self.lengths:
                self.lengths = tuple(sorted({*self.lengths, len(prefix)}))

    def find(self, target: str) -> tuple[T, ...]:
        """The items covering ``target``, in document order."""
        exact = self.exact.get(target)
        found: dict[int, T] = {i.index: i for i in exact} if exact else {}
        size, by_prefix = len(target), self.by_prefix
        for n in self.lengths:
            if n > size:
                break
            bucket = by_prefix.get(target[:n])
            if bucket:
                for match, item in bucket:
                    if item.index not in found and match(target):
                        found[item.index] = item
        if not found:
            return ()
        kept = []
        for i in sorted(found):
            excluded = found[i].excluded
            if excluded is None or not excluded(target):
                kept.append(found[i])
        return tuple(kept)


class CompiledPolicy:
    """One version of the policy, ready to decide."""

    def __init__(self, document: PolicyDocument, version: int = 0, label: str = "") -> None:
        self.document = document
        self.version = version
        # A team's document: its rule ids carry ``team:<name>/`` (see :meth:`within`).
        self.label = label
        self.default = Decision(document.default)
        # Team id → that team's compiled document, each deciding for its members only
        # (set by the policy service, replaced whole when a team document changes).
        self.teams: Mapping[str, CompiledPolicy] = {}
        self._indexes: dict[str, TargetIndex[CompiledRule]] = {a: TargetIndex() for a in ACTIONS}
        self._cache: dict[tuple[str, str], tuple[CompiledRule, ...]] = {}
        self._signatures: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        # Per caller object: (the caller, (action, target) → its decision or the rules
        # left to evaluate per call). Callers are the authenticator's cached objects.
        self._subjects: dict[int, tuple[SubjectLike, dict[tuple[str, str], Any]]] = {}
        self.rules = [self._compile(i, rule) for i, rule in enumerate(document.rules)]

    def _compile(self, i: int, rule: Rule) -> CompiledRule:
        made = CompiledRule(
            index=i,
            id=self.label + rule.id,
            effect=rule.effect,
            subject=None if rule.subjects.everyone else SubjectMatch(rule.subjects),
            excluded=globs.compile_any(tuple(rule.except_targets)) if rule.except_targets else None,
            condition=compiled(rule.condition) if rule.condition else None,
            zone=UTC if rule.timezone == "UTC" else ZoneInfo(rule.timezone),
            message=rule.message,
        )
        actions = ACTIONS if "*" in rule.actions else rule.actions
        for action in dict.fromkeys(actions):
            for pattern in dict.fromkeys(rule.targets):
                self._indexes[action].add(pattern, made)
        return made

    @property
    def empty(self) -> bool:
        """No rules and the default allows: every decision is the baseline's."""
        return not self.rules and self.default.allowed

    def candidates(self, action: str, target: str) -> tuple[CompiledRule, ...]:
        """The rules whose action and targets cover ``target`` (any subject)."""
        key = (action, target)
        found = self._cache.get(key)
        if found is None:
            index = self._indexes.get(action)
            found = index.find(target) if index is not None else ()
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = found
        return found

    def decide(
        self,
        subject: SubjectLike,
        action: str,
        target: str,
        request: Request | Callable[[], Request] | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Decision:
        """The decision for ``subject`` doing ``action`` on ``target``; ``request`` (or
        a function making it, called only if a condition is evaluated) for conditions,
        ``arguments`` the call's (when conditions read nothing else, no request is made)."""
        prepared = self._prepared(subject, action, target)
        if isinstance(prepared, Decision):
            decision = prepared
        elif isinstance(prepared, _ByArguments):
            decision = prepared.decide(self, subject, action, target, request, arguments)
        else:
            decision = self._evaluate(prepared, subject, action, target, request)
        if self.teams and decision.effect != "deny":
            return self.within(decision, subject, action, target, request, arguments)
        return decision

    def within(
        self,
        decision: Decision,
        subject: SubjectLike,
        action: str,
        target: str,
        request: Request | Callable[[], Request] | None = None,
        arguments: Mapping[str, Any] | None = None,
    ) -> Decision:
        """``decision`` (the platform's) narrowed by the documents of the caller's teams:
        each must allow too; the most restrictive effect wins, and every rule that
        matched is reported (team rules as ``team:<name>/<id>``)."""
        teams = self.teams
        for team_id in subject.team_ids:
            team = teams.get(team_id)
            if team is None:
                continue
            found = team.decide(subject, action, target, request, arguments)
            if found.rule is None and not found.allowed:  # the team document's default
                name = team.label.removesuffix("/")
                said = f"{name}'s policy allows only what its rules allow"
                found = Decision(found.effect, name, found.matched, found.errors, said)
            if not found.matched and found.allowed:
                continue
            if _EFFECT_RANK[found.effect] < _EFFECT_RANK[decision.effect]:
                deciding = found
            else:
                deciding = decision
            decision = Decision(
                deciding.effect,
                deciding.rule,
                decision.matched + found.matched,
                decision.errors + found.errors,
                deciding.message,
            )
        return decision

    def _prepared(
        self, subject: SubjectLike, action: str, target: str
    ) -> Decision | _ByArguments | tuple[CompiledRule, ...]:
        """What is left to decide per call for this caller and target: the decision
        itself when no rule that applies has a condition, else the rules that apply
        to the caller (worked out once per caller object and target)."""
        mine = self._subjects.get(id(subject))
        if mine is None or mine[0] is not subject:
            if len(self._subjects) >= 4096:
                self._subjects.clear()
            mine = self._subjects[id(subject)] = (subject, {})
        found = mine[1].get((action, target))
        if found is None:
            found = _key_decision(subject, action, target)
            if found is None:
                rules = tuple(
                    r
                    for r in self.candidates(action, target)
                    if r.subject is None or r.subject(subject)
                )
                conditions = [r.condition for r in rules if r.condition is not None]
                if not conditions:
                    found = self._evaluate(rules, subject, action, target)
                else:
                    found = _ByArguments.of(rules, conditions) or rules
            if len(mine[1]) >= 4096:
                mine[1].clear()
            mine[1][(action, target)] = found
        return found

    def _evaluate(
        self,
        rules: tuple[CompiledRule, ...],
        subject: SubjectLike,
        action: str,
        target: str,
        request: Request | Callable[[], Request] | None = None,
    ) -> Decision:
        """Precedence over ``rules`` (all of which apply to ``subject``), conditions
        evaluated."""
        deciding: CompiledRule | None = None
        effect = ""
        matched: list[str] = []
        errors: list[tuple[str, str]] = []
        activation: dict[str, Any] | None = None
        for rule in rules:
            verdict = rule.effect
            condition = rule.condition
            if condition is not None:
                if activation is None:
                    activation = _Activation(subject, action, target, request)
                if "time" in condition.variables:
                    _timed(activation, rule.zone)
                try:
                    if not condition.holds(activation):
                        continue
                except ConditionError as exc:
                    # Fail closed: the rule denies, whatever its effect, and is reported.
                    errors.append((rule.id, str(exc)))
                    CONDITION_ERRORS[rule.id] += 1
                    log.warning("policy rule %r could not be evaluated: %s", rule.id, exc)
                    verdict = "deny"
            matched.append(rule.id)
            if deciding is None or _EFFECT_RANK[verdict] < _EFFECT_RANK[effect]:
                deciding, effect = rule, verdict
        if deciding is None:
            return self.default
        return Decision(effect, deciding.id, tuple(matched), tuple(errors), deciding.message)

    def listable(self, subject: SubjectLike, action: str, target: str) -> bool:
        """Whether a listing shows ``target`` to ``subject``: everything but what a rule
        (without a condition) denies it, for ``action`` or for listing. Conditions
        depend on the call, so a conditional rule neither hides nor shows. The
        documents of the caller's teams must each show it too."""
        if _key_decision(subject, action, target) is not None:
            return False
        teams = self.teams
        if teams:
            for team_id in subject.team_ids:
                team = teams.get(team_id)
                if team is not None and not team.listable(subject, action, target):
                    return False
        allowed = self.default.allowed
        for act in (action, "list"):
            for rule in self.candidates(act, target):
                if rule.subject is not None and not rule.subject(subject):
                    continue
                if rule.effect == "deny":
                    if rule.condition is None:
                        return False
                elif act == action:
                    allowed = True  # an allow (or approval) that may apply
        return allowed

    def signature(self, subject: SubjectLike) -> tuple[Any, ...]:
        """What listings depend on for ``subject``: the rules whose subjects match it and
        its key's globs. Subjects with one signature see the same lists."""
        key = (
            subject.user_id,
            subject.key_id,
            subject.role,
            subject.team_ids,
            subject.auth_method,
            subject.key_tags,
            subject.tools_allow,
            subject.tools_deny,
        )
        found = self._signatures.get(key)
        if found is None:
            matching = tuple(r.index for r in self.rules if r.subject is None or r.subject(subject))
            found = (self.version, matching, subject.tools_allow, subject.tools_deny)
            if len(self._signatures) >= _CACHE_MAX:
                self._signatures.clear()
            self._signatures[key] = found
        teams = self.teams
        if teams:  # each team document the caller is under (its version changes with it)
            mine = tuple(teams[t].signature(subject) for t in subject.team_ids if t in teams)
            if mine:
                return (*found, mine)
        return found


@lru_cache(maxsize=4096)
def _key_globs(patterns: tuple[str, ...]) -> globs.Matcher:
    return globs.compile_any(patterns)


def _key_decision(subject: SubjectLike, action: str, target: str) -> Decision | None:
    """The key's own tool globs: a deny when they exclude ``target`` (tool calls only)."""
    if action != "tools/call":
        return None
    deny = subject.tools_deny
    if deny and _key_globs(deny)(target):
        return Decision("deny", "key:deny", ("key:deny",), (), "this key may not call it")
    allow = subject.tools_allow
    if allow is not None and not _key_globs(allow)(target):
        only = "this key may call only " + ", ".join(allow)
        return Decision("deny", "key:allow", ("key:allow",), (), only)
    return None


class _Activation(dict[str, Any]):
    """A request's variables for conditions, each made when a condition first reads it
    (the tool's annotations, say, are looked up only if a condition names them)."""

    def __init__(
        self,
        subject: SubjectLike,
        action: str,
        target: str,
        request: Request | Callable[[], Request] | None,
    ) -> None:
        super().__init__()
        self.subject, self.action, self.target, self.request = subject, action, target, request

    def __missing__(self, name: str) -> Any:
        value = self[name] = getattr(self, f"_{name}")()
        return value

    def _given(self) -> Request:
        request = self.request
        if callable(request):
            request = self.request = request()
        return request or _NO_REQUEST

    def _args(self) -> Any:
        return self._given().arguments or {}

    def _subject(self) -> dict[str, Any]:
        s = self.subject
        return {
            "role": s.role,
            "user": s.user_id,
            "email": s.email,
            "teams": list(s.team_names) + list(s.team_ids),
            "key": s.key_prefix or "",
            "key_tags": list(s.key_tags),
            "auth_method": s.auth_method,
        }

    def _action(self) -> str:
        return self.action

    def _target(self) -> str:
        return self.target

    def _server(self) -> str:
        return self._given().server or ""

    def _tool(self) -> str:
        return self._given().tool or ""

    def _annotations(self) -> dict[str, Any]:
        lookup = self._given().annotations
        return {**HINT_DEFAULTS, **((lookup() if lookup is not None else None) or {})}

    def _client(self) -> dict[str, str]:
        name, version = self._given().client or (None, None)
        return {"name": name or "", "version": version or ""}

    def _now(self) -> datetime:
        return self._given().now or datetime.now(UTC)


_NO_REQUEST = Request()


def _timed(activation: dict[str, Any], zone: tzinfo) -> dict[str, Any]:
    """The activation with ``time`` in the rule's time zone."""
    local = activation["now"].astimezone(zone)
    activation["time"] = {
        "hour": local.hour,
        "minute": local.minute,
        "weekday": local.isoweekday(),
        "date": local.date().isoformat(),
    }
    return activation
