"""Team documents: each team's own rules and limits, within the platform's.

A team's document has the platform document's grammar and is validated the same way;
it is versioned per team. Its rules apply only to the team's members and can only
narrow: a call is allowed when the platform policy allows it *and* the document of
every team of the caller that has one does (gateway/policy/engine.py,
:meth:`CompiledPolicy.within`). Its rule ids are reported as ``team:<name>/<id>``.
Its limits count only the team's members (their ``subjects.teams`` is the team), and
``costs`` stay the platform's.

Team admins (members whose team role is ``owner``) apply their team's document;
platform admins may apply any. Every change bumps the tenancy revision, which every
replica follows (:class:`gateway.policy.service.PolicyService`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.service import AuditLog
from gateway.auth.models import Team, TeamMember
from gateway.auth.principal import Principal
from gateway.db import Database
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.policy.document import Limit, PolicyDocument, parse
from gateway.policy.engine import CompiledPolicy
from gateway.policy.models import TeamPolicyVersion, TenancyRevision
from gateway.policy.plan import plan
from gateway.policy.schemas import ApplyOut, PolicyOut, VersionOut

# The synthesised limit that counts a team's calls_per_day quota.
CALLS_PER_DAY = "calls_per_day"


def label(team_name: str) -> str:
    """What a team's rule and limit ids are prefixed with (``team:<name>/``)."""
    return f"team:{team_name}/"


@dataclass(slots=True)
class TeamState:
    """What is in force for teams: their compiled documents (by team id) and the
    limits they add to the platform's (their own, and each calls_per_day quota)."""

    revision: int = 0
    policies: dict[str, CompiledPolicy] = field(default_factory=dict)
    limits: list[Limit] = field(default_factory=list)


def _digest(document: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def check_team_document(document: PolicyDocument, team: Team) -> PolicyDocument:
    """``document`` if a team may have it: its limits name no other team and it sets
    no costs; else :class:`InvalidInput` naming the limit and field."""
    errors: list[dict[str, Any]] = []
    if document.costs:
        errors.append(
            {"field": "costs", "message": "costs are set by the platform policy, not a team's"}
        )
    for i, limit in enumerate(document.limits):
        others = [t for t in limit.subjects.teams if t not in (team.id, team.name)]
        if others:
            errors.append(
                {
                    "rule": limit.id,
                    "field": f"limits[{i}].subjects.teams",
                    "message": f"a team's limits count only its own members, not {others}",
                }
            )
    if errors:
        first = errors[0]
        where = f"{first['rule']!r}, " if first.get("rule") else ""
        raise InvalidInput(
            f"the policy is not valid: {where}{first['field']}: {first['message']}",
            errors=errors,
        )
    return document


def team_limits(document: PolicyDocument, team_id: str, name: str) -> list[Limit]:
    """The document's limits as the limiter counts them: ids prefixed with the team,
    subjects narrowed to the team's members."""
    return [
        limit.model_copy(
            update={
                "id": label(name) + limit.id,
                "subjects": limit.subjects.model_copy(update={"teams": [team_id]}),
            }
        )
        for limit in document.limits
    ]


def quota_limit(team_id: str, name: str, per_day: int) -> Limit:
    """A team's calls_per_day quota as a limit of the limit stage: one count per day
    (UTC) of the calls of the team's members."""
    spec = Limit(id=CALLS_PER_DAY, scope=["team"], quota=f"{per_day}/day")
    subjects = spec.subjects.model_copy(update={"teams": [team_id]})
    return spec.model_copy(update={"id": label(name) + CALLS_PER_DAY, "subjects": subjects})


async def bump_revision(session: AsyncSession) -> None:
    """Count one more team change (in the caller's transaction)."""
    result = await session.execute(
        update(TenancyRevision)
        .where(TenancyRevision.id == 1)
        .values(revision=TenancyRevision.revision + 1)
    )
    if getattr(result, "rowcount", 0) == 0:  # a database made without the migration
        session.add(TenancyRevision(id=1, revision=1))


async def current_revision(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(TenancyRevision.revision).where(TenancyRevision.id == 1)) or 0
    )


async def find_team(session: AsyncSession, ref: str) -> Team:
    """A team by id or name, or :class:`NotFound`."""
    team = await session.get(Team, ref) or await session.scalar(
        select(Team).where(Team.name == ref)
    )
    if team is None:
        raise NotFound(f"no team {ref!r}")
    return team


async def team_role(session: AsyncSession, team_id: str, user_id: str) -> str | None:
    """The user's role in the team (``owner`` or ``member``); None: not a member."""
    return await session.scalar(
        select(TeamMember.role).where(TeamMember.team_id == team_id, TeamMember.user_id == user_id)
    )


async def load_state(session: AsyncSession) -> TeamState:
    """Every team's newest document and quota, compiled."""
    revision = await current_revision(session)
    newest = (
        select(TeamPolicyVersion.team_id, func.max(TeamPolicyVersion.version).label("v"))
        .group_by(TeamPolicyVersion.team_id)
        .subquery()
    )
    rows = await session.execute(
        select(Team.id, Team.name, Team.calls_per_day, TeamPolicyVersion)
        .outerjoin(newest, newest.c.team_id == Team.id)
        .outerjoin(
            TeamPolicyVersion,
            (TeamPolicyVersion.team_id == Team.id) & (TeamPolicyVersion.version == newest.c.v),
        )
    )
    state = TeamState(revision)
    for team_id, name, per_day, row in rows:
        if row is not None:
            document = _stored(row.document)
            if document.rules or document.default != "allow":
                state.policies[team_id] = CompiledPolicy(document, row.version, label(name))
            state.limits += team_limits(document, team_id, name)
        if per_day is not None:
            state.limits.append(quota_limit(team_id, name, per_day))
    return state


def _stored(document: dict[str, Any]) -> PolicyDocument:
    """A stored team document; unreadable by this release: its team is refused
    everything (fail closed, as the platform's)."""
    try:
        return parse(document)
    except InvalidInput:
        return PolicyDocument(default="deny")


class TeamPolicies:
    """Reading and applying team documents; ``changed`` is awaited after each change
    (the policy service reloads what is in force)."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog | None,
        changed: Callable[[], Awaitable[None]],
    ) -> None:
        self.db = db
        self.audit = audit
        self.changed = changed

    async def _readable(self, session: AsyncSession, principal: Principal, ref: str) -> Team:
        """The team, if ``principal`` may read its document (policies:read, or a member)."""
        team = await find_team(session, ref)
        if principal.can("policies:read"):
            return team
        if await team_role(session, team.id, principal.user_id) is None:
            raise NotFound(f"no team {ref!r}")
        return team

    async def _writable(self, session: AsyncSession, principal: Principal, ref: str) -> Team:
        """The team, if ``principal`` may apply its document: a platform admin
        (policies:write) or one of the team's owners."""
        team = await self._readable(session, principal, ref)
        if principal.can("policies:write"):
            return team
        role = await team_role(session, team.id, principal.user_id)
        if role != "owner" or not principal.can("teams:read"):
            raise Forbidden(
                f"only admins and the owners of team {team.name!r} may change its policy"
            )
        return team

    async def _newest(self, session: AsyncSession, team_id: str) -> TeamPolicyVersion | None:
        return await session.scalar(
            select(TeamPolicyVersion)
            .where(TeamPolicyVersion.team_id == team_id)
            .order_by(TeamPolicyVersion.version.desc())
            .limit(1)
        )

    async def show(self, principal: Principal, ref: str) -> PolicyOut:
        """The team's document in force, with its version (0: none applied)."""
        async with self.db.session() as session:
            team = await self._readable(session, principal, ref)
            row = await self._newest(session, team.id)
        return PolicyOut(
            version=row.version if row else 0,
            document=_stored(row.document).canonical() if row else {},
            created_at=row.created_at if row else None,
            created_by=row.created_by if row else None,
        )

    async def document(self, principal: Principal, ref: str) -> PolicyDocument:
        async with self.db.session() as session:
            team = await self._readable(session, principal, ref)
            row = await self._newest(session, team.id)
        return _stored(row.document) if row else PolicyDocument()

    async def versions(self, principal: Principal, ref: str, limit: int = 50) -> list[VersionOut]:
        async with self.db.session() as session:
            team = await self._readable(session, principal, ref)
            rows = await session.scalars(
                select(TeamPolicyVersion)
                .where(TeamPolicyVersion.team_id == team.id)
                .order_by(TeamPolicyVersion.version.desc())
                .limit(limit)
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

    async def apply(
        self, principal: Principal, ref: str, data: Any, *, dry_run: bool = False
    ) -> ApplyOut:
        """Make ``data`` the team's document: validated whole as the platform's (and
        :func:`check_team_document`), planned against the team's newest version,
        stored as its next version unless ``dry_run`` or unchanged."""
        async with self.db.session() as session:
            team = await self._writable(session, principal, ref)
            document = check_team_document(parse(data), team)
            row = await self._newest(session, team.id)
        old = _stored(row.document).canonical() if row else {}
        new = document.canonical()
        changes = plan(old, new)
        version = row.version if row else 0
        out = ApplyOut(
            version=version,
            changed=_digest(old) != _digest(new),
            dry_run=dry_run,
            plan=changes,
            lines=changes.lines(),
        )
        if dry_run or not out.changed:
            return out
        summary = "; ".join(out.lines)[:2000]
        try:
            async with self.db.session() as session:
                session.add(
                    TeamPolicyVersion(
                        team_id=team.id,
                        version=version + 1,
                        document=new,
                        digest=_digest(new),
                        summary=summary,
                        created_by=principal.email,
                    )
                )
                await bump_revision(session)
        except IntegrityError:
            raise Conflict(
                f"team {team.name!r}'s policy version {version + 1} was applied meanwhile by "
                "someone else; look at the new version and apply again"
            ) from None
        await self.changed()
        if self.audit is not None:
            self.audit.change(
                "team.policy_apply", principal, team.id, old={"version": version}, new=summary
            )
        out.version = version + 1
        return out
