"""Queries over skills, versions, files, blobs and links. Never commits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from skills.models import Skill, SkillBlob, SkillFile, SkillLink, SkillVersion


class SkillRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, obj: Skill | SkillVersion | SkillFile | SkillLink) -> None:
        self.session.add(obj)
        await self.session.flush()

    async def get_by_name(self, name: str) -> Skill | None:
        return (
            await self.session.execute(select(Skill).where(Skill.name == name))
        ).scalar_one_or_none()

    async def list_skills(
        self,
        *,
        limit: int | None = 100,
        offset: int = 0,
        viewer: tuple[str, Sequence[str]] | None = None,
        query: str | None = None,
    ) -> tuple[Sequence[Skill], int]:
        """Skills a viewer (user id, team ids) may see, or all when ``viewer`` is None
        (``limit`` None: every one)."""
        stmt = select(Skill)
        if viewer is not None:
            user_id, team_ids = viewer
            stmt = stmt.where(
                or_(
                    Skill.visibility == "public",
                    Skill.owner_id == user_id,
                    and_(Skill.visibility == "team", Skill.team_id.in_(list(team_ids))),
                )
            )
        if query:
            like = f"%{query.lower()}%"
            stmt = stmt.where(
                or_(func.lower(Skill.name).like(like), func.lower(Skill.description).like(like))
            )
        total = int(
            await self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        )
        rows = await self.session.scalars(stmt.order_by(Skill.name).limit(limit).offset(offset))
        return rows.all(), total

    async def delete(self, skill: Skill) -> None:
        await self.session.delete(skill)
        await self.session.flush()

    # --- versions and files -------------------------------------------------------------
    async def version(self, skill_id: str, number: int) -> SkillVersion | None:
        return (
            await self.session.execute(
                select(SkillVersion).where(
                    SkillVersion.skill_id == skill_id, SkillVersion.version == number
                )
            )
        ).scalar_one_or_none()

    async def versions(self, skill_id: str) -> Sequence[SkillVersion]:
        rows = await self.session.scalars(
            select(SkillVersion)
            .where(SkillVersion.skill_id == skill_id)
            .order_by(SkillVersion.version.desc())
        )
        return rows.all()

    async def files(self, version_id: str) -> Sequence[SkillFile]:
        rows = await self.session.scalars(
            select(SkillFile).where(SkillFile.version_id == version_id).order_by(SkillFile.path)
        )
        return rows.all()

    async def current_versions(self) -> list[tuple[Skill, SkillVersion, list[SkillFile]]]:
        """Every skill with its current version and that version's files (two queries)."""
        rows = (
            await self.session.execute(
                select(Skill, SkillVersion)
                .join(
                    SkillVersion,
                    and_(SkillVersion.skill_id == Skill.id, SkillVersion.version == Skill.version),
                )
                .order_by(Skill.name)
            )
        ).all()
        files: dict[str, list[SkillFile]] = {version.id: [] for _, version in rows}
        if files:
            found = await self.session.scalars(
                select(SkillFile)
                .where(SkillFile.version_id.in_(list(files)))
                .order_by(SkillFile.path)
            )
            for f in found.all():
                files[f.version_id].append(f)
        return [(skill, version, files[version.id]) for skill, version in rows]

    async def file_counts(self, version_ids: Iterable[str]) -> dict[str, tuple[int, int]]:
        """{version id: (file count, total bytes)}."""
        rows = await self.session.execute(
            select(SkillFile.version_id, func.count(), func.coalesce(func.sum(SkillFile.size), 0))
            .where(SkillFile.version_id.in_(list(version_ids)))
            .group_by(SkillFile.version_id)
        )
        return {vid: (int(n), int(size)) for vid, n, size in rows.all()}

    # --- blobs ----------------------------------------------------------------------------
    async def put_blobs(self, blobs: dict[str, bytes]) -> None:
        """Store contents not stored yet; a concurrent writer of the same bytes is fine."""
        if not blobs:
            return
        present = set(
            (
                await self.session.scalars(
                    select(SkillBlob.sha256).where(SkillBlob.sha256.in_(list(blobs)))
                )
            ).all()
        )
        rows = [
            {"sha256": sha, "size": len(data), "data": data}
            for sha, data in blobs.items()
            if sha not in present
        ]
        if not rows:
            return
        # Insert-or-ignore: two uploads of the same file may race between check and insert.
        dialect = self.session.get_bind().dialect.name
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(SkillBlob).on_conflict_do_nothing(index_elements=["sha256"])
        for row in rows:  # one row per statement keeps parameter sizes bounded
            await self.session.execute(stmt, row)

    async def blob(self, sha256: str) -> bytes | None:
        return (
            await self.session.execute(select(SkillBlob.data).where(SkillBlob.sha256 == sha256))
        ).scalar_one_or_none()

    async def blobs(self, digests: Iterable[str]) -> dict[str, bytes]:
        rows = await self.session.execute(
            select(SkillBlob.sha256, SkillBlob.data).where(SkillBlob.sha256.in_(list(digests)))
        )
        return {sha: bytes(data) for sha, data in rows.all()}

    async def collect_garbage(self) -> int:
        """Delete blobs no file refers to any more; returns how many."""
        referenced = select(SkillFile.sha256).distinct()
        result = await self.session.execute(
            delete(SkillBlob).where(SkillBlob.sha256.not_in(referenced))
        )
        return int(getattr(result, "rowcount", 0) or 0)

    # --- links ----------------------------------------------------------------------------
    async def links(self, skill_id: str) -> Sequence[SkillLink]:
        rows = await self.session.scalars(
            select(SkillLink).where(SkillLink.skill_id == skill_id).order_by(SkillLink.server_name)
        )
        return rows.all()

    async def all_links(self) -> list[tuple[str, str, list[str]]]:
        """(skill name, description, linked server names) for every linked skill."""
        rows = await self.session.execute(
            select(Skill.name, Skill.description, SkillLink.server_name)
            .join(SkillLink, SkillLink.skill_id == Skill.id)
            .order_by(Skill.name, SkillLink.server_name)
        )
        linked: dict[tuple[str, str], list[str]] = {}
        for name, description, server in rows.all():
            linked.setdefault((name, description or ""), []).append(server)
        return [(name, description, servers) for (name, description), servers in linked.items()]

    async def replace_links(self, skill_id: str, servers: dict[str, str]) -> None:
        """Make the skill's links exactly ``servers`` ({server id: name})."""
        await self.session.execute(delete(SkillLink).where(SkillLink.skill_id == skill_id))
        for server_id, name in sorted(servers.items(), key=lambda kv: kv[1]):
            self.session.add(SkillLink(skill_id=skill_id, server_id=server_id, server_name=name))
        await self.session.flush()

    # --- usage ----------------------------------------------------------------------------
    async def add_usage(
        self,
        name: str,
        *,
        loads: int,
        downloads: int,
        loaded: datetime | None,
        downloaded: datetime | None,
    ) -> None:
        """Add counts in one UPDATE (atomic across replicas: ``x = x + n``)."""
        values: dict[str, object] = {
            "load_count": Skill.load_count + loads,
            "download_count": Skill.download_count + downloads,
        }
        if loaded is not None:
            values["last_loaded_at"] = loaded
        if downloaded is not None:
            values["last_downloaded_at"] = downloaded
        await self.session.execute(update(Skill).where(Skill.name == name).values(**values))


async def count_team_skills(session: AsyncSession, team_id: str) -> int:
    """Skills of a team (its ``max_skills`` quota, gateway/policy/quotas.py)."""
    query = select(func.count()).select_from(Skill).where(Skill.team_id == team_id)
    return int(await session.scalar(query) or 0)
