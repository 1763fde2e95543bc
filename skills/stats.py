"""Load and download counts, kept in memory and written in batches.

``record_load`` is called on the path where an agent reads a skill: it only bumps
a counter. A background task adds the pending counts to the database every few
seconds (``x = x + n``, correct with many replicas) and once more at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.batching import WriteBehind
from gateway.db import Database, utcnow
from skills.repository import SkillRepository


@dataclass
class Pending:
    loads: int = 0
    downloads: int = 0
    last_loaded: datetime | None = None
    last_downloaded: datetime | None = None


def _added(earlier: Pending, later: Pending) -> Pending:
    return Pending(
        earlier.loads + later.loads,
        earlier.downloads + later.downloads,
        later.last_loaded or earlier.last_loaded,
        later.last_downloaded or earlier.last_downloaded,
    )


class UsageCounter:
    """Per-skill counts not yet written to the database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: WriteBehind[str, Pending] = WriteBehind("skill usage", self._write, _added)

    def record_load(self, name: str) -> None:
        """Count one load of skill ``name`` (no I/O)."""
        self._pending.note(name, Pending(loads=1, last_loaded=utcnow()))

    def record_download(self, name: str) -> None:
        """Count one download of skill ``name`` (no I/O)."""
        self._pending.note(name, Pending(downloads=1, last_downloaded=utcnow()))

    def pending(self, name: str) -> Pending:
        """Counts of ``name`` recorded here and not flushed yet."""
        return self._pending.get(name) or Pending()

    def forget(self, name: str) -> None:
        self._pending.forget(name)

    async def _write(self, batch: dict[str, Pending]) -> None:
        async with self.db.session() as session:
            repo = SkillRepository(session)
            for name, entry in batch.items():
                await repo.add_usage(
                    name,
                    loads=entry.loads,
                    downloads=entry.downloads,
                    loaded=entry.last_loaded,
                    downloaded=entry.last_downloaded,
                )

    async def flush(self) -> None:
        """Write pending counts; on failure they are kept for the next try."""
        await self._pending.flush()

    async def run(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled (shutdown then calls flush)."""
        await self._pending.run(interval)
