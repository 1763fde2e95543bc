"""The audit writer: the request path enqueues, a task writes batches, nothing is dropped.

- :meth:`AuditWriter.record` appends to an in-memory queue (no I/O, no await).
- :meth:`AuditWriter.run` writes a batch when ``batch_size`` rows wait or every
  ``interval`` seconds. Rows get their place in this process's hash chain (chain.py)
  when their batch is formed, and keep it whatever happens next.
- A batch that fails is retried with backoff; after ``retries`` it is appended to a
  JSON-lines *spill* file in the data dir, which is read back (and deleted) after the
  next successful write and at start. Inserts ignore rows already present, so a batch
  that was written although its commit looked failed is not doubled.
- When the queue holds ``max_queue`` rows, callers wait (``room()``, at most
  ``full_wait`` seconds) before their call goes on; past that the row is still queued.
- At shutdown :meth:`flush` writes (or spills) everything queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from sqlalchemy import BigInteger, DateTime, Float
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.chain import GENESIS, HASHED, values_hash
from gateway.audit.entry import AuditEntry
from gateway.audit.models import AuditEvent
from gateway.audit.rows import to_row
from gateway.db import Database
from gateway.observability.masking import mask_text

log = logging.getLogger("gateway.audit")

SPILL_DIR = "audit-spill"
INSERT_LOCK = 0x6D637067_696E7374  # "mcpginst": PostgreSQL advisory lock of audit inserts


class WriterMetrics(Protocol):
    """Where the writer reports its queue, batches and trouble (observability.metrics)."""

    def audit_batch(self, rows: int, seconds: float) -> None:
        """A batch of ``rows`` was written in ``seconds``."""

    def audit_rows(self, result: str, rows: int) -> None:
        """``rows`` rows were ``written``, ``spilled`` or ``reingested``."""

    def audit_write_failed(self) -> None:
        """One attempt to write a batch failed (it is retried, then spilled)."""

    def audit_waited(self, timed_out: bool) -> None:
        """A caller waited for room in a full queue (``timed_out``: it stopped waiting)."""

    def audit_queue(self, depth: Callable[[], int]) -> None:
        """``depth()`` is the queue's current length (read when scraped)."""


class Deferred(Protocol):
    """What a hot path may queue instead of an :class:`AuditEntry`: the objects it has at
    hand, turned into the entry by the writer, off the path."""

    def audit_entry(self) -> AuditEntry:
        """The entry to record."""


# A row as the writer holds it: every stored column but the position, in this order.
STORED = (*HASHED, "prev_hash", "hash")
Row = tuple[Any, ...]
_TS = STORED.index("ts")
# SQLite: one statement per 400 rows (13,600 parameters, under its 32,766): executemany
# releases and takes back the GIL around every row, which under load cost more CPU than
# the inserts themselves.
_ROWS_PER_STATEMENT = 400


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
    """This writer's chain name: host, process and a random part (a restart is a new one)."""
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{os.urandom(4).hex()}"


class AuditWriter:
    """One per process; see the module docstring."""

    def __init__(
        self,
        db: Database,
        spill_dir: Path,
        *,
        batch_size: int = 500,
        interval: float = 0.5,
        max_queue: int = 100_000,
        full_wait: float = 2.0,
        retries: int = 5,
        retry_delay: float = 0.2,
        metrics: WriterMetrics | None = None,
    ) -> None:
        self.db = db
        self.spill_dir = spill_dir
        self.batch_size = batch_size
        self.interval = interval
        self.max_queue = max_queue
        self.full_wait = full_wait
        self.retries = retries
        self.retry_delay = retry_delay
        self.metrics = metrics
        self.stream = new_stream()
        self._seq = 0
        self._last_hash = GENESIS
        self._queue: deque[AuditEntry | Deferred] = deque()
        self._id_prefix = os.urandom(10).hex()
        self._wake: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._lock = asyncio.Lock()  # one batch at a time keeps the chain in order
        self._spilled = False
        self._storing: set[asyncio.Future[None]] = set()
        self._held: list[list[Row]] = []  # batches neither stored nor spilled
        self.written = 0
        if metrics is not None:
            metrics.audit_queue(self._queue.__len__)

    # --- the request path ---------------------------------------------------------------
    def record(self, entry: AuditEntry | Deferred) -> None:
        """Queue ``entry`` (no I/O)."""
        queue = self._queue
        queue.append(entry)
        if len(queue) >= self.batch_size and self._wake is not None:
            self._wake.set()

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.max_queue

    async def room(self) -> None:
        """Wait (at most ``full_wait`` s) until the queue has room; callers whose calls
        would add to a full queue call this first."""
        if not self.full:
            return
        if self._room is None:
            self._room = asyncio.Event()
        self._room.clear()
        if self._wake is not None:
            self._wake.set()
        timed_out = False
        try:
            await asyncio.wait_for(self._room.wait(), self.full_wait)
        except TimeoutError:
            timed_out = True
            log.warning("audit queue full for %ss; going on (row kept)", self.full_wait)
        if self.metrics is not None:
            self.metrics.audit_waited(timed_out)

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- writing ------------------------------------------------------------------------
    async def run(self) -> None:
        """Write batches until cancelled (shutdown then calls :meth:`flush`)."""
        self._wake = asyncio.Event()
        try:
            await self.reingest()
        except Exception:  # the spill stays for the next try
            log.exception("could not read back spilled audit rows")
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                if self._held and not self._queue:
                    await self._write_held()
                while self._queue:
                    await self._write_next()
                    if len(self._queue) < self.batch_size:
                        break
            except Exception:  # never let the writer die: rows keep queueing behind it
                log.exception("the audit writer hit an unexpected error; going on")

    async def flush(self) -> None:
        """Write (or spill) everything queued, and wait for batches being written."""
        if self._held:
            await self._write_held()
            if self._held:
                held = sum(len(rows) for rows in self._held)
                log.critical("%d audit rows could be neither written nor spilled", held)
        while self._queue or self._storing:
            if self._storing:
                await asyncio.gather(*self._storing, return_exceptions=True)
            if self._queue:
                await self._write_next()

    async def _write_next(self) -> None:
        async with self._lock:
            queue = self._queue
            entries = [queue.popleft() for _ in range(min(self.batch_size, len(queue)))]
            if self._room is not None and not self.full:
                self._room.set()
            if not entries:
                return
            rows = [self._chained(entry) for entry in entries]
            # In a task of its own: cancelling the writer (shutdown) must not drop rows
            # that already have their place in the chain; flush() waits for it.
            task = asyncio.ensure_future(self._store(rows))
            self._storing.add(task)
            task.add_done_callback(self._storing.discard)
            await asyncio.shield(task)

    async def _store(self, rows: list[Row]) -> None:
        if await self._insert_with_retries(rows):
            if self._spilled:
                await self.reingest()
            if self._held:
                await self._write_held()
            return
        try:
            self._spill(rows)
        except OSError:
            # Neither the database nor the disk takes them: keep them in memory (they
            # have their place in the chain) and try both again with the next batch.
            log.critical("could not spill %d audit rows; keeping them in memory", len(rows))
            self._held.append(rows)

    async def _write_held(self) -> None:
        held, self._held = self._held, []
        for rows in held:
            await self._store(rows)

    def _chained(self, queued: AuditEntry | Deferred) -> Row:
        try:
            entry = queued if isinstance(queued, AuditEntry) else queued.audit_entry()
            content = to_row(entry)
        except Exception:  # a row that cannot be formed is still recorded, plainly
            log.exception("could not form an audit row")
            content = to_row(AuditEntry(action="unknown", outcome="error", error="unrecordable"))
        self._seq = seq = self._seq + 1
        # Unique without a random read per row: the stream's random part and the seq.
        values = (f"{self._id_prefix}{seq:012x}", *content, self.stream, seq)
        prev, self._last_hash = self._last_hash, values_hash(values, self._last_hash)
        return (*values, prev, self._last_hash)

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
                for start in range(0, len(rows), self.batch_size):
                    await self.insert(rows[start : start + self.batch_size])
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
