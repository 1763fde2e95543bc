"""The audit writer and the chain on both databases: batches, verify (and what it
catches), spilling when the database refuses and reading back, a full queue, rows in
flight at shutdown, retention."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from gateway.audit.chain import HASHED, row_hash
from gateway.audit.entry import AuditEntry
from gateway.audit.models import AuditBoundary, AuditEvent
from gateway.audit.rows import to_wire
from gateway.audit.service import AuditLog
from gateway.audit.sink import InlineSink
from gateway.audit.store import AuditStore, Row
from gateway.audit.writer import AuditWriter
from gateway.db import Database
from gateway.observability.masking import SecretMask

_STORE_OPTIONS = ("retries", "retry_delay")
_IDS = itertools.count()


def _log(db: Database, tmp_path: Path, spill: str = "spill", **kw: Any) -> AuditLog:
    """An audit log that stores in this process (the writer process has its own tests)."""
    store = AuditStore(db, tmp_path / spill, **{k: kw.pop(k) for k in _STORE_OPTIONS if k in kw})
    return AuditLog(db, AuditWriter(InlineSink(store), **kw))


def _store(audit: AuditLog) -> AuditStore:
    sink = audit.writer.sink
    assert isinstance(sink, InlineSink)
    return sink.store


def _row(store: AuditStore, entry: AuditEntry) -> Row:
    """``entry`` as the store would chain it (the writer's part done here)."""
    return store.chained(to_wire(entry, f"{store.stream}-{next(_IDS)}", None), ())


def _entry(i: int, **kw: Any) -> AuditEntry:
    return AuditEntry(action="tools/call", server="s", target=f"t{i}", arguments={"i": i}, **kw)


def _refusing(store: AuditStore, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make ``store``'s inserts fail (a stand-in for a database that is away) until the
    returned event is set."""
    real, up = store.insert, asyncio.Event()

    async def insert(rows: list[tuple[Any, ...]]) -> None:
        if not up.is_set():
            raise ConnectionError("database away")
        await real(rows)

    monkeypatch.setattr(store, "insert", insert)
    return up


async def _count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_batches_chain_and_verify_catches_edits_and_deletions(
    database: Database, tmp_path: Path
) -> None:
    audit = _log(database, tmp_path, batch_size=10)
    for i in range(25):
        audit.record(_entry(i, mask=SecretMask(["sealed-value"]), error="got sealed-value"))
    await audit.flush()
    report = await audit.verify()
    assert (report.ok, report.rows, report.streams) == (True, 25, 1)
    async with database.session() as session:
        errors = (await session.scalars(select(AuditEvent.error))).all()
    assert set(errors) == {"got ***"}  # the server's sealed secret is masked

    stream = audit.writer.stream
    where = (AuditEvent.stream == stream) & (AuditEvent.seq == 7)
    async with database.session() as session:  # an edit by hand
        await session.execute(update(AuditEvent).where(where).values(outcome="denied"))
    report = await audit.verify()
    assert not report.ok and report.broken is not None
    assert (report.broken.seq, report.rows) == (7, 6)
    assert "edited" in report.broken.problem

    async with database.session() as session:  # the edit, with its hash recomputed
        row = (await session.scalars(select(AuditEvent).where(where))).one()
        row.hash = row_hash({c: getattr(row, c) for c in HASHED}, row.prev_hash)
    report = await audit.verify()
    assert report.broken is not None and report.broken.seq == 8  # the next link breaks
    assert "prev_hash" in report.broken.problem

    async with database.session() as session:  # a deletion
        await session.execute(
            text("DELETE FROM audit_events WHERE seq < 3 AND stream = :s"), {"s": stream}
        )
    report = await audit.verify()
    assert report.broken is not None and report.broken.seq == 3
    assert "missing" in report.broken.problem


async def test_a_refused_write_is_spilled_then_read_back(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refusing writes is a stand-in here (the insert raises); the load
    bench (bench/audit_load.py) restarts a real PostgreSQL under load."""
    audit = _log(database, tmp_path, batch_size=5, retries=1, retry_delay=0.01)
    store = _store(audit)
    database_up = _refusing(store, monkeypatch)
    for i in range(12):
        audit.record(_entry(i))
    await audit.flush()
    spilled = list((tmp_path / "spill").glob("*.jsonl"))
    assert len(spilled) == 1 and len(spilled[0].read_bytes().splitlines()) == 12
    assert await _count(database) == 0
    database_up.set()
    audit.record(_entry(12))
    await audit.flush()  # a good write reads the spill back
    assert await _count(database) == 13
    assert not list((tmp_path / "spill").iterdir())
    report = await audit.verify()
    assert (report.ok, report.rows) == (True, 13)
    # Reading back twice (a crash between insert and delete) stores nothing twice.
    assert await store.reingest() == 0


async def test_spill_from_an_earlier_process_is_read_back_at_start(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _log(database, tmp_path, retries=0)

    _refusing(_store(first), monkeypatch)
    for i in range(3):
        first.record(_entry(i))
    await first.flush()  # the process exits with its rows spilled
    second = _log(database, tmp_path)
    task = asyncio.create_task(second.writer.run())
    try:
        for _ in range(200):
            if await _count(database) == 3:
                break
            await asyncio.sleep(0.02)
    finally:
        task.cancel()
    assert await _count(database) == 3
    assert (await second.verify()).ok


async def test_a_full_queue_makes_callers_wait_but_keeps_every_row(
    database: Database, tmp_path: Path
) -> None:
    audit = _log(database, tmp_path, max_queue=100, full_wait=0.05, batch_size=50)
    for i in range(150):
        audit.record(_entry(i))
    assert audit.full
    started = time.monotonic()
    await audit.room()  # no writer running: waits its bound, then goes on
    assert time.monotonic() - started >= 0.05
    task = asyncio.create_task(audit.writer.run())
    try:
        for i in range(150, 250):
            await audit.room()  # with the writer running, room comes
            audit.record(_entry(i))
    finally:
        task.cancel()
    await audit.flush()
    assert await _count(database) == 250


async def test_rows_being_written_at_shutdown_are_kept(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = _log(database, tmp_path, batch_size=10, interval=0.01)
    writer, store = audit.writer, _store(audit)
    real = store.insert
    started = asyncio.Event()

    async def slow(rows: list[dict[str, Any]]) -> None:
        started.set()
        await asyncio.sleep(0.2)
        await real(rows)

    monkeypatch.setattr(store, "insert", slow)
    task = asyncio.create_task(writer.run())
    for i in range(10):
        audit.record(_entry(i))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()  # shutdown cancels the writer mid-insert...
    await asyncio.gather(task, return_exceptions=True)
    for i in range(10, 15):
        audit.record(_entry(i))
    await audit.flush()  # ...and its flush waits for that batch and writes the rest
    assert await _count(database) == 15
    assert (await audit.verify()).ok


async def test_retention_prunes_old_rows_and_the_rest_still_verifies(
    database: Database, tmp_path: Path
) -> None:
    audit = _log(database, tmp_path)
    old = time.time() - 100 * 86_400
    for i in range(5):
        audit.record(_entry(i, ts=old + i))
    for i in range(5, 8):
        audit.record(_entry(i))
    await audit.flush()
    dry = await audit.prune(90, dry_run=True)
    assert (dry.rows, dry.streams) == (5, 1) and await _count(database) == 8
    done = await audit.prune(90)
    assert done.rows == 5 and await _count(database) == 3
    async with database.session() as session:
        boundary = (await session.scalars(select(AuditBoundary))).one()
    assert boundary.seq == 5 and boundary.rows == 5
    report = await audit.verify()
    assert (report.ok, report.rows) == (True, 3)
    assert (await audit.prune(90)).rows == 0


async def test_rows_neither_stored_nor_spilled_stay_in_memory_until_one_works(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refusing is a stand-in (the insert raises); the spill directory
    cannot be made (a file is in its way), as on a full or read-only disk."""
    (tmp_path / "blocked").write_text("a file where the spill directory would go")
    audit = _log(database, tmp_path, "blocked/spill", retries=0, batch_size=4)
    store = _store(audit)
    database_up = _refusing(store, monkeypatch)
    for i in range(6):
        audit.record(_entry(i))
    await audit.flush()
    assert await _count(database) == 0 and store.held == 6
    database_up.set()
    audit.record(_entry(6))
    await audit.flush()
    assert await _count(database) == 7 and not store.held
    assert (await audit.verify()).ok


async def test_awkward_values_round_trip_and_a_batch_written_twice_is_kept_once(
    database: Database, tmp_path: Path
) -> None:
    """NUL characters (PostgreSQL's text refuses them), escapes, non-ASCII text, big
    numbers; then the same batch again, as after a commit whose answer was lost."""
    audit = _log(database, tmp_path)
    store = _store(audit)
    arguments = {"s": 'a\x00b\\c"d', "n": 2**40, "f": 1.5, "u": "é✓", "l": [None, True]}
    odd = AuditEntry(
        action="tools/call",
        target="t\x00x",
        error="bad\x00 byte",
        arguments=arguments,
        latency_ms=1.23456,
        bytes_out=10,
    )
    rows = [_row(store, odd), *(_row(store, _entry(i)) for i in range(3))]
    await store.insert(rows)
    await store.insert(rows)
    await store.insert(rows[2:])
    assert await _count(database) == 4
    assert (await audit.verify()).ok
    async with database.session() as session:
        row = (await session.scalars(select(AuditEvent).where(AuditEvent.seq == 1))).one()
    assert (row.target, row.error, row.latency_ms, row.tokens) == ("tx", "bad byte", 1.235, 3)
    assert row.arguments is not None and json.loads(row.arguments) == arguments


async def test_a_batch_waits_for_another_writers_open_batch_and_lands_after_it(
    database: Database, tmp_path: Path
) -> None:
    """Two replicas' writers: positions follow commit order, so the live tail (rows after
    position p) cannot skip a batch that commits late below p."""
    first = _store(_log(database, tmp_path, "a"))
    second = _store(_log(database, tmp_path, "b"))
    early, late = [_row(first, _entry(1))], [_row(second, _entry(2))]
    async with first.transaction() as conn:
        await first.insert_into(conn, early)
        waiting = asyncio.create_task(second.insert(late))
        await asyncio.sleep(0.5)
        assert not waiting.done()  # held until the first batch commits
    await waiting
    async with database.session() as session:
        positions = dict((await session.execute(select(AuditEvent.id, AuditEvent.pos))).all())
    assert positions[early[0][0]] < positions[late[0][0]]


async def test_a_failed_write_is_logged_with_the_databases_reason_only(
    database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The driver's message, short: not SQLAlchemy's statement and parameters (a batch's
    JSON is hundreds of kilobytes)."""
    audit = _log(database, tmp_path, retries=0)
    writer, store = audit.writer, _store(audit)
    async with database.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE audit_events RENAME TO audit_away"))
    try:
        writer.record(_entry(1))
        await writer.flush()
    finally:
        async with database.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE audit_away RENAME TO audit_events"))
    [line] = [r.getMessage() for r in caplog.records if "could not write" in r.getMessage()]
    assert "audit_events" in line and "[SQL" not in line and len(line) < 500, line
    assert await store.reingest() == 1  # and the spilled row is not lost
