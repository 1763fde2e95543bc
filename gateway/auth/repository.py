"""Queries over the identity tables. Returns model objects; never commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth.models import ApiKey, Team, TeamMember, User


class IdentityRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- users ------------------------------------------------------------------------
    async def add(self, obj: User | Team | TeamMember | ApiKey) -> None:
        self.session.add(obj)
        await self.session.flush()

    async def get_user(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id)

    async def get_user_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()

    async def count_users(self) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(User)) or 0)

    async def list_users(self, *, limit: int, offset: int) -> tuple[Sequence[User], int]:
        total = await self.count_users()
        rows = await self.session.scalars(
            select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
        )
        return rows.all(), total

    async def first_admin(self) -> User | None:
        rows = await self.session.scalars(
            select(User)
            .where(User.role == "admin", User.is_active.is_(True))
            .order_by(User.created_at, User.id)
            .limit(1)
        )
        return rows.first()

    # --- teams ------------------------------------------------------------------------
    async def get_team(self, team_id: str) -> Team | None:
        return await self.session.get(Team, team_id)

    async def get_team_by_name(self, name: str) -> Team | None:
        result = await self.session.execute(select(Team).where(Team.name == name))
        return result.scalar_one_or_none()

    async def list_teams(
        self, *, limit: int, offset: int, member_id: str | None = None
    ) -> tuple[Sequence[Team], int]:
        query = select(Team)
        if member_id is not None:
            query = query.join(TeamMember).where(TeamMember.user_id == member_id)
        total = int(
            await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        )
        rows = await self.session.scalars(query.order_by(Team.name).limit(limit).offset(offset))
        return rows.all(), total

    async def get_membership(self, team_id: str, user_id: str) -> TeamMember | None:
        return await self.session.get(TeamMember, (team_id, user_id))

    async def list_members(self, team_id: str) -> Sequence[tuple[TeamMember, User]]:
        result = await self.session.execute(
            select(TeamMember, User)
            .join(User, User.id == TeamMember.user_id)
            .where(TeamMember.team_id == team_id)
            .order_by(User.email)
        )
        return [(m, u) for m, u in result.all()]

    async def teams_of_user(self, user_id: str) -> Sequence[tuple[Team, str]]:
        result = await self.session.execute(
            select(Team, TeamMember.role)
            .join(TeamMember, TeamMember.team_id == Team.id)
            .where(TeamMember.user_id == user_id)
            .order_by(Team.name)
        )
        return [(t, r) for t, r in result.all()]

    async def delete(self, obj: TeamMember | Team | User) -> None:
        await self.session.delete(obj)
        await self.session.flush()

    # --- keys -------------------------------------------------------------------------
    async def get_key(self, key_id: str) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None:
        result = await self.session.execute(select(ApiKey).where(ApiKey.key_hash == key_hash))
        return result.scalar_one_or_none()

    async def list_keys(
        self, *, limit: int, offset: int, user_id: str | None, include_revoked: bool
    ) -> tuple[Sequence[ApiKey], int]:
        query = select(ApiKey)
        if user_id is not None:
            query = query.where(ApiKey.user_id == user_id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        total = int(
            await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        )
        rows = await self.session.scalars(
            query.order_by(ApiKey.created_at.desc(), ApiKey.id).limit(limit).offset(offset)
        )
        return rows.all(), total

    async def key_ids_of_user(self, user_id: str) -> Sequence[str]:
        rows = await self.session.scalars(select(ApiKey.id).where(ApiKey.user_id == user_id))
        return rows.all()

    async def touch_keys(self, last_used: Mapping[str, datetime]) -> None:
        """Write last-used times; a key only ever moves forward in time."""
        for key_id, when in last_used.items():
            await self.session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < when),
                )
                .values(last_used_at=when)
            )
