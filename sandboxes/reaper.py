"""Idle policies: stop sandboxes unused for MCPGW_SANDBOX_IDLE_STOP_MINUTES, destroy those
unused for MCPGW_SANDBOX_DESTROY_AFTER_DAYS. Run by the service's background loop."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gateway.db import utcnow
from gateway.errors import AppError
from sandboxes.providers.base import ProviderError
from sandboxes.repository import SandboxRepository

if TYPE_CHECKING:
    from sandboxes.service import SandboxService

log = logging.getLogger("sandboxes.reaper")


async def reap(service: SandboxService, now: datetime | None = None) -> tuple[int, int]:
    """(stopped, destroyed); sandboxes with an exec in flight are left alone."""
    await service.flush()
    now = now or utcnow()
    stopped = destroyed = 0
    s = service.settings
    async with service.db.session() as session:
        repo = SandboxRepository(session)
        old = (
            await repo.idle(
                status=("running", "stopped", "error"),
                before=now - timedelta(days=s.sandbox_destroy_after_days),
            )
            if s.sandbox_destroy_after_days
            else []
        )
        idle = (
            await repo.idle(
                status=("running",), before=now - timedelta(minutes=s.sandbox_idle_stop_minutes)
            )
            if s.sandbox_idle_stop_minutes
            else []
        )
    for row in old:
        if row.id in service.inflight:
            continue
        with contextlib.suppress(AppError, ProviderError):
            await service.destroy(None, row.id, row=row)
            destroyed += 1
    gone = {r.id for r in old}
    for row in idle:
        if row.id in gone or row.id in service.inflight:
            continue
        with contextlib.suppress(AppError, ProviderError):
            await service.stop(None, row.id, row=row)
            stopped += 1
    if stopped or destroyed:
        log.info("sandbox reaper", extra={"stopped": stopped, "destroyed": destroyed})
    return stopped, destroyed
