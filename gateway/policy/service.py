"""Policy use cases: the document in force (compiled, in memory), applying a new
version (with a plan and a dry run), explaining a decision, and following versions
applied through other replicas.

Every replica holds the compiled policy in memory: the call path never reads the
database. A version applied here is in force here at once; other replicas pick it up
within ``refresh`` seconds (they compare the newest version number, one indexed read).
Team documents and quotas (gateway/policy/teams.py, quotas.py) are followed the same
way, by the tenancy revision read in the same query.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from datetime import UTC
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from gateway.audit.service import AuditLog
from gateway.auth.models import ApiKey, Team, TeamMember, User
from gateway.auth.principal import Principal
from gateway.db import Database
from gateway.errors import Conflict, Forbidden, InvalidInput
from gateway.policy.document import PolicyDocument, parse
from gateway.policy.engine import CompiledPolicy, Decision, Request
from gateway.policy.limits import Limiter
from gateway.policy.models import PolicyVersion, TenancyRevision
from gateway.policy.plan import plan
from gateway.policy.quotas import TeamQuotas
from gateway.policy.schemas import (
    ApplyOut,
    EvaluateIn,
    EvaluateOut,
    FailedCondition,
    LimitUsage,
    PolicyOut,
    SubjectIn,
    UsageOut,
    VersionOut,
)
from gateway.policy.teams import TeamPolicies, TeamState, load_state

log = logging.getLogger("gateway.policy")

# The permission the baseline asks for each action (before any rule is consulted).
BASELINE = {
    "tools/call": "tools:execute",
    "resources/read": "tools:read",
    "prompts/get": "tools:read",
    "list": "tools:read",
    "skills/load": "skills:read",
    "sandboxes/exec": "sandboxes:execute",
}


class PolicyDenied(Forbidden):
    """A policy rule (or a key's own tool globs) refused the action; ``rule`` names it."""

    code = "policy_denied"


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


class PolicyService:
    """The policy in force and the ways to change and question it."""

    def __init__(self, db: Database, audit: AuditLog | None = None) -> None:
        self.db = db
        self.audit = audit
        self.current = CompiledPolicy(PolicyDocument(), 0)
        self.team_state = TeamState()
        self._teams_loaded = False
        self.teams = TeamPolicies(db, audit, self.load_teams)
        self.quotas = TeamQuotas(db, audit, self.load_teams)
        # Called with :attr:`counted` whenever the platform's or a team's rules, limits
        # or quotas change (the limit stage reloads).
        self.listeners: list[Callable[[CompiledPolicy], None]] = []

    # --- the policy in force -----------------------------------------------------------
    async def load(self) -> None:
        """Bring the newest stored version into force (and the teams' on first load)."""
        if not self._teams_loaded:
            await self.load_teams()
        async with self.db.session() as session:
            row = await session.scalar(
                select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(1)
            )
        if row is not None and row.version != self.current.version:
            self._install(_stored(row.document), row.version)

    async def load_teams(self) -> None:
        """Bring every team's newest document and quotas into force."""
        async with self.db.session() as session:
            state = await load_state(session)
        self.team_state, self._teams_loaded = state, True
        self.current.teams = state.policies
        self._notify()

    def _install(self, document: PolicyDocument, version: int) -> None:
        policy = CompiledPolicy(document, version)
        policy.teams = self.team_state.policies
        self.current = policy
        self._notify()

    def _notify(self) -> None:
        counted = self.counted
        for listener in self.listeners:
            listener(counted)

    @property
    def counted(self) -> CompiledPolicy:
        """The policy whose limits the limit stage counts: the platform's limits and
        costs, each team document's limits and each team's calls_per_day quota."""
        policy = self.current
        extra = self.team_state.limits
        if not extra:
            return policy
        document = policy.document.model_copy(
            update={"rules": [], "limits": [*policy.document.limits, *extra]}
        )
        return CompiledPolicy(document, policy.version)

    async def follow(self) -> bool:
        """Bring a version (or team change) applied through another replica into force;
        True if one was. One query: the newest version and the tenancy revision."""
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(
                        select(func.max(PolicyVersion.version)).scalar_subquery(),
                        select(TenancyRevision.revision)
                        .where(TenancyRevision.id == 1)
                        .scalar_subquery(),
                    )
                )
            ).one()
        newest, revision = row[0] or 0, row[1] or 0
        followed = False
        if revision != self.team_state.revision:
            await self.load_teams()
            log.info("team policies at revision %s are in force (changed elsewhere)", revision)
            followed = True
        if newest != self.current.version:
            await self.load()
            log.info("policy version %s is in force (applied elsewhere)", self.current.version)
            followed = True
        return followed

    async def run_follower(self, interval: float = 1.0) -> None:
        """Follow versions applied through other replicas, every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.follow()
            except Exception:
                log.warning("could not read the policy version", exc_info=True)

    def policy_for(self, principal: Principal) -> CompiledPolicy | None:
        """The policy in force when it may refuse ``principal`` something (rules, or the
        key's own tool globs); None: only the baseline applies."""
        policy = self.current
        if policy.empty and principal.tools_allow is None and not principal.tools_deny:
            teams = policy.teams
            if not teams or teams.keys().isdisjoint(principal.team_ids):
                return None
        return policy

    def check(
        self,
        principal: Principal,
        action: str,
        target: str,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """Raise :class:`PolicyDenied` unless the policy allows ``action`` on ``target``
        (tool calls: the pipeline's authorize stage asks the engine itself)."""
        policy = self.policy_for(principal)
        if policy is None:
            return
        server, _, name = target.partition("__")
        request = Request(arguments=arguments, server=server if name else None, tool=name or None)
        decision = policy.decide(principal, action, target, request)
        if not decision.allowed:
            raise PolicyDenied(decision.reason(action, target), rule=decision.rule)

    # --- reading and changing it -------------------------------------------------------
    async def show(self, principal: Principal) -> PolicyOut:
        principal.require("policies:read")
        async with self.db.session() as session:
            row = await session.get(PolicyVersion, self.current.version)
        return PolicyOut(
            version=self.current.version,
            document=self.current.document.canonical(),
            created_at=row.created_at if row else None,
            created_by=row.created_by if row else None,
        )

    def document(self, principal: Principal) -> PolicyDocument:
        principal.require("policies:read")
        return self.current.document

    async def versions(self, principal: Principal, limit: int = 50) -> list[VersionOut]:
        principal.require("policies:read")
        async with self.db.session() as session:
            rows = await session.scalars(
                select(PolicyVersion).order_by(PolicyVersion.version.desc()).limit(limit)
            )
            return [
                VersionOut(
                    version=r.version,
                    created_at=r.created_at,
                    created_by=r.created_by,
                    summary=r.summary,
                )
                for r in rows
            ]

    async def apply(self, principal: Principal, data: Any, *, dry_run: bool = False) -> ApplyOut:
        """Make ``data`` (a parsed YAML/JSON document) the policy: validated whole (an
        error names the rule and field; nothing is stored), compared with the one in
        force (the plan), stored as a new version unless ``dry_run`` or unchanged."""
        principal.require("policies:write")
        document = parse(data)
        await self.load()  # plan against the newest version, wherever it was applied
        old = self.current.document.canonical()
        new = document.canonical()
        changes = plan(old, new)
        changed = _digest(old) != _digest(new)
        out = ApplyOut(
            version=self.current.version,
            changed=changed,
            dry_run=dry_run,
            plan=changes,
            lines=changes.lines(),
        )
        if dry_run or not changed:
            return out
        version = self.current.version + 1
        summary = "; ".join(out.lines)[:2000]
        try:
            async with self.db.session() as session:
                session.add(
                    PolicyVersion(
                        version=version,
                        document=new,
                        digest=_digest(new),
                        summary=summary,
                        created_by=principal.email,
                    )
                )
        except IntegrityError:
            raise Conflict(
                f"policy version {version} was applied meanwhile by someone else; "
                "look at the new version and apply again"
            ) from None
        self._install(document, version)
        if self.audit is not None:
            self.audit.change(
                "policy.apply", principal, str(version), old={"version": version - 1}, new=summary
            )
        out.version = version
        return out

    # --- explaining a decision ---------------------------------------------------------
    async def evaluate(self, principal: Principal, body: EvaluateIn) -> EvaluateOut:
        """The decision the policy in force gives, the rule that gave it and every rule
        that matched (explain)."""
        principal.require("policies:read")
        subject = await self._subject(body.subject)
        policy = self.current
        baseline = subject.can(BASELINE[body.action])
        if not baseline:
            return EvaluateOut(
                decision="deny",
                rule=None,
                matched=[],
                reason=(
                    f"role {subject.role!r} does not allow {body.action} "
                    f"(needs '{BASELINE[body.action]}'): no rule can widen that"
                ),
                baseline=False,
                version=policy.version,
            )
        server, _, tool = body.target.partition("__")
        annotations = body.annotations
        request = Request(
            arguments=body.arguments,
            server=server if tool else None,
            tool=tool or None,
            annotations=(lambda: annotations) if annotations is not None else None,
            now=body.time.astimezone(UTC) if body.time is not None else None,
        )
        action = body.action
        decision: Decision = policy.decide(subject, action, body.target, request)
        if action == "list" and decision.allowed:
            listed = policy.listable(subject, "tools/call", body.target)
            decision = decision if listed else Decision("deny", None, decision.matched)
        return EvaluateOut(
            decision=decision.effect,
            rule=decision.rule,
            matched=list(decision.matched),
            errors=[FailedCondition(rule=r, message=m) for r, m in decision.errors],
            reason=decision.reason(action, body.target),
            baseline=True,
            version=policy.version,
        )

    async def usage(
        self,
        principal: Principal,
        limiter: Limiter | None,
        target: str | None = None,
        user: str | None = None,
        key: str | None = None,
    ) -> UsageOut:
        """What is left of each limit that applies to the caller (or, for an admin, to
        the ``user`` or ``key`` named), for ``target`` when limits count per tool."""
        subject = principal
        if user is not None or key is not None:
            principal.require("policies:read")
            subject = await self._subject(SubjectIn(user=user, key=key))
        if limiter is None:
            return UsageOut(limits=[], storage="memory")
        found = await limiter.usage(subject, target)
        return UsageOut(
            limits=[LimitUsage.model_validate(item) for item in found],
            storage="redis" if limiter.kind == "redis" else "memory",
        )

    async def _subject(self, given: SubjectIn) -> Principal:
        """A principal as the explain request describes it, filled in from the stored
        user or key it names."""
        user: User | None = None
        key: ApiKey | None = None
        async with self.db.session() as session:
            if given.key:
                key = await session.scalar(
                    select(ApiKey).where((ApiKey.id == given.key) | (ApiKey.prefix == given.key))
                )
                if key is None:
                    raise _unknown("key", given.key)
                user = await session.get(User, key.user_id)
            elif given.user:
                user = await session.scalar(
                    select(User).where((User.id == given.user) | (User.email == given.user))
                )
                if user is None:
                    raise _unknown("user", given.user)
            teams: list[tuple[str, str]] = []
            if user is not None:
                rows = await session.execute(
                    select(Team.id, Team.name)
                    .join(TeamMember, TeamMember.team_id == Team.id)
                    .where(TeamMember.user_id == user.id)
                )
                teams = [(r[0], r[1]) for r in rows]
            named = [t for t in ([given.team] if given.team else []) + given.teams]
            if named:
                rows = await session.execute(
                    select(Team.id, Team.name).where(Team.name.in_(named) | Team.id.in_(named))
                )
                found = [(r[0], r[1]) for r in rows]
                teams = found + [(n, n) for n in named if n not in {x for t in found for x in t}]
        role = given.role or (user.role if user is not None else None)
        if role is None:
            raise InvalidInput(
                "say who: give subject.role, subject.user or subject.key",
                errors=[{"field": "subject", "message": "needs role, user or key"}],
            )
        return Principal(
            user_id=user.id if user else (given.user or "-"),
            email=user.email if user else (given.user or ""),
            name=user.name if user else "",
            role=str(role),
            key_id=key.id if key else None,
            scopes=tuple(key.scopes) if key else ("*",),
            team_ids=tuple(t[0] for t in teams),
            team_names=tuple(t[1] for t in teams),
            key_prefix=key.prefix if key else given.key,
            auth_method=given.auth_method,
            key_tags=tuple(given.key_tags or (key.tags or () if key else ())),
            tools_allow=tuple(key.tools_allow) if key and key.tools_allow is not None else None,
            tools_deny=tuple(key.tools_deny or ()) if key else (),
        )


def _unknown(kind: str, value: str) -> InvalidInput:
    return InvalidInput(
        f"no {kind} {value!r}",
        errors=[{"field": f"subject.{kind}", "message": f"unknown {kind}"}],
    )


def _stored(document: dict[str, Any]) -> PolicyDocument:
    """A stored version. It was valid when applied; should this release no longer read
    it, the gateway fails closed (every call refused, said loudly) until a readable
    version is applied, rather than run without the rules someone relied on."""
    try:
        return parse(document)
    except InvalidInput as exc:
        log.error("the stored policy cannot be read (%s): refusing every call", exc.message)
        return PolicyDocument(default="deny")
