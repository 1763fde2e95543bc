"""Feeds tool search's optional boosts (``gateway/mcp/search/signals.py``): tool call
counts from the audit trail and the skills' links to servers, re-read every
``search_signals_seconds`` on a background task, never per search.

Part of the composition root: it is the one place that reads pillar 1's naming, the
audit trail and pillar 2's links together.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from gateway.audit.service import AuditLog
from gateway.config import Settings
from gateway.mcp.search import signals
from gateway.servers.calls import qualified
from skills.service import SkillService

log = logging.getLogger(__name__)


async def refresh(settings: Settings, audit: AuditLog, skills: SkillService) -> signals.Signals:
    """Read both sources once and install what they say; returns it."""
    usage: dict[str, float] = {}
    if settings.search_usage_boost > 0:
        since = datetime.now(UTC) - timedelta(days=settings.search_usage_days)
        counts = await audit.call_counts(since)
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
    while True:
        try:
            await refresh(settings, audit, skills)
        except Exception as exc:
            log.warning("search signals: read failed", extra={"error": str(exc)})
        await asyncio.sleep(settings.search_signals_seconds)


def wanted(settings: Settings) -> bool:
    """Whether either boost is on (otherwise nothing is read)."""
    return settings.search_usage_boost > 0 or settings.search_skill_boost > 0
