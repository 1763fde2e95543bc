"""Queries over servers, their versions and their catalog. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.db import utcnow
from gateway.servers.models import CatalogEntry, McpServer, ServerVersion


class ServerRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, obj: McpServer | ServerVersion) -> None:
        self.session.add(obj)
        await self.session.flush()

    async def get_by_name(self, name: str) -> McpServer | None:
        result = await self.session.execute(select(McpServer).where(McpServer.name == name))
        return result.scalar_one_or_none()

    async def list_servers(
        self, *, limit: int = 1000, offset: int = 0, team_ids: Sequence[str] | None = None
    ) -> tuple[Sequence[McpServer], int]:
        query = select(McpServer)
        if team_ids is not None:
            query = query.where(or_(McpServer.team_id.is_(None), McpServer.team_id.in_(team_ids)))
        total = int(
            await self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        )
        rows = await self.session.scalars(
            query.order_by(McpServer.name).limit(limit).offset(offset)
        )
        return rows.all(), total

    async def all(self) -> Sequence[McpServer]:
        return (await self.session.scalars(select(McpServer).order_by(McpServer.name))).all()

    async def delete(self, server: McpServer) -> None:
        await self.session.delete(server)
        await self.session.flush()

    async def versions(self, server_id: str) -> Sequence[ServerVersion]:
        rows = await self.session.scalars(
            select(ServerVersion)
            .where(ServerVersion.server_id == server_id)
            .order_by(ServerVersion.version.desc())
        )
        return rows.all()

    # --- catalog ----------------------------------------------------------------------
    async def replace_catalog(
        self, server_id: str, entries: list[tuple[str, str, str, dict[str, Any], str]]
    ) -> tuple[int, int, int]:
        """Make the stored catalog equal ``entries`` (kind, name, description, definition,
        hash); returns (added, changed, removed)."""
        existing = {
            (e.kind, e.name): e
            for e in (
                await self.session.scalars(
                    select(CatalogEntry).where(CatalogEntry.server_id == server_id)
                )
            ).all()
        }
        added = changed = 0
        seen = set()
        now = utcnow()
        for kind, name, description, definition, digest in entries:
            key = (kind, name)
            if key in seen:
                continue  # a server listing the same name twice: keep the first
            seen.add(key)
            row = existing.get(key)
            if row is None:
                self.session.add(
                    CatalogEntry(
                        server_id=server_id,
                        kind=kind,
                        name=name,
                        description=description,
                        definition=definition,
                        definition_hash=digest,
                        updated_at=now,
                    )
                )
                added += 1
            elif row.definition_hash != digest:
                row.description, row.definition, row.definition_hash = (
                    description,
                    definition,
                    digest,
                )
                row.updated_at = now
                changed += 1
        gone = [row.id for key, row in existing.items() if key not in seen]
        if gone:
            await self.session.execute(delete(CatalogEntry).where(CatalogEntry.id.in_(gone)))
        await self.session.flush()
        return added, changed, len(gone)

    async def set_keywords(
        self, server_id: str, tool: str, keywords: list[str]
    ) -> CatalogEntry | None:
        """Set one tool's search keywords; None: the server has no such tool."""
        row = await self.session.scalar(
            select(CatalogEntry).where(
                CatalogEntry.server_id == server_id,
                CatalogEntry.kind == "tool",
                CatalogEntry.name == tool,
            )
        )
        if row is not None:
            row.keywords = keywords or None
            await self.session.flush()
        return row

    async def catalog(
        self,
        *,
        server_ids: Sequence[str] | None = None,
        kind: str | None = None,
        query: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> tuple[Sequence[tuple[CatalogEntry, str]], int]:
        stmt = select(CatalogEntry, McpServer.name).join(
            McpServer, McpServer.id == CatalogEntry.server_id
        )
        if server_ids is not None:
            stmt = stmt.where(CatalogEntry.server_id.in_(server_ids))
        if kind is not None:
            stmt = stmt.where(CatalogEntry.kind == kind)
        if query:
            like = f"%{query.lower()}%"
            stmt = stmt.where(
                or_(
                    func.lower(CatalogEntry.name).like(like),
                    func.lower(CatalogEntry.description).like(like),
                )
            )
        total = int(
            await self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        )
        rows = await self.session.execute(
            stmt.order_by(McpServer.name, CatalogEntry.kind, CatalogEntry.name)
            .limit(limit)
            .offset(offset)
        )
        return [(entry, name) for entry, name in rows.all()], total

    async def tool_counts(self) -> dict[str, int]:
        rows = await self.session.execute(
            select(CatalogEntry.server_id, func.count())
            .where(CatalogEntry.kind == "tool")
            .group_by(CatalogEntry.server_id)
        )
        return {server_id: int(count) for server_id, count in rows.all()}


async def count_team_servers(session: AsyncSession, team_id: str) -> int:
    """Servers owned by a team (its ``max_servers`` quota, gateway/policy/quotas.py)."""
    query = select(func.count()).select_from(McpServer).where(McpServer.team_id == team_id)
    return int(await session.scalar(query) or 0)
