"""The audit trail's use cases: record (through the writer), search, export, tail,
usage, verify and prune. Every pillar records through :meth:`AuditLog.record`."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

import orjson
from sqlalchemy import case, func, select, text

from gateway.audit.chain import GENESIS, HASHED, row_hash
from gateway.audit.entry import AuditEntry
from gateway.audit.models import AuditBoundary, AuditEvent
from gateway.audit.repository import AuditFilter, AuditRepository, conditions
from gateway.audit.schemas import AuditItem, BrokenLink, PruneOut, UsageRow, VerifyOut
from gateway.audit.writer import AuditWriter, Deferred
from gateway.auth.principal import Principal
from gateway.backend_errors import BackendTimeout
from gateway.db import Database
from gateway.errors import Forbidden, InvalidInput, Unauthenticated

log = logging.getLogger("gateway.audit")

UsageBy = Literal["server", "tool", "user", "team"]
_USAGE_COLUMNS = {
    "server": AuditEvent.server,
    "tool": AuditEvent.target,
    "user": AuditEvent.actor_email,
    "team": AuditEvent.actor_team,
}
EXPORT_PAGE = 1000
CSV_COLUMNS = (
    "id", "ts", "request_id", "trace_id", "actor_user_id", "actor_email", "actor_key_prefix",
    "actor_team", "client_ip", "action", "route", "server", "target", "via", "arguments",
    "outcome", "error_code", "error", "latency_ms", "bytes_in", "bytes_out", "tokens",
)  # fmt: skip
_PRUNE_LOCK = 0x6D637067_61756474  # "mcpgaudt": one replica prunes at a time (PostgreSQL)


def encode_cursor(ts: datetime, event_id: str) -> str:
    raw = orjson.dumps([ts.isoformat(), event_id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (ts, id) key of a cursor; :class:`InvalidInput` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts, event_id = orjson.loads(raw)
        when = datetime.fromisoformat(ts)
        if not isinstance(event_id, str) or when.tzinfo is None:
            raise ValueError
        return when, event_id
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise InvalidInput(
            "cursor is not one this API gave out (use next_cursor as is)", code="bad_cursor"
        ) from None


class Tracked:
    """``async with audit.track(...) as entry``: times the block and records ``entry``
    with the outcome the block ended in (the exception's code and message, masked)."""

    __slots__ = ("entry", "log", "started")

    def __init__(self, log: AuditLog, entry: AuditEntry) -> None:
        self.log, self.entry, self.started = log, entry, time.perf_counter()

    async def __aenter__(self) -> AuditEntry:
        return self.entry

    async def __aexit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        entry = self.entry
        entry.latency_ms = (time.perf_counter() - self.started) * 1000
        entry.ts = time.time()
        if exc is not None:
            entry.outcome = outcome_of(exc)
            entry.error = str(getattr(exc, "message", None) or exc) or type(exc).__name__
            code = getattr(exc, "code", None)
            entry.error_code = None if code is None else str(code)
        self.log.record(entry)


def outcome_of(exc: BaseException) -> str:
    """The audit outcome of a block that raised ``exc``."""
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, Forbidden | Unauthenticated):
        return "denied"
    if isinstance(exc, TimeoutError | BackendTimeout):
        return "timeout"
    return "error"


class AuditLog:
    """The platform's one audit trail (see the package docstring)."""

    def __init__(
        self, db: Database | None, writer: AuditWriter | None, *, enabled: bool = True
    ) -> None:
        self._db = db
        self._writer = writer
        self.enabled = enabled and writer is not None

    @classmethod
    def off(cls) -> AuditLog:
        """A log that records nothing (services built without one, in tests)."""
        return cls(None, None, enabled=False)

    @property
    def db(self) -> Database:
        if self._db is None:
            raise RuntimeError("this audit log has no database (AuditLog.off())")
        return self._db

    @property
    def writer(self) -> AuditWriter:
        if self._writer is None:
            raise RuntimeError("this audit log has no writer (AuditLog.off())")
        return self._writer

    # --- recording ----------------------------------------------------------------------
    def record(self, entry: AuditEntry | Deferred) -> None:
        """Queue ``entry`` for writing (no I/O; see writer.py)."""
        # The writer read plainly (not through the property): this runs on every call.
        writer = self._writer
        if self.enabled and writer is not None:
            writer.record(entry)

    def track(self, action: str, principal: Principal | None, **fields: Any) -> Tracked:
        """Record ``action`` when the ``async with`` block ends, with its outcome."""
        return Tracked(self, AuditEntry(action=action, principal=principal, **fields))

    def change(
        self,
        action: str,
        principal: Principal | None,
        target: str | None,
        *,
        old: Any = None,
        new: Any = None,
        **fields: Any,
    ) -> None:
        """Record an admin change (``server.create``, ``key.revoke``…) with the old and
        new values (masked by the writer)."""
        detail = {k: v for k, v in (("old", old), ("new", new)) if v is not None}
        self.record(
            AuditEntry(
                action=action, principal=principal, target=target, detail=detail or None, **fields
            )
        )

    @property
    def full(self) -> bool:
        writer = self._writer  # every call asks (the record stage): no property hop
        return self.enabled and writer is not None and writer.full

    async def room(self) -> None:
        """Wait, boundedly, while the queue is full (see AuditWriter.room)."""
        await self.writer.room()

    async def flush(self) -> None:
        """Return once everything recorded so far is stored (or spilled)."""
        if self._writer is not None:
            await self._writer.flush()

    async def close(self) -> None:
        """Flush and stop the writer's sink (shutdown)."""
        if self._writer is not None:
            await self._writer.close()

    # --- reading ------------------------------------------------------------------------
    @staticmethod
    def visible(principal: Principal, f: AuditFilter) -> AuditFilter:
        """``f`` limited to what ``principal`` may see: everything for an admin, else the
        rows of their teams and their own."""
        principal.require("audit:read")
        if principal.is_admin:
            return f
        return replace(f, visible_teams=principal.team_ids, visible_user=principal.user_id)

    async def search(
        self, principal: Principal, f: AuditFilter, limit: int, cursor: str | None = None
    ) -> tuple[list[AuditItem], str | None]:
        """A page newest first and the cursor of the next (None: no more)."""
        f = self.visible(principal, f)
        after = decode_cursor(cursor) if cursor else None
        await self.flush()  # what this process queued is visible at once
        async with self.db.session() as session:
            rows = await AuditRepository(session).page(f, limit + 1, after)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].ts, rows[-1].id) if more and rows else None
        return [AuditItem.of(r) for r in rows], next_cursor

    async def of_target(
        self, target: str, action: str, *, limit: int, offset: int
    ) -> tuple[list[AuditItem], int]:
        """Rows about ``target`` (a sandbox…) newest first, with their count; the caller
        has checked the principal may see ``target``'s history."""
        f = AuditFilter(target=target, action=action)
        await self.flush()
        async with self.db.session() as session:
            repo = AuditRepository(session)
            rows = await repo.page(f, limit, offset=offset)
            return [AuditItem.of(r) for r in rows], await repo.count(f)

    async def get(self, principal: Principal, event_id: str) -> AuditItem | None:
        f = self.visible(principal, AuditFilter())
        await self.flush()
        async with self.db.session() as session:
            row = await AuditRepository(session).get(event_id, f)
        return None if row is None else AuditItem.of(row)

    async def export(
        self, principal: Principal, f: AuditFilter, fmt: Literal["jsonl", "csv"]
    ) -> AsyncIterator[bytes]:
        """Every matching row, newest first, a page at a time (never all in memory)."""
        f = self.visible(principal, f)
        await self.flush()
        return self._export(f, fmt)

    async def _export(self, f: AuditFilter, fmt: str) -> AsyncIterator[bytes]:
        after: tuple[datetime, str] | None = None
        if fmt == "csv":
            yield _csv_line(CSV_COLUMNS)
        while True:
            async with self.db.session() as session:
                rows = await AuditRepository(session).page(f, EXPORT_PAGE, after)
            if not rows:
                return
            if fmt == "csv":
                yield b"".join(_csv_row(r) for r in rows)
            else:
                yield b"".join(AuditItem.of(r).model_dump_json().encode() + b"\n" for r in rows)
            if len(rows) < EXPORT_PAGE:
                return
            after = (rows[-1].ts, rows[-1].id)

    async def tail(
        self, principal: Principal, f: AuditFilter, poll: float = 1.0, backlog: int = 0
    ) -> AsyncIterator[AuditItem]:
        """Rows as they are stored (from every replica: the database is polled), after
        the ``backlog`` newest ones."""
        f = self.visible(principal, f)
        async with self.db.session() as session:
            repo = AuditRepository(session)
            pos = await repo.last_pos()
            if backlog:
                older = await repo.page(f, backlog)
                for row in reversed(older):
                    yield AuditItem.of(row)
        while True:
            async with self.db.session() as session:
                rows = await AuditRepository(session).newer(f, pos, 500)
            for row in rows:
                pos = row.pos
                yield AuditItem.of(row)
            if len(rows) < 500:
                await asyncio.sleep(poll)

    async def usage(
        self,
        principal: Principal,
        by: UsageBy,
        since: datetime | None,
        until: datetime | None,
        server: str | None = None,
    ) -> list[UsageRow]:
        """Tool calls by ``by`` over [since, until): calls, errors, p50/p95, tokens."""
        f = self.visible(
            principal, AuditFilter(action="tools/call", since=since, until=until, server=server)
        )
        key = _USAGE_COLUMNS[by]
        await self.flush()
        stmt: Any = select(
            key,
            func.count(),
            func.sum(case((AuditEvent.outcome != "ok", 1), else_=0)),
            func.coalesce(func.sum(AuditEvent.tokens), 0),
        )
        postgres = self.db.dialect == "postgresql"
        if postgres:
            stmt = stmt.add_columns(
                func.percentile_cont(0.5).within_group(AuditEvent.latency_ms),
                func.percentile_cont(0.95).within_group(AuditEvent.latency_ms),
            )
        stmt = stmt.where(*conditions(f)).group_by(key).order_by(func.count().desc()).limit(1000)
        async with self.db.session() as session:
            result = (await session.execute(stmt)).all()
            out = []
            for row in result:
                if postgres:
                    p50, p95 = row[4], row[5]
                else:
                    lat = select(AuditEvent.latency_ms).where(
                        *conditions(f), key == row[0], AuditEvent.latency_ms.is_not(None)
                    )
                    values = [v for v in (await session.scalars(lat)).all() if v is not None]
                    p50, p95 = _percentiles(sorted(values))
                out.append(
                    UsageRow(
                        key=row[0],
                        calls=row[1],
                        errors=int(row[2] or 0),
                        p50_ms=None if p50 is None else round(float(p50), 3),
                        p95_ms=None if p95 is None else round(float(p95), 3),
                        tokens=int(row[3] or 0),
                    )
                )
        return out

    # --- the chain and retention --------------------------------------------------------
    async def call_counts(
        self,
        since: datetime,
        until: datetime | None = None,
        *,
        after: int | None = None,
        upto: int | None = None,
    ) -> dict[tuple[str, str], int]:
        """Tool calls at or after ``since`` (and before ``until``) by (server, tool),
        every caller's, among the rows stored after position ``after`` and up to ``upto``
        (for tool search's usage boost, read periodically off the request path)."""
        e = AuditEvent
        terms = [e.action == "tools/call", e.ts >= since]
        terms += [e.server.is_not(None), e.target.is_not(None)]
        if until is not None:
            terms.append(e.ts < until)
        if after is not None:
            terms.append(e.pos > after)
        if upto is not None:
            terms.append(e.pos <= upto)
        stmt = select(e.server, e.target, func.count()).where(*terms).group_by(e.server, e.target)
        async with self.db.session() as session:
            rows = (await session.execute(stmt)).all()
        return {(str(server), str(tool)): int(n) for server, tool, n in rows}

    async def last_position(self) -> int:
        """The position of the newest stored row (0: none)."""
        async with self.db.session() as session:
            return await AuditRepository(session).last_pos()

    async def verify(self, since: datetime | None = None) -> VerifyOut:
        """Recompute every stream's chain; the first broken link, if any (chain.py)."""
        await self.flush()
        rows = streams = 0
        heads: dict[str, str] = {}
        async with self.db.session() as session:
            repo = AuditRepository(session)
            bounds = await repo.boundaries()
            stream: str | None = None
            prev, expect_seq = GENESIS, 1
            result = await session.stream_scalars(repo.chain_order(since))
            async for found in result:
                e = cast(AuditEvent, found)
                if e.stream != stream:
                    stream, streams = e.stream, streams + 1
                    bound = bounds.get(e.stream)
                    if since is not None:  # the chain is checked from here on
                        prev, expect_seq = e.prev_hash, e.seq
                    elif bound is not None:
                        prev, expect_seq = bound.hash, bound.seq + 1
                    else:
                        prev, expect_seq = GENESIS, 1
                problem = None
                if e.seq != expect_seq:
                    problem = f"row {expect_seq} of the stream is missing"
                elif e.prev_hash != prev:
                    problem = "its prev_hash is not the hash of the row before it"
                elif row_hash(_columns(e), e.prev_hash) != e.hash:
                    problem = "its content does not match its hash (edited)"
                if problem is not None:
                    broken = BrokenLink(stream=e.stream, seq=e.seq, id=e.id, problem=problem)
                    return VerifyOut(
                        ok=False, rows=rows, streams=streams, heads=heads, broken=broken
                    )
                rows += 1
                prev, expect_seq = e.hash, e.seq + 1
                heads[e.stream] = e.hash
        return VerifyOut(ok=True, rows=rows, streams=streams, heads=heads, broken=None)

    async def prune(self, retention_days: float, *, dry_run: bool = False) -> PruneOut:
        """Delete rows older than ``retention_days``, stream by stream, recording each cut
        (seq and hash) so the rest still verifies. One replica at a time."""
        cutoff = datetime.now(UTC) - timedelta(days=retention_days)
        await self.flush()
        total = streams = 0
        async with self.db.session() as session:
            if self.db.dialect == "postgresql" and not dry_run:
                locked = await session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _PRUNE_LOCK}
                )
                if not locked:
                    return PruneOut(cutoff=cutoff, dry_run=dry_run, rows=0, streams=0)
            repo = AuditRepository(session)
            for stream, seq, count in await repo.prunable(cutoff):
                streams += 1
                total += count
                if dry_run:
                    continue
                last_hash = await repo.hash_at(stream, seq)
                await repo.cut(stream, seq)
                bound = await session.get(AuditBoundary, stream)
                if bound is None:
                    bound = AuditBoundary(stream=stream, rows=0)
                    session.add(bound)
                bound.seq, bound.hash = seq, last_hash or GENESIS
                bound.pruned_at, bound.rows = datetime.now(UTC), (bound.rows or 0) + count
        return PruneOut(cutoff=cutoff, dry_run=dry_run, rows=total, streams=streams)

    async def run_pruner(self, retention_days: float, interval: float = 86_400.0) -> None:
        """Prune once a day (first a minute after start) until cancelled."""
        await asyncio.sleep(min(60.0, interval))
        while True:
            try:
                await self.prune(retention_days)
            except Exception:  # the next day tries again
                log.warning("audit prune failed", exc_info=True)
            await asyncio.sleep(interval)


def _columns(e: AuditEvent) -> dict[str, Any]:
    return {c: getattr(e, c) for c in HASHED}


def _percentiles(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None

    def at(q: float) -> float:  # linear interpolation, as percentile_cont
        k = (len(values) - 1) * q
        lo = int(k)
        hi = min(lo + 1, len(values) - 1)
        return values[lo] + (values[hi] - values[lo]) * (k - lo)

    return at(0.5), at(0.95)


def _csv_cell(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _csv_row(e: AuditEvent) -> bytes:
    return _csv_line([_csv_cell(getattr(e, c)) for c in CSV_COLUMNS])


def _csv_line(cells: Any) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(["" if c is None else c for c in cells])
    return buf.getvalue().encode()
