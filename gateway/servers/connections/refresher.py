"""Keeping OAuth connections fresh, on one replica at a time.

Every replica, each tick: :meth:`ConnectionService.sync` (what others changed). The
replica that holds the lease (a row in ``leases``, renewed each tick, taken over when
it lapses: it works the same on SQLite and PostgreSQL) also refreshes every
connection whose ``next_refresh_at`` has come — set at the margin before expiry minus
a random jitter, so a fleet's tokens do not all refresh at once. A ``Retry-After``
from the token endpoint moves ``next_refresh_at``; ``invalid_grant`` (the user revoked
the app, the refresh token expired) counts a failure, and after
``max_failures`` in a row the connection is broken: the user's next call says how to
reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from datetime import timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.db import Database, utcnow
from gateway.servers.connections.models import Connection, ConnectionFlow, Lease
from gateway.servers.connections.oauth import (
    GrantRefused,
    ProviderBusy,
)
from gateway.servers.connections.service import ConnectionService
from gateway.servers.models import McpServer

log = logging.getLogger("gateway.connections")

LEASE = "connections-refresher"
_MAX_BACKOFF = 3600.0


def holder_id() -> str:
    """This process, as a lease holder."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"


async def take_lease(db: Database, name: str, holder: str, ttl: float) -> bool:
    """Hold (or renew) the lease ``name`` for ``ttl`` seconds; False: another holds it."""
    now = utcnow()
    until = now + timedelta(seconds=ttl)
    async with db.session() as session:
        taken = await session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=until)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
    try:
        async with db.session() as session:
            session.add(Lease(name=name, holder=holder, expires_at=until))
    except IntegrityError:
        return False  # held by another replica
    return True


async def release_lease(db: Database, name: str, holder: str) -> None:
    """Let another replica take over at once (shutdown)."""
    async with db.session() as session:
        await session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


async def refresh_due(service: ConnectionService) -> int:
    """Refresh every OAuth connection whose time has come; how many were tried. Also
    drops OAuth flows that expired an hour ago or more (a replayed state is refused
    either way: unknown or expired)."""
    async with service.db.session() as session:
        await session.execute(
            delete(ConnectionFlow).where(ConnectionFlow.expires_at < utcnow() - timedelta(hours=1))
        )
        due = (
            await session.execute(
                select(Connection.id)
                .where(
                    Connection.kind == "oauth",
                    Connection.status != "broken",
                    Connection.next_refresh_at <= utcnow(),
                )
                .limit(500)
            )
        ).scalars()
        ids = list(due)
    for connection_id in ids:
        try:
            await refresh_one(service, connection_id)
        except Exception:
            log.warning("refreshing a connection failed", exc_info=True)
    return len(ids)


async def refresh_one(service: ConnectionService, connection_id: str) -> None:
    """Refresh one connection's tokens (or count why not)."""
    async with service.db.session() as session:
        found = (
            await session.execute(
                select(Connection, McpServer)
                .join(McpServer, McpServer.id == Connection.server_id)
                .where(Connection.id == connection_id)
            )
        ).first()
    if found is None:
        return
    connection, server = found
    sealed = service.box.open(connection.tokens_sealed).get("token", {})
    refresh_token = sealed.get("refresh_token")
    if not refresh_token:  # usable until it expires, then broken
        left = (connection.expires_at - utcnow()).total_seconds() if connection.expires_at else 0
        why = "the access token expired and the provider gave no refresh token"
        await _failed(service, connection, server, why, max(left, 0) + 1, broken=left <= 0)
        return
    config = server.config.get("credentials") or {}
    try:
        endpoints = await service.oauth.endpoints(server.config["url"], config)
        tokens = await service.oauth.refresh(
            endpoints,
            config,
            service.box.open(server.secrets_sealed).get("oauth", {}).get("client_secret"),
            refresh_token,
            str(config.get("resource") or server.config["url"]),
        )
    except ProviderBusy as exc:
        await _failed(service, connection, server, str(exc), exc.retry_after, count=False)
        return
    except GrantRefused as exc:
        await _failed(service, connection, server, f"refresh refused: {exc.error}", None)
        return
    except Exception as exc:  # unreachable, bad answer: try again, back off
        await _failed(
            service, connection, server, f"refresh failed: {type(exc).__name__}", None, count=False
        )
        return
    await service.save(server, connection.user_id, "oauth", tokens=tokens)
    log.info("refreshed a connection", extra={"server": server.name, "connection": connection.id})


async def _failed(
    service: ConnectionService,
    connection: Connection,
    server: McpServer,
    why: str,
    retry_after: float | None,
    *,
    count: bool = True,
    broken: bool = False,
) -> None:
    """Record a failed refresh: when to retry, and whether the connection is broken
    (``max_failures`` counted failures in a row, or ``broken``)."""
    failures = connection.failures + (1 if count else 0)
    broken = broken or (count and failures >= service.policy.max_failures)
    backoff = retry_after
    if backoff is None:
        backoff = min(service.policy.interval * 2 ** max(failures - 1, 0), _MAX_BACKOFF)
    async with service.db.session() as session:
        await session.execute(
            update(Connection)
            .where(Connection.id == connection.id, Connection.version == connection.version)
            .values(
                failures=failures,
                last_error=why,
                status="broken" if broken else connection.status,
                next_refresh_at=None if broken else utcnow() + timedelta(seconds=backoff),
                version=connection.version + 1,
                updated_at=utcnow(),
            )
        )
    log.warning(
        "connection refresh failed",
        extra={"server": server.name, "connection": connection.id, "why": why, "broken": broken},
    )
    if broken:
        service.audit.change(
            "connection.broken",
            None,
            server.name,
            new={"user_id": connection.user_id, "reason": why},
            actor={"auth_method": "refresher"},
        )
    await service.sync()


async def run_refresher(service: ConnectionService, holder: str | None = None) -> None:
    """Forever (cancelled at shutdown): sync the vault; refresh what is due while this
    replica holds the lease."""
    holder = holder or holder_id()
    interval = service.policy.interval
    ttl = max(interval * 3, 10.0)
    try:
        while True:
            try:
                await service.sync()
                if await take_lease(service.db, LEASE, holder, ttl):
                    await refresh_due(service)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("connection refresher pass failed", exc_info=True)
            await asyncio.sleep(interval)
    finally:
        try:
            await asyncio.shield(release_lease(service.db, LEASE, holder))
        except Exception:  # the database may be gone already at shutdown
            log.debug("could not release the refresher lease", exc_info=True)
