"""Write-behind: what the request path notes in memory, written in batches off it.

Key last-used times, skill load counts and sandbox activity are
noted per request and written every few seconds (and once more at shutdown), so no
request waits for the database. A write that fails loses nothing: its batch is
merged back into what was noted meanwhile and goes with the next flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger("gateway.batching")

K = TypeVar("K")
V = TypeVar("V")


def keep_later(earlier: object, later: V) -> V:
    """The merge of values where the newest replaces the rest (a last-used time)."""
    return later


class WriteBehind(Generic[K, V]):
    """Pending values by key, written by ``write`` in batches.

    ``merge(earlier, later)`` combines two values of one key: a value noted on top of
    a pending one, and a failed batch's value under one noted since.
    """

    def __init__(
        self,
        what: str,
        write: Callable[[dict[K, V]], Awaitable[None]],
        merge: Callable[[V, V], V] = keep_later,
    ) -> None:
        self.what = what  # for the log line when a write fails
        self._write = write
        self._merge = merge
        self._pending: dict[K, V] = {}

    def note(self, key: K, value: V) -> None:
        """Record ``value`` for ``key`` (no I/O)."""
        pending = self._pending
        pending[key] = self._merge(pending[key], value) if key in pending else value

    def get(self, key: K) -> V | None:
        """What is pending for ``key``, not written yet."""
        return self._pending.get(key)

    def forget(self, key: K) -> None:
        """Drop what is pending for ``key`` (its row is gone)."""
        self._pending.pop(key, None)

    def __len__(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        """Write what is pending; on failure it stays pending for the next flush."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            await self._write(batch)
        except Exception:
            log.warning("could not write %s; will retry", self.what, exc_info=True)
            since, self._pending = self._pending, batch
            for key, value in since.items():
                self.note(key, value)

    async def run(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled (shutdown then flushes)."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()
