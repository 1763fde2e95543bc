"""Keeping what agents see of a server current: its catalog refreshed from the live
server, its health persisted and turned into an availability mark (availability.py),
and servers marked unavailable re-checked by the monitor so they come back without
an agent having to call a tool it was told is unavailable.

A refresh that fails (the server is down, the listing times out) changes nothing:
the last known catalog stays listed. Only an answer from the server replaces it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from gateway.errors import NotFound
from gateway.servers.availability import HEALTH, Unavailable
from gateway.servers.catalog import catalog_rows
from gateway.servers.repository import ServerRepository
from gateway.servers.runtimes.base import Health

if TYPE_CHECKING:
    from gateway.servers.service import ServerService

log = logging.getLogger("gateway.servers")


async def refresh(service: ServerService, name: str) -> tuple[int, int, int]:
    """Fetch every list from the live server and store it; (added, changed, removed).
    Raises (BackendError) when the server cannot be listed: nothing is changed then."""
    runtime = service.pool.get(name)
    if runtime is None:
        raise NotFound(f"server {name!r} is not enabled", code="server_not_enabled")
    lock = service._refreshing.setdefault(name, asyncio.Lock())
    async with lock:
        await runtime.start()
        catalog = await runtime.catalog()
        if service.pool.get(name) is not runtime:
            # Replaced or removed while it listed: its successor's listing counts (an
            # old runtime's answer must not overwrite what a changed server lists).
            return 0, 0, 0
        async with service.db.session() as session:
            stats = await ServerRepository(session).replace_catalog(
                runtime.spec.id, catalog_rows(catalog)
            )
        if service.pool.get(name) is runtime and any(stats):  # not removed meanwhile
            service.catalogs = {**service.catalogs, name: catalog}
            service._catalog_changed()
    if any(stats):
        log.info(
            "catalog updated",
            extra={"server": name, "added": stats[0], "changed": stats[1], "removed": stats[2]},
        )
    return stats


def health_mark(health: Health) -> Unavailable | None:
    """What a server's health says of its availability: unavailable while unhealthy
    (it cannot be reached, or its session dropped); a stopped server is not (an
    on-demand server is started by the next call)."""
    if health.status != "unhealthy":
        return None
    return Unavailable("server", health.last_error or "the server is unhealthy")


async def on_health_changed(service: ServerService, name: str, health: Health) -> None:
    """Runtime callback: mark the server (un)available at once, then persist the
    change (best effort, off the request path)."""
    runtime = service.pool.get(name)
    if runtime is None:
        return  # a bundle member; its bundle reports for it
    if health is runtime.health:  # not a replaced runtime saying it stopped
        service.availability.mark_server(name, HEALTH, health_mark(health))
    try:
        async with service.db.session() as session:
            row = await ServerRepository(session).get_by_name(name)
            if row is not None:
                row.status, row.last_error = health.status, health.last_error
                row.latency_ms, row.checked_at = health.latency_ms, health.checked_at
    except Exception:
        log.debug("could not persist health", exc_info=True)


def recheck_unavailable(service: ServerService) -> list[str]:
    """Try again, in the background, every server its health marks unavailable and no
    session is up for (a monitor pass): one that answers is marked available again
    and its catalog refreshed. Returns their names."""
    names = [
        name
        for name, runtime in service.pool.runtimes().items()
        if health_mark(runtime.health) is not None and not runtime.running
    ]
    for name in names:
        service._spawn(service.on_list_changed(name))
    return names
