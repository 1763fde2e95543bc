"""Queries over sandboxes, templates and sandbox events. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sandboxes.models import Sandbox, SandboxTemplate


class SandboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, obj: Sandbox | SandboxTemplate) -> None:
        self.session.add(obj)
        await self.session.flush()

    async def get(self, sandbox_id: str) -> Sandbox | None:
        return await self.session.get(Sandbox, sandbox_id)

    async def list_rows(
        self,
        *,
        owner_id: str | None,
        include_destroyed: bool = False,
        status: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[Sequence[Sandbox], int]:
        """Sandboxes of ``owner_id`` (None: everyone's), newest first."""
        stmt = select(Sandbox)
        if owner_id is not None:
            stmt = stmt.where(Sandbox.owner_id == owner_id)
        if status is not None:
            stmt = stmt.where(Sandbox.status == status)
        elif not include_destroyed:
            stmt = stmt.where(Sandbox.status != "destroyed")
        total = int(
            await self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        )
        rows = await self.session.scalars(
            stmt.order_by(Sandbox.created_at.desc(), Sandbox.id).limit(limit).offset(offset)
        )
        return rows.all(), total

    async def count_live(self, owner_id: str, default_disk_mb: int) -> tuple[int, int, int]:
        """(sandboxes not destroyed, their last measured disk bytes, the sum of their disk
        limits in MiB) of one owner. Few rows (a per-user quota): summed here, as the
        limits are JSON."""
        rows = (
            await self.session.execute(
                select(Sandbox.disk_bytes, Sandbox.limits).where(
                    Sandbox.owner_id == owner_id, Sandbox.status != "destroyed"
                )
            )
        ).all()
        measured = sum(int(disk or 0) for disk, _ in rows)
        limits = sum(int((lim or {}).get("disk_mb", default_disk_mb)) for _, lim in rows)
        return len(rows), measured, limits

    async def by_session(self, owner_id: str, session_key: str) -> Sandbox | None:
        return (
            await self.session.scalars(
                select(Sandbox)
                .where(
                    Sandbox.owner_id == owner_id,
                    Sandbox.session_key == session_key,
                    Sandbox.status.in_(("creating", "running", "stopped")),
                )
                .order_by(Sandbox.created_at.desc())
                .limit(1)
            )
        ).first()

    async def idle(self, *, status: Sequence[str], before: datetime) -> Sequence[Sandbox]:
        rows = await self.session.scalars(
            select(Sandbox).where(
                Sandbox.status.in_(list(status)), Sandbox.last_activity_at < before
            )
        )
        return rows.all()

    async def touch(self, activity: dict[str, tuple[datetime, int]]) -> None:
        """Move last activity forward and add exec counts ({id: (at, execs)})."""
        for sandbox_id, (at, execs) in activity.items():
            if execs:
                await self.session.execute(
                    update(Sandbox)
                    .where(Sandbox.id == sandbox_id)
                    .values(exec_count=Sandbox.exec_count + execs)
                )
            await self.session.execute(
                update(Sandbox)
                .where(Sandbox.id == sandbox_id, Sandbox.last_activity_at < at)
                .values(last_activity_at=at)
            )

    # --- templates ------------------------------------------------------------------------
    async def template(self, name: str) -> SandboxTemplate | None:
        return await self.session.get(SandboxTemplate, name)

    async def templates(self) -> Sequence[SandboxTemplate]:
        return (await self.session.scalars(select(SandboxTemplate).order_by("name"))).all()

    async def delete_template(self, row: SandboxTemplate) -> None:
        await self.session.delete(row)
        await self.session.flush()


async def count_team_sandboxes(session: AsyncSession, team_id: str) -> int:
    """A team's sandboxes not destroyed (its ``max_sandboxes`` quota,
    gateway/policy/quotas.py)."""
    query = (
        select(func.count())
        .select_from(Sandbox)
        .where(Sandbox.team_id == team_id, Sandbox.status != "destroyed")
    )
    return int(await session.scalar(query) or 0)
