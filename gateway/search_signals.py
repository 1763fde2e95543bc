"""Feeds tool search's optional boosts (``gateway/mcp/search/signals.py``): tool call
counts from the audit trail and the skills' links to servers, re-read every
``search_signals_seconds`` on a background task, never per search.

Part of the composition root: it is the one place that reads pillar 1's naming, the
audit trail and pillar 2's links together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from gateway.audit.service import AuditLog
from gateway.config import Settings
from gateway.mcp.search import signals
from gateway.servers.calls import qualified
from skills.service import SkillService

log = logging.getLogger(__name__)


class UsageCounts:
    """Tool calls over the last ``days``, kept up to date from the audit trail without
    counting the whole window again: each read adds the calls stored since the last
    one and takes off the ones that left the window (two small range reads instead of a
    scan of a month of calls every few minutes)."""

    def __init__(self, days: float, clock: Callable[[], float] = time.time) -> None:
        self.days = days
        self.clock = clock
        self.counts: dict[tuple[str, str], int] = {}
        self._since: datetime | None = None
        self._pos = 0

    async def read(self, audit: AuditLog) -> dict[tuple[str, str], int]:
        """The counts now."""
        since = datetime.fromtimestamp(self.clock(), UTC) - timedelta(days=self.days)
        upto = await audit.last_position()
        if self._since is None:
            self.counts = await audit.call_counts(since, upto=upto)
        else:
            # Rows counted before that have left the window, then rows stored since.
            gone = await audit.call_counts(self._since, since, upto=self._pos)
            new = await audit.call_counts(since, after=self._pos, upto=upto)
            for key, n in gone.items():
                left = self.counts.get(key, 0) - n
                if left > 0:
                    self.counts[key] = left
                else:
                    self.counts.pop(key, None)
            for key, n in new.items():
                self.counts[key] = self.counts.get(key, 0) + n
        self._since, self._pos = since, upto
        return self.counts


async def refresh(
    settings: Settings,
    audit: AuditLog,
    skills: SkillService,
    usage_counts: UsageCounts | None = None,
) -> signals.Signals:
    """Read both sources once and install what they say; returns it (``usage_counts``:
    the running counts to bring up to date; else the window is counted afresh)."""
    usage: dict[str, float] = {}
    if settings.search_usage_boost > 0:
        counter = usage_counts or UsageCounts(settings.search_usage_days)
        counts = await counter.read(audit)
        usage = signals.usage_shares({qualified(s, t): n for (s, t), n in counts.items()})
    hints: tuple[signals.SkillHint, ...] = ()
    if settings.search_skill_boost > 0:
        hints = await asyncio.to_thread(signals.skill_hints, await skills.server_links())
    fresh = signals.Signals(usage=usage, skills=hints)
    signals.install(fresh)
    return fresh


# Seconds after start before the first read: start-up keeps the CPU and the database.
FIRST_DELAY = 5.0


async def run(settings: Settings, audit: AuditLog, skills: SkillService) -> None:
    """Refresh the signals a few seconds after start, then every
    ``search_signals_seconds`` (a failed read keeps the last ones and is logged)."""
    await asyncio.sleep(FIRST_DELAY)
    usage_counts = UsageCounts(settings.search_usage_days)
    while True:
        try:
            await refresh(settings, audit, skills, usage_counts)
        except Exception as exc:
            log.warning("search signals: read failed", extra={"error": str(exc)})
        await asyncio.sleep(settings.search_signals_seconds)


def wanted(settings: Settings) -> bool:
    """Whether either boost is on (otherwise nothing is read)."""
    return settings.search_usage_boost > 0 or settings.search_skill_boost > 0
