"""The audit store: wired rows in, chained rows stored, spilled or held, never dropped.

- :meth:`AuditStore.put` masks and forms a batch's rows (rows.py), gives each its place
  in this store's hash chain (chain.py) and writes them in one transaction.
- A batch that fails is retried with backoff; after ``retries`` it is appended to a
  JSON-lines *spill* file in the data dir, which is read back (and deleted) after the
  next successful write and at start. Inserts ignore rows already present, so a batch
  that was written although its commit looked failed is not doubled.
- Rows that neither the database nor the disk takes stay in memory (they have their
  place in the chain) and are tried again with the next batch.

It runs where the writer puts it: in the audit writer process (the default for a
serving gateway, see sink.py) or in the process that records (CLI, workers, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import BigInteger, DateTime, Float, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.chain import GENESIS, HASHED, values_hash
from gateway.audit.forming import WIRE_LENGTH, Wire, from_wire
from gateway.audit.models import AuditEvent
from gateway.db import Database
from gateway.observability.masking import mask_text

log = logging.getLogger("gateway.audit")

SPILL_DIR = "audit-spill"
INSERT_LOCK = 0x6D637067_696E7374  # "mcpginst": PostgreSQL advisory lock of audit inserts

# A row as the store holds it: every stored column but the position, in this order.
STORED = (*HASHED, "prev_hash", "hash")
Row = tuple[Any, ...]
Masks = Sequence[Sequence[str]]
_TS = STORED.index("ts")
# SQLite: one statement per 400 rows (13,600 parameters, under its 32,766): executemany
# releases and takes back the GIL around every row, which under load cost more CPU than
# the inserts themselves.
_ROWS_PER_STATEMENT = 400


class StoreMetrics(Protocol):
    """Where the store reports its batches and trouble (observability.metrics)."""

    def audit_batch(self, rows: int, seconds: float) -> None:
        """A batch of ``rows`` was written in ``seconds``."""

    def audit_rows(self, result: str, rows: int) -> None:
        """``rows`` rows were ``written``, ``spilled`` or ``reingested``."""

    def audit_write_failed(self) -> None:
        """One attempt to write a batch failed (it is retried, then spilled)."""


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    one = "(" + ", ".join(["?"] * len(STORED)) + ")"
    # Column names are constants and every value is a bound parameter.
    return (
        f"INSERT INTO audit_events ({', '.join(STORED)}) VALUES "  # noqa: S608
        + ", ".join([one] * rows)
        + " ON CONFLICT DO NOTHING"
    )


def _pg_insert_sql() -> str:
    """PostgreSQL: the whole batch as one JSON array of rows (one parameter, serialised
    by orjson in C; the server takes it apart), rows already stored skipped."""
    columns = AuditEvent.__table__.columns
    casts = {DateTime: "timestamp", BigInteger: "bigint", Float: "double precision"}
    values = []
    for i, name in enumerate(STORED):
        kind = columns[name].type
        kind = getattr(kind, "impl", kind)  # UTCDateTime is a DateTime underneath
        cast = next((c for t, c in casts.items() if isinstance(kind, t)), None)
        values.append(f"(r->>{i})::{cast}" if cast else f"r->>{i}")
    return (
        f"INSERT INTO audit_events ({', '.join(STORED)}) "  # noqa: S608 - constants only
        f"SELECT {', '.join(values)} FROM jsonb_array_elements(%s::jsonb) AS r "
        "ON CONFLICT DO NOTHING"
    )


_INSERT_PG = _pg_insert_sql()


def _sqlite_ts(ts: datetime) -> str:
    """``ts`` as SQLAlchemy stores a UTCDateTime on SQLite: naive UTC text with
    microseconds (so comparisons with its parameters hold)."""
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    # Cut "+00:00" off the aware form: a third of the time of making a naive copy first.
    return ts.isoformat(" ", "microseconds")[:26]


def _why(exc: BaseException) -> str:
    """A failed write's reason for the log: the driver's own message (SQLAlchemy's
    wrapper would add the statement and every parameter), masked and cut short."""
    cause = getattr(exc, "orig", None) or exc
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return (
        f"{type(cause).__name__}: {mask_text(message)[:300]}" if message else type(cause).__name__
    )


def new_stream() -> str:
    """A chain name: host, process and a random part (a restart is a new one)."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{os.urandom(4).hex()}"


class AuditStore:
    """One per writing process; see the module docstring."""

    def __init__(
        self,
        db: Database,
        spill_dir: Path,
        *,
        retries: int = 5,
        retry_delay: float = 0.2,
        reingest_batch: int = 500,
        metrics: StoreMetrics | None = None,
    ) -> None:
        self.db = db
        self.spill_dir = spill_dir
        self.retries = retries
        self.retry_delay = retry_delay
        self.reingest_batch = reingest_batch
        self.metrics = metrics
        self.stream = new_stream()
        self._seq = 0
        self._last_hash = GENESIS
        self._lock = asyncio.Lock()  # one batch at a time keeps the chain in order
        self._spilled = False
        self._held: list[list[Row]] = []  # batches neither stored nor spilled
        self.written = 0

    @property
    def held(self) -> int:
        """Rows neither stored nor spilled (kept in memory, tried again)."""
        return sum(len(rows) for rows in self._held)

    async def put(self, wires: Sequence[Wire], masks: Masks, *, resend: bool = False) -> bool:
        """Store ``wires`` (``masks``: the secrets their last field indexes); True when
        they are safe (stored or spilled), False when held in memory. ``resend``: some may
        already be stored (a writer process died before saying so): those are skipped."""
        async with self._lock:
            if resend:
                wires = await self._unstored(wires)
            if not wires:
                return True
            rows = [self.chained(wire, masks) for wire in wires]
            return await self._store(rows)

    def chained(self, wire: Wire, masks: Masks) -> Row:
        """``wire`` formed and given the next place in this store's chain."""
        try:
            content = from_wire(wire, masks)
        except Exception:  # a row that cannot be formed is still recorded, plainly
            log.exception("could not form an audit row")
            content = from_wire(_unrecordable(wire), ())
        self._seq = seq = self._seq + 1
        values = (*content, self.stream, seq)
        prev, self._last_hash = self._last_hash, values_hash(values, self._last_hash)
        return (*values, prev, self._last_hash)

    async def retry_held(self) -> None:
        """Try the rows held in memory again (after the database or disk came back)."""
        async with self._lock:
            await self._write_held()

    async def _unstored(self, wires: Sequence[Wire]) -> list[Wire]:
        ids = [wire[0] for wire in wires]
        try:
            async with self.db.session() as session:
                stored = set((await session.scalars(select(AuditEvent.id).where(
                    AuditEvent.id.in_(ids)))).all())  # fmt: skip
        except Exception as exc:  # cannot tell: write them (inserts skip stored ids)
            log.warning("could not check which resent audit rows are stored: %s", _why(exc))
            return list(wires)
        return [wire for wire in wires if wire[0] not in stored]

    async def _store(self, rows: list[Row]) -> bool:
        if await self._insert_with_retries(rows):
            if self._spilled:
                await self.reingest()
            if self._held:
                await self._write_held()
            return True
        try:
            self._spill(rows)
            return True
        except OSError:
            # Neither the database nor the disk takes them: keep them in memory (they
            # have their place in the chain) and try both again with the next batch.
            log.critical("could not spill %d audit rows; keeping them in memory", len(rows))
            self._held.append(rows)
            return False

    async def _write_held(self) -> None:
        held, self._held = self._held, []
        for rows in held:
            await self._store(rows)

    async def _insert_with_retries(self, rows: list[Row]) -> bool:
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                await self.insert(rows)
            except Exception as exc:
                if self.metrics is not None:
                    self.metrics.audit_write_failed()
                log.warning(
                    "could not write %d audit rows (attempt %d of %d): %s",
                    len(rows),
                    attempt + 1,
                    self.retries + 1,
                    _why(exc),
                )
                if attempt < self.retries:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                continue
            self.written += len(rows)
            if self.metrics is not None:
                self.metrics.audit_batch(len(rows), time.perf_counter() - started)
                self.metrics.audit_rows("written", len(rows))
            return True
        return False

    async def insert(self, rows: list[Row]) -> None:
        """Insert ``rows``, skipping any already stored (by id or by place in a stream):
        a retry after a commit whose answer was lost, a spill read back twice."""
        async with self.transaction() as conn:
            await self.insert_into(conn, rows)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that inserts audit rows: one at a time across replicas, so rows
        get their positions in commit order and a live tail reading "after position p"
        misses no row that a slower transaction commits later (SQLite's write lock does
        the same for it)."""
        async with self.db.engine.begin() as conn:
            if self.db.dialect == "postgresql":
                await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (INSERT_LOCK,))
            yield conn

    async def insert_into(self, conn: AsyncConnection, rows: list[Row]) -> None:
        """Straight to the driver: SQLAlchemy's per-row parameter processing cost more
        than the rest of a row's audit put together."""
        if self.db.dialect == "postgresql":
            await conn.exec_driver_sql(_INSERT_PG, (orjson.dumps(rows).decode(),))
            return
        for start in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[start : start + _ROWS_PER_STATEMENT]
            params: list[Any] = []
            for row in chunk:
                params += row
                params[_TS - len(STORED)] = _sqlite_ts(row[_TS])
            await conn.exec_driver_sql(_insert_sql(len(chunk)), tuple(params))

    # --- spilling -----------------------------------------------------------------------
    def _spill(self, rows: list[Row]) -> None:
        self.spill_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.spill_dir / f"{self.stream}.jsonl"
        with open(path, "ab") as out:
            for row in rows:
                out.write(orjson.dumps(dict(zip(STORED, row, strict=True))) + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(path, 0o600)
        self._spilled = True
        log.error("audit database unreachable: spilled %d rows to %s", len(rows), path)
        if self.metrics is not None:
            self.metrics.audit_rows("spilled", len(rows))

    async def reingest(self) -> int:
        """Write rows spilled by this or an earlier process back to the database; a file
        is deleted once all its rows are stored (kept, to try again, otherwise)."""
        if not self.spill_dir.is_dir():
            self._spilled = False
            return 0
        total = 0
        for path in sorted(self.spill_dir.glob("*.jsonl")):
            claimed = path.with_suffix(f".{os.getpid()}.ingesting")
            try:
                path.rename(claimed)  # another process may be reading it back too
            except OSError:
                continue
            try:
                rows = list(_read_spill(claimed))
                for start in range(0, len(rows), self.reingest_batch):
                    await self.insert(rows[start : start + self.reingest_batch])
            except Exception:
                log.warning("could not read back spilled audit rows from %s", path, exc_info=True)
                claimed.rename(path)
                return total
            claimed.unlink()
            total += len(rows)
            log.info("read back %d spilled audit rows from %s", len(rows), path.name)
        self._spilled = False
        if total and self.metrics is not None:
            self.metrics.audit_rows("reingested", total)
        return total


def _unrecordable(wire: Wire) -> Wire:
    """A row that could not be formed, recorded plainly under its id and time."""
    plain: list[Any] = [None] * WIRE_LENGTH
    when = wire[1] if len(wire) > 1 and isinstance(wire[1], int | float) else time.time()
    plain[0], plain[1] = wire[0] if wire and isinstance(wire[0], str) else _fresh_id(), when
    plain[16], plain[23], plain[25] = "unknown", "error", "unrecordable"
    return tuple(plain)


def _fresh_id() -> str:
    return os.urandom(16).hex()


def _read_spill(path: Path) -> Iterable[Row]:
    with open(path, "rb") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                row: dict[str, Any] = orjson.loads(line)
            except orjson.JSONDecodeError:  # a line cut by a crash mid-write
                log.error("skipping a damaged line in %s", path)
                continue
            row["ts"] = datetime.fromisoformat(row["ts"])
            yield tuple(row[c] for c in STORED)
