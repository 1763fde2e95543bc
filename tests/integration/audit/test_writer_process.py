"""The audit writer process (a serving gateway's default): rows stored there, masked and
chained; a killed process replaced with no row lost or doubled; a process that cannot
start or keeps dying given up for storing in the gateway; SIGTERM of `mcpgw serve`
leaves every row stored and no process behind. Real child processes, real databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.audit.entry import AuditEntry
from gateway.audit.models import AuditEvent
from gateway.audit.rows import to_wire
from gateway.audit.service import AuditLog
from gateway.audit.sink import ProcessSink
from gateway.audit.store import AuditStore
from gateway.audit.writer import AuditWriter
from gateway.db import Database
from gateway.observability.masking import SecretMask
from tests.support import BOOT, Server, wait_for


class _Metrics:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.rows: dict[str, int] = {}

    def audit_batch(self, rows: int, seconds: float) -> None:
        self.batches.append(rows)

    def audit_rows(self, result: str, rows: int) -> None:
        self.rows[result] = self.rows.get(result, 0) + rows

    def audit_write_failed(self) -> None:
        pass

    def audit_waited(self, timed_out: bool) -> None:
        pass

    def audit_queue(self, depth: Any) -> None:
        pass


def _log(db: Database, tmp_path: Path, **kw: Any) -> tuple[AuditLog, ProcessSink]:
    metrics = _Metrics()
    sink = ProcessSink(db, tmp_path / "spill", metrics=metrics, log_format="console", **kw)
    writer = AuditWriter(sink, batch_size=50, interval=0.02, metrics=metrics)
    return AuditLog(db, writer), sink


@contextlib.asynccontextmanager
async def _running(
    db: Database, tmp_path: Path, **kw: Any
) -> AsyncIterator[tuple[AuditLog, ProcessSink]]:
    """An audit log whose writer runs (and hands batches to a writer process) inside
    the block, closed after it (the process ends)."""
    audit, sink = _log(db, tmp_path, **kw)
    task = asyncio.create_task(audit.writer.run())
    try:
        yield audit, sink
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await audit.close()


def _entry(i: int, **kw: Any) -> AuditEntry:
    kw.setdefault("arguments", {"i": i})
    return AuditEntry(action="tools/call", server="s", target=f"t{i}", **kw)


async def _count(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


async def test_rows_are_masked_chained_and_stored_by_the_writer_process(
    database: Database, tmp_path: Path
) -> None:
    async with _running(database, tmp_path) as (audit, sink):
        mask = SecretMask(["sealed-value-123"])
        for i in range(120):
            audit.record(_entry(i, mask=mask, error="echoed sealed-value-123"))
        audit.record(_entry(120, arguments={"api_key": "abcdef", "q": "ok"}))
        await audit.flush()
        assert sink.pid is not None and sink.pid != os.getpid()
        assert await _count(database) == 121
        report = await audit.verify()
        assert (report.ok, report.rows, report.streams) == (True, 121, 1)
        async with database.session() as session:
            errors = set((await session.scalars(select(AuditEvent.error))).all())
            streams = set((await session.scalars(select(AuditEvent.stream))).all())
            args = (await session.scalars(select(AuditEvent.arguments).where(
                AuditEvent.target == "t120"))).one()  # fmt: skip
        assert errors == {"echoed ***", None}
        assert streams == {sink.stream} and str(sink.pid) in sink.stream
        assert '"api_key":"***"' in (args or "")
        assert audit.writer.metrics is not None
        assert sum(sink.metrics.batches) == 121  # type: ignore[union-attr]
    assert sink._proc is not None and sink._proc.returncode == 0  # it exited by itself


async def test_a_killed_writer_process_is_replaced_and_no_row_is_lost_or_doubled(
    database: Database, tmp_path: Path
) -> None:
    async with _running(database, tmp_path) as (audit, sink):
        for i in range(200):
            audit.record(_entry(i))
        await audit.flush()
        first = sink.pid
        assert first is not None
        for i in range(200, 2000):
            audit.record(_entry(i))
        await asyncio.sleep(0.05)  # some batches handed over, some stored, some not
        os.kill(first, signal.SIGKILL)
        for i in range(2000, 2500):
            audit.record(_entry(i))
        await audit.flush()
        assert sink.restarts == 1 and sink.pid not in (None, first)
        assert await _count(database) == 2500
        async with database.session() as session:
            targets = (await session.scalars(select(AuditEvent.target))).all()
        assert sorted(targets) == sorted(f"t{i}" for i in range(2500))  # none twice
        report = await audit.verify()
        assert report.ok and report.rows == 2500 and report.streams == 2


async def test_rows_a_dead_process_stored_are_skipped_when_sent_again(
    database: Database, tmp_path: Path
) -> None:
    """What a new writer process does with batches sent again: rows the dead one stored
    (but did not acknowledge) are skipped, so its chain has no gap."""
    dead, fresh = AuditStore(database, tmp_path / "a"), AuditStore(database, tmp_path / "b")
    wires = [to_wire(_entry(i), f"row-{i}", None) for i in range(6)]
    assert await dead.put(wires[:4], ())
    assert await fresh.put(wires, (), resend=True)
    async with database.session() as session:
        rows = (await session.execute(select(AuditEvent.stream, AuditEvent.seq))).all()
    assert sorted(seq for stream, seq in rows if stream == fresh.stream) == [1, 2]
    assert (await AuditLog(database, None).verify()).ok


@pytest.mark.parametrize(
    "command",
    [
        ("/nonexistent/python", "-m", "gateway.audit.child"),  # cannot start
        (sys.executable, "-c", "import sys; sys.exit(3)"),  # dies at once, again and again
    ],
    ids=["cannot-start", "keeps-dying"],
)
async def test_the_gateway_stores_rows_itself_when_the_process_will_not_run(
    database: Database, tmp_path: Path, command: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    async with _running(database, tmp_path, command=command) as (audit, sink):
        for i in range(30):
            audit.record(_entry(i))
        await audit.flush()
        await wait_for(lambda: sink.inline, what="the gateway giving up on the process")
        for i in range(30, 40):
            audit.record(_entry(i))
        await audit.flush()
        assert await _count(database) == 40
        assert (await audit.verify()).ok
    assert any("given up" in r.getMessage() for r in caplog.records)


def test_sigterm_of_a_serving_gateway_leaves_every_row_stored_and_no_process_behind(
    tmp_path: Path,
) -> None:
    """`mcpgw serve` on SQLite: admin changes audited through the writer process; SIGTERM
    while rows still wait in memory (a long flush interval); the rows are in the file."""
    server = Server(tmp_path, MCPGW_BOOTSTRAP_API_KEY=BOOT, MCPGW_AUDIT_FLUSH_SECONDS="30")
    server.wait_ready()
    headers = {"Authorization": f"Bearer {BOOT}"}
    for i in range(20):
        r = httpx.post(
            f"{server.url}/api/v1/keys", json={"name": f"k{i}"}, headers=headers, timeout=10
        )
        assert r.status_code == 201, r.text
    children = _children(server.proc.pid)
    assert any("gateway.audit.child" in cmd for cmd in children.values()), children
    assert server.stop() in (0, -signal.SIGTERM)
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"{children[pid]} left running"
    with sqlite3.connect(tmp_path / "data" / "mcpgw.db") as conn:
        (keys,) = conn.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'key.create'"
            " AND actor_key_prefix IS NOT NULL"
        ).fetchone()
    assert keys == 20


def _children(pid: int) -> dict[int, str]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[int(entry.name)] = cmd
    return out


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
