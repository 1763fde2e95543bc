"""Tool search's usage counts kept up to date from the audit trail: calls stored since
the last read are added, calls that left the window are taken off, rows written late
(a spill read back) with an old time are not counted, on both databases."""

from __future__ import annotations

import time
from pathlib import Path

from gateway.audit.entry import AuditEntry
from gateway.audit.service import AuditLog
from gateway.audit.sink import InlineSink
from gateway.audit.store import AuditStore
from gateway.audit.writer import AuditWriter
from gateway.db import Database
from gateway.search_signals import UsageCounts


def _call(tool: str, ts: float) -> AuditEntry:
    return AuditEntry(action="tools/call", server="s", target=tool, ts=ts)


async def test_counts_follow_the_window_without_counting_it_again(
    database: Database, tmp_path: Path
) -> None:
    audit = AuditLog(database, AuditWriter(InlineSink(AuditStore(database, tmp_path))))
    day = 86_400.0
    now = time.time()
    audit.record(_call("a", now - 0.5 * day + 2))  # leaves a half-day window in 2 s
    audit.record(_call("a", now))
    audit.record(_call("b", now))
    audit.record(AuditEntry(action="resources/read", server="s", target="r", ts=now))
    await audit.flush()
    clock = [now]
    counts = UsageCounts(days=0.5, clock=lambda: clock[0])
    assert await counts.read(audit) == {("s", "a"): 2, ("s", "b"): 1}

    audit.record(_call("b", time.time()))
    audit.record(_call("c", time.time() - day))  # stored late, already outside the window
    await audit.flush()
    clock[0] += 3  # the first call leaves the window
    assert await counts.read(audit) == {("s", "a"): 1, ("s", "b"): 2}
    fresh = UsageCounts(days=0.5, clock=lambda: clock[0])  # the same as counting afresh
    assert await fresh.read(audit) == counts.counts
