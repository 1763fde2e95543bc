"""Load and download counts, kept in memory and written in batches.

``record_load`` is called on the path where an agent reads a skill: it only bumps
a counter. A background task adds the pending counts to the database every few
seconds (``x = x + n``, correct with many replicas) and once more at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from gateway.db import Database, utcnow
from skills.repository import SkillRepository

log = logging.getLogger("skills.stats")


@dataclass
class Pending:
    loads: int = 0
    downloads: int = 0
    last_loaded: datetime | None = None
    last_downloaded: datetime | None = None


class UsageCounter:
    """Per-skill counts not yet written to the database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: dict[str, Pending] = {}

    def record_load(self, name: str) -> None:
        """Count one load of skill ``name`` (no I/O)."""
        entry = self._pending.setdefault(name, Pending())
        entry.loads += 1
        entry.last_loaded = utcnow()

    def record_download(self, name: str) -> None:
        """Count one download of skill ``name`` (no I/O)."""
        entry = self._pending.setdefault(name, Pending())
        entry.downloads += 1
        entry.last_downloaded = utcnow()

    def pending(self, name: str) -> Pending:
        """Counts of ``name`` recorded here and not flushed yet."""
        return self._pending.get(name, Pending())

    def forget(self, name: str) -> None:
        self._pending.pop(name, None)

    async def flush(self) -> None:
        """Write pending counts; on failure they are kept for the next try."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
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
        except Exception:
            log.warning("could not write skill usage; will retry", exc_info=True)
            for name, entry in batch.items():
                merged = self._pending.setdefault(name, Pending())
                merged.loads += entry.loads
                merged.downloads += entry.downloads
                merged.last_loaded = merged.last_loaded or entry.last_loaded
                merged.last_downloaded = merged.last_downloaded or entry.last_downloaded

    async def run(self, interval: float) -> None:
        """Flush every ``interval`` seconds until cancelled (shutdown then calls flush)."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()
