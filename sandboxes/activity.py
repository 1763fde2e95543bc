"""Sandbox activity noted on the request path and written later, in batches.

Every exec and file operation moves a sandbox's ``last_activity_at`` (the idle
reaper reads it) and an exec adds to its ``exec_count``. Writing a row per
operation would put the database on the request path, so they are kept here
and written by :meth:`Activity.flush` (the reaper's interval, and shutdown).
The workspace's size is re-measured after execs, off the request path too, so
files that commands write count toward the disk limits as much as uploads do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from gateway.batching import WriteBehind
from gateway.db import Database, utcnow
from sandboxes.repository import SandboxRepository

log = logging.getLogger("sandboxes")


class Activity:
    """Last use and exec counts per sandbox, pending a flush; disk re-measures."""

    def __init__(self, db: Database, *, measure_timeout: float = 60.0) -> None:
        self.db = db
        # a measurement walks a workspace that sandboxed code fills: bounded, so that
        # settle() (shutdown) never waits on it forever
        self.measure_timeout = measure_timeout
        # sandbox id → (last used, execs not yet counted)
        self._pending: WriteBehind[str, tuple[datetime, int]] = WriteBehind(
            "sandbox activity", self._write, _later_with_counts_added
        )
        self._measuring: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()

    def touch(self, sandbox_id: str, execs: int = 0) -> None:
        """The sandbox was used now (``execs``: commands it ran)."""
        self._pending.note(sandbox_id, (utcnow(), execs))

    def forget(self, sandbox_id: str) -> None:
        self._pending.forget(sandbox_id)

    def unwritten_execs(self, sandbox_id: str) -> int:
        """Execs not yet added to the row's ``exec_count``."""
        pending = self._pending.get(sandbox_id)
        return pending[1] if pending is not None else 0

    def measure_soon(self, sandbox_id: str, measure: Callable[[], Awaitable[None]]) -> None:
        """Run ``measure`` in the background; once more afterwards if asked again meanwhile."""
        if sandbox_id in self._measuring:
            self._again.add(sandbox_id)
            return

        async def run() -> None:
            try:
                while True:
                    self._again.discard(sandbox_id)
                    try:
                        await asyncio.wait_for(measure(), self.measure_timeout)
                    except Exception:
                        log.debug("could not measure sandbox %s", sandbox_id, exc_info=True)
                    if sandbox_id not in self._again:
                        return
            finally:
                self._measuring.pop(sandbox_id, None)

        self._measuring[sandbox_id] = asyncio.create_task(run(), name=f"measure-{sandbox_id}")

    async def settle(self) -> None:
        """Wait for the measurements under way."""
        while self._measuring:
            await asyncio.gather(*list(self._measuring.values()), return_exceptions=True)

    async def flush(self) -> None:
        """Write pending activity; what cannot be written stays for the next flush."""
        await self._pending.flush()

    async def _write(self, batch: dict[str, tuple[datetime, int]]) -> None:
        async with self.db.session() as session:
            await SandboxRepository(session).touch(batch)


def _later_with_counts_added(
    earlier: tuple[datetime, int], later: tuple[datetime, int]
) -> tuple[datetime, int]:
    return later[0], earlier[1] + later[1]
