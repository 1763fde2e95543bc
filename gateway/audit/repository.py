"""Queries over the audit trail: filtered pages newest first, rows after a position
(live tail), chain order (verify), usage aggregates and retention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.audit.models import AuditBoundary, AuditEvent


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What a search keeps; every field is optional. ``actor`` matches a user id, an
    email or a key prefix; ``q`` is free text over target and error."""

    server: str | None = None
    target: str | None = None
    action: str | None = None
    outcome: str | None = None
    route: str | None = None
    actor: str | None = None
    team: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    # visibility: rows of these teams or this user only (None: everything)
    visible_teams: tuple[str, ...] | None = None
    visible_user: str | None = None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def conditions(f: AuditFilter) -> list[ColumnElement[bool]]:
    """The WHERE terms of ``f``."""
    e = AuditEvent
    out: list[ColumnElement[bool]] = []
    for column, value in (
        (e.server, f.server),
        (e.target, f.target),
        (e.outcome, f.outcome),
        (e.route, f.route),
        (e.actor_team, f.team),
        (e.request_id, f.request_id),
    ):
        if value is not None:
            out.append(column == value)
    if f.action is not None:
        # "sandbox.*" matches every sandbox action
        if f.action.endswith(".*"):
            out.append(e.action.like(_escape_like(f.action[:-1]) + "%", escape="\\"))
        else:
            out.append(e.action == f.action)
    if f.actor is not None:
        # One column per shape, so each filter has an index to use.
        if "@" in f.actor:
            out.append(e.actor_email == f.actor)
        elif f.actor.startswith("mgw_"):
            out.append(e.actor_key_prefix == f.actor)
        else:
            out.append(e.actor_user_id == f.actor)
    if f.since is not None:
        out.append(e.ts >= f.since)
    if f.until is not None:
        out.append(e.ts < f.until)
    if f.q:
        pattern = "%" + _escape_like(f.q.lower()) + "%"
        out.append(
            or_(
                func.lower(e.target).like(pattern, escape="\\"),
                func.lower(e.error).like(pattern, escape="\\"),
            )
        )
    if f.visible_teams is not None:
        mine: list[ColumnElement[bool]] = [e.actor_user_id == f.visible_user]
        if f.visible_teams:
            mine.append(e.actor_team.in_(f.visible_teams))
        out.append(or_(*mine))
    return out


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self,
        f: AuditFilter,
        limit: int,
        after: tuple[datetime, str] | None = None,
        offset: int = 0,
    ) -> Sequence[AuditEvent]:
        """Up to ``limit`` rows newest first, older than the ``after`` (ts, id) key."""
        e = AuditEvent
        stmt = select(e).where(*conditions(f))
        if after is not None:
            stmt = stmt.where(tuple_(e.ts, e.id) < tuple_(*after))
        stmt = stmt.order_by(e.ts.desc(), e.id.desc()).limit(limit).offset(offset)
        return (await self.session.scalars(stmt)).all()

    async def get(self, event_id: str, f: AuditFilter) -> AuditEvent | None:
        stmt = select(AuditEvent).where(AuditEvent.id == event_id, *conditions(f))
        return (await self.session.scalars(stmt)).first()

    async def newer(self, f: AuditFilter, pos: int, limit: int) -> Sequence[AuditEvent]:
        """Rows stored after position ``pos``, oldest first (the live tail)."""
        e = AuditEvent
        stmt = select(e).where(e.pos > pos, *conditions(f)).order_by(e.pos).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def last_pos(self) -> int:
        return int(await self.session.scalar(select(func.max(AuditEvent.pos))) or 0)

    async def count(self, f: AuditFilter) -> int:
        stmt = select(func.count()).select_from(AuditEvent).where(*conditions(f))
        return int(await self.session.scalar(stmt) or 0)

    # --- the chain ----------------------------------------------------------------------
    def chain_order(self, since: datetime | None = None) -> Select[Any]:
        stmt = select(AuditEvent)
        if since is not None:
            stmt = stmt.where(AuditEvent.ts >= since)
        return stmt.order_by(AuditEvent.stream, AuditEvent.seq)

    async def boundaries(self) -> dict[str, AuditBoundary]:
        rows = (await self.session.scalars(select(AuditBoundary))).all()
        return {b.stream: b for b in rows}

    # --- retention ----------------------------------------------------------------------
    async def prunable(self, before: datetime) -> list[tuple[str, int, int]]:
        """Per stream with rows older than ``before``: (stream, last such seq, how many)."""
        e = AuditEvent
        stmt = (
            select(e.stream, func.max(e.seq), func.count()).where(e.ts < before).group_by(e.stream)
        )
        return [(s, int(seq), int(n)) for s, seq, n in (await self.session.execute(stmt)).all()]

    async def hash_at(self, stream: str, seq: int) -> str | None:
        stmt = select(AuditEvent.hash).where(AuditEvent.stream == stream, AuditEvent.seq == seq)
        return await self.session.scalar(stmt)

    async def cut(self, stream: str, seq: int) -> int:
        """Delete a stream's rows up to ``seq``; how many went."""
        e = AuditEvent
        result: Any = await self.session.execute(
            delete(e).where(and_(e.stream == stream, e.seq <= seq))
        )
        return int(result.rowcount or 0)
