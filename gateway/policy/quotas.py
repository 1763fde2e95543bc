"""Team quotas: how many servers, sandboxes and skills a team may own, and how many
calls its members may make a day; set by platform admins, read by the team's members.

Servers, sandboxes and skills are counted where they are created (each pillar hands
its count in, :meth:`TeamQuotas.check`); two creates at once cannot both pass: the
check and the insert run under a per-team lock in this process and, on PostgreSQL,
with the team's row locked (``SELECT … FOR UPDATE``) until the insert commits, which
holds across replicas. ``calls_per_day`` is a quota limit of the limit stage
(gateway/policy/teams.py, :func:`quota_limit`): counted as every limit is.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.service import AuditLog
from gateway.auth.models import Team
from gateway.auth.principal import Principal
from gateway.db import Database
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.policy.limits import Limiter
from gateway.policy.teams import CALLS_PER_DAY, bump_revision, find_team, label, team_role
from gateway.schemas import Strict

# What each counted kind is called in a quota, a message and the usage.
KINDS = {"servers": "max_servers", "sandboxes": "max_sandboxes", "skills": "max_skills"}
Counter = Callable[[AsyncSession, str], Awaitable[int]]


class TeamQuotaExceeded(Conflict):
    """One more server, sandbox or skill would take a team over its quota."""

    code = "team_quota_exceeded"


class QuotasIn(Strict):
    """A team's quotas (the whole set: a quota left out is unlimited)."""

    max_servers: int | None = Field(None, ge=0, description="Servers owned by the team.")
    max_sandboxes: int | None = Field(None, ge=0, description="Sandboxes not destroyed.")
    max_skills: int | None = Field(None, ge=0, description="Skills of the team.")
    calls_per_day: int | None = Field(
        None, ge=1, description="Tool calls of the team's members per day (UTC)."
    )


class QuotaUsage(BaseModel):
    servers: int
    sandboxes: int
    skills: int
    calls_today: int | None = Field(
        None, description="Calls counted today (null: no calls_per_day quota)."
    )


class QuotasOut(BaseModel):
    team_id: str
    team: str
    quotas: QuotasIn
    usage: QuotaUsage


class TeamQuotas:
    """A team's quotas: reading and setting them, and checking a create against them."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog | None,
        changed: Callable[[], Awaitable[None]],
    ) -> None:
        self.db = db
        self.audit = audit
        self.changed = changed
        # Each pillar's count of what a team owns (registered by the pillar's service).
        self.counters: dict[str, Counter] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    # --- creating something a team owns ----------------------------------------------
    def lock(self, team_id: str | None) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held from :meth:`check` until the new row is committed (in this process; the
        row lock of :meth:`check` covers other replicas on PostgreSQL). No team: no
        lock."""
        if team_id is None:
            return contextlib.nullcontext()
        return self._locks.setdefault(team_id, asyncio.Lock())

    async def check(self, session: AsyncSession, team_id: str | None, kind: str) -> None:
        """:class:`TeamQuotaExceeded` if one more ``kind`` (servers, sandboxes, skills)
        would take the team over its quota; call under :meth:`lock`, in the session
        that adds the row."""
        if team_id is None:
            return
        team = await session.scalar(select(Team).where(Team.id == team_id).with_for_update())
        if team is None:
            return  # an unknown team: the insert's foreign key says so
        allowed = getattr(team, KINDS[kind])
        if allowed is None:
            return
        used = await self.counters[kind](session, team_id)
        if used >= allowed:
            raise TeamQuotaExceeded(
                f"team {team.name!r} has {used} {kind}, its quota max_{kind} allows {allowed}: "
                f"remove one or ask an admin to raise the quota",
                quota=KINDS[kind],
                team=team.name,
                limit=allowed,
                used=used,
            )

    async def require_team(self, session: AsyncSession, team_ids: Sequence[str], kind: str) -> None:
        """For a creator in several teams who named none: :class:`InvalidInput`
        (``team_required``) when one of those teams has a quota on ``kind``, so that
        being in two teams is no way around a quota."""
        column = getattr(Team, KINDS[kind])
        names = list(
            await session.scalars(
                select(Team.name).where(Team.id.in_(list(team_ids)), column.is_not(None))
            )
        )
        if names:
            raise InvalidInput(
                f"you are in several teams and {', '.join(sorted(names))} limit {kind}: "
                "say which team this one is for (team_id)",
                code="team_required",
                errors=[{"field": "team_id", "message": "required: you are in several teams"}],
            )

    # --- reading and setting ---------------------------------------------------------
    async def show(
        self, principal: Principal, ref: str, limiter: Limiter | None = None
    ) -> QuotasOut:
        """A team's quotas and what it uses of them (admins, operators, its members)."""
        async with self.db.session() as session:
            team = await find_team(session, ref)
            if (
                not principal.can("policies:read")
                and await team_role(session, team.id, principal.user_id) is None
            ):
                raise NotFound(f"no team {ref!r}")
            counts = {k: await self._count(session, k, team.id) for k in KINDS}
        calls = None
        if team.calls_per_day is not None:
            calls = await _calls_today(limiter, team)
        return QuotasOut(
            team_id=team.id,
            team=team.name,
            quotas=_quotas(team),
            usage=QuotaUsage(**counts, calls_today=calls),
        )

    async def put(
        self, principal: Principal, ref: str, body: QuotasIn, limiter: Limiter | None = None
    ) -> QuotasOut:
        """Set a team's quotas (platform admins: teams:write)."""
        principal.require("teams:write")
        async with self.db.session() as session:
            team = await find_team(session, ref)
            old = _quotas(team).model_dump()
            for name, value in body.model_dump().items():
                setattr(team, name, value)
            await bump_revision(session)
        await self.changed()
        if self.audit is not None:
            self.audit.change("team.quotas", principal, team.id, old=old, new=body.model_dump())
        return await self.show(principal, team.id, limiter)

    async def _count(self, session: AsyncSession, kind: str, team_id: str) -> int:
        counter = self.counters.get(kind)
        return await counter(session, team_id) if counter is not None else 0


def _quotas(team: Team) -> QuotasIn:
    return QuotasIn(**{name: getattr(team, name) for name in QuotasIn.model_fields})


class _TeamSubject:
    """A subject in one team only: whose usage of the team's quota is asked."""

    def __init__(self, team: Team) -> None:
        self.user_id, self.email, self.role = "-", "", "viewer"
        self.key_id: str | None = None
        self.key_prefix: str | None = None
        self.team_ids: tuple[str, ...] = (team.id,)
        self.team_names: tuple[str, ...] = (team.name,)
        self.key_tags: tuple[str, ...] = ()
        self.auth_method = "api_key"
        self.tools_allow: tuple[str, ...] | None = None
        self.tools_deny: tuple[str, ...] = ()


async def _calls_today(limiter: Limiter | None, team: Team) -> int | None:
    """Today's count of the team's calls_per_day quota (None: not counted here)."""
    if limiter is None:
        return None
    wanted = label(team.name) + CALLS_PER_DAY
    found: list[dict[str, Any]] = await limiter.usage(_TeamSubject(team))
    for item in found:
        if item["limit"] == wanted and item["scope"].get("team") == team.id:
            return int(item["used"])
    return 0
