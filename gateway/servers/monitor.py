"""Background upkeep of the server pool: health pings, idle shutdown, registry reconcile,
and servers marked unavailable tried again (upkeep.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.servers.service import ServerService
from gateway.servers.upkeep import recheck_unavailable

log = logging.getLogger("gateway.servers")


async def ping_running(service: ServerService) -> None:
    """Ping every running backend; failures show in its health."""
    runtimes = [r for r in service.pool.runtimes().values() if r.running]

    async def one(runtime: object) -> None:
        with contextlib.suppress(Exception):
            await runtime.ping()  # type: ignore[attr-defined]

    await asyncio.gather(*(one(r) for r in runtimes))


async def run_monitor(service: ServerService, interval: float) -> None:
    """Forever: reconcile with the database (other replicas' changes), reap idle
    servers, ping running ones, try unavailable ones again. Cancelled at shutdown."""
    while True:
        await asyncio.sleep(interval)
        try:
            await service.load()
            await service.pool.reap_idle()
            await ping_running(service)
            recheck_unavailable(service)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.warning("server monitor pass failed", exc_info=True)
